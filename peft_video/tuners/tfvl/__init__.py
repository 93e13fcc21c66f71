"""TFVL: temporal modelling with CLIP's frozen encoders (Shen et al., IEEE TNNLS 2025). Docs: docs/methods/tfvl.md."""

from .config import TFVLConfig
from .layer import TFVLLayer, TFVLModule
from .model import TFVLModel

CONFIG_CLS = TFVLConfig
MODEL_CLS = TFVLModel

__all__ = ["TFVLConfig", "TFVLLayer", "TFVLModel", "TFVLModule"]
