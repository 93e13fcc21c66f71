"""Every method, as a small config for the tiny CLIP, so the shared contract tests run on each. One line per method."""

from __future__ import annotations

from collections.abc import Callable

from peft_video import DGLConfig, PromptCubeConfig, TFVLConfig
from peft_video.config import VideoAdapterConfig

NUM_FRAMES = 4

METHOD_CASES: dict[str, Callable[[], VideoAdapterConfig]] = {
    "tfvl": lambda: TFVLConfig(num_frames=NUM_FRAMES, text_temp_gate_init=0.5),
    "dgl": lambda: DGLConfig(num_frames=NUM_FRAMES),
    "dgl_linear": lambda: DGLConfig(num_frames=NUM_FRAMES, latent_space="linear"),
    "prompt_cube": lambda: PromptCubeConfig(num_frames=NUM_FRAMES, num_prompts=2),
}
