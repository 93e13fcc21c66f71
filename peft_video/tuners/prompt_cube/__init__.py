"""Prompt Cube / Prompt Switch (Deng et al., ICCV 2023): a prompt cube switched between the frames of a chunk in every
frozen vision layer, a prompt readout, and an auxiliary captioning objective. Docs: docs/methods/prompt_cube.md."""

from .config import CLIP_FREQUENT_TOKEN_IDS, FREQUENT_WORDS, PromptCubeConfig, frequent_word_token_ids
from .layer import CaptionDecoder, PromptCubeLayer, PromptCubeModule, switch_prompt_blocks
from .model import PromptCubeModel

CONFIG_CLS = PromptCubeConfig
MODEL_CLS = PromptCubeModel

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
