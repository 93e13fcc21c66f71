"""DGL: dynamic global-local prompt tuning (Yang et al., AAAI 2024). Docs: docs/methods/dgl.md."""

from .config import DGLConfig
from .layer import DGLLayer, DGLModule, PromptGeneratorBlock
from .model import DGLModel

CONFIG_CLS = DGLConfig
MODEL_CLS = DGLModel

__all__ = ["DGLConfig", "DGLLayer", "DGLModel", "DGLModule", "PromptGeneratorBlock"]
