"""Prompt Cube / Prompt Switch (Deng et al., ICCV 2023): a prompt cube switched between the frames of a chunk in every
frozen vision layer, a prompt readout, and an auxiliary captioning objective. Docs: docs/methods/prompt_cube.md."""

from ...registry import register_video_method
from .config import CLIP_FREQUENT_TOKEN_IDS, FREQUENT_WORDS, PromptCubeConfig, frequent_word_token_ids
from .layer import CaptionDecoder, PromptCubeLayer, PromptCubeModule, switch_prompt_blocks
from .model import PromptCubeModel

register_video_method(
    name="prompt_cube",
    config_cls=PromptCubeConfig,
    model_cls=PromptCubeModel,
    display_name="Prompt Cube (Prompt Switch)",
    description=(
        "Prompt Switch (Deng et al., ICCV 2023) appends a cube of learnable prompts to the frames of the frozen "
        "image encoder and transposes (switches) it inside every layer, so that frames exchange information "
        "through the prompts; the frame embeddings read the prompts and are fused over time. A captioning "
        "objective helps during training only."
    ),
    citation="""@inproceedings{deng2023promptswitch,
  title         = {Prompt Switch: Efficient CLIP Adaptation for Text-Video Retrieval},
  author        = {Deng and Chen and Qin and Chen and Wu},
  booktitle     = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year          = {2023},
  eprint        = {2308.07648},
  archivePrefix = {arXiv}
}""",
    test_variants={
        "prompt_cube": lambda num_frames: PromptCubeConfig(num_frames=num_frames, num_prompts=2),
        "prompt_cube_no_captioner": lambda num_frames: PromptCubeConfig(
            num_frames=num_frames, num_prompts=2, caption_loss_weight=0.0
        ),
    },
)

__all__ = [
    "CLIP_FREQUENT_TOKEN_IDS",
    "FREQUENT_WORDS",
    "CaptionDecoder",
    "PromptCubeConfig",
    "PromptCubeLayer",
    "PromptCubeModel",
    "PromptCubeModule",
    "frequent_word_token_ids",
    "switch_prompt_blocks",
]
