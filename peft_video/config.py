"""The configuration every video adapter shares: what it was trained on travels in its `adapter_config.json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peft import PeftConfig

from .data.defaults import DEFAULT_NUM_FRAMES, FRAME_SAMPLING_STRATEGIES

VIDEO_TASK_TYPE = "VIDEO_TEXT_RETRIEVAL"
"""The peft task type of every peft_video config; it routes peft to `PeftModelForVideoTextRetrieval`."""


@dataclass
class VideoAdapterConfig(PeftConfig):
    """
    Fields shared by every peft_video method. Method configs (`TFVLConfig`, `DGLConfig`, `PromptCubeConfig`) derive
    from it.

    Args:
        num_frames (`int`):
            Frames per video the adapter is built for. Videos may have fewer (with `video_mask`), never more.
        frame_sampling (`str`):
            How frames are drawn from a video: `"segments"` (T equal segments; centre frame at evaluation, a random
            frame per segment in training), `"chunked_segments"` (Prompt Switch's chunk-major order; needs
            `frame_chunk_size`) or `"fps"` (fixed rate, `sampling_fps`). Recorded so that whoever loads the adapter
            feeds it frames the way it was trained.
        sampling_fps (`float`, *optional*):
            Frames per second for `frame_sampling="fps"`.
        frame_chunk_size (`int`, *optional*):
            Frames per chunk for `frame_sampling="chunked_segments"`.
        image_size (`int`, *optional*):
            Frame resolution (square, pixels). Filled from the base model when the adapter is created.
        max_text_length (`int`):
            Caption length in tokens, SOT and EOT included, that the adapter was trained with.
        modules_to_save (`list[str]`, *optional*):
            Base-model modules to train fully and save with the adapter, through peft's own `modules_to_save` (e.g.
            `["vision_model", "text_model"]` for a method plus full fine-tuning, as Prompt Switch's paper does). The
            video forward uses the trainable copies.
        base_model_dims (`dict`, *optional*):
            Shapes of the base CLIPModel the adapter was created on, recorded at creation and checked when the adapter
            is loaded onto a model, so that a mismatch fails with both shapes named instead of a bare size error.
    """

    num_frames: int = field(
        default=DEFAULT_NUM_FRAMES, metadata={"help": "Frames per video the adapter is built for (maximum)."}
    )
    frame_sampling: str = field(
        default="segments",
        metadata={"help": f"Frame sampling strategy, one of {FRAME_SAMPLING_STRATEGIES}."},
    )
    sampling_fps: float | None = field(default=None, metadata={"help": "Frames per second for `fps` sampling."})
    frame_chunk_size: int | None = field(
        default=None, metadata={"help": "Frames per chunk for `chunked_segments` sampling."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Frame resolution in pixels; filled from the base model at creation."}
    )
    max_text_length: int = field(default=32, metadata={"help": "Caption length in tokens (SOT and EOT included)."})
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Base-model modules to train fully and save with the adapter."}
    )
    base_model_dims: dict[str, Any] | None = field(
        default=None, metadata={"help": "Base model shapes recorded at creation; checked at load time."}
    )

    def __post_init__(self) -> None:
        if self.task_type is None:
            self.task_type = VIDEO_TASK_TYPE
        super().__post_init__()
        if self.task_type != VIDEO_TASK_TYPE:
            raise ValueError(f"{type(self).__name__}.task_type must be {VIDEO_TASK_TYPE!r}, got {self.task_type!r}.")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}.")
        if self.frame_sampling not in FRAME_SAMPLING_STRATEGIES:
            raise ValueError(
                f"frame_sampling must be one of {FRAME_SAMPLING_STRATEGIES}, got {self.frame_sampling!r}."
            )
        if self.frame_sampling == "fps" and not (self.sampling_fps and self.sampling_fps > 0):
            raise ValueError(f"frame_sampling='fps' needs a positive sampling_fps, got {self.sampling_fps!r}.")
        if self.frame_sampling == "chunked_segments":
            if not self.frame_chunk_size or self.num_frames % self.frame_chunk_size:
                raise ValueError(
                    "frame_sampling='chunked_segments' needs a frame_chunk_size that divides num_frames; got "
                    f"frame_chunk_size={self.frame_chunk_size!r}, num_frames={self.num_frames}."
                )
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        if self.max_text_length < 2:
            raise ValueError(f"max_text_length must be at least 2 (SOT and EOT), got {self.max_text_length}.")
