"""DGL: dynamic global-local prompt tuning (Yang et al., AAAI 2024). Docs: docs/methods/dgl.md."""

from ...registry import register_video_method
from .config import DGLConfig
from .layer import DGLLayer, DGLModule, PromptGeneratorBlock
from .model import DGLModel

register_video_method(
    name="dgl",
    config_cls=DGLConfig,
    model_cls=DGLModel,
    display_name="DGL",
    description=(
        "DGL (Yang et al., AAAI 2024), Dynamic Global-Local prompt tuning: a shared generator produces prompts "
        "for every layer of the frozen text encoder and local prompts for every frame of the frozen image "
        "encoder, while global prompts attend over all frames of a video and give its embedding. Only the prompt "
        "generator and the global prompts are trained."
    ),
    citation="""@inproceedings{yang2024dgl,
  title         = {DGL: Dynamic Global-Local Prompt Tuning for Text-Video Retrieval},
  author        = {Yang and Zhu and Wang and Yang},
  booktitle     = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year          = {2024},
  eprint        = {2401.10588},
  archivePrefix = {arXiv}
}""",
    test_variants={
        "dgl": lambda num_frames: DGLConfig(num_frames=num_frames),
        "dgl_linear": lambda num_frames: DGLConfig(num_frames=num_frames, latent_space="linear"),
    },
)

__all__ = ["DGLConfig", "DGLLayer", "DGLModel", "DGLModule", "PromptGeneratorBlock"]
