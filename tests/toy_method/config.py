"""A toy fourth method that lives in the test suite only: a residual linear map on the mean of the frame embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.utils import PeftType

from peft_video.config import VideoAdapterConfig


@dataclass
class ToyMeanConfig(VideoAdapterConfig):
    """
    Args:
        scale (`float`): initial scale of the residual linear map.
    """

    scale: float = field(default=0.1, metadata={"help": "Initial scale of the residual map."})

    def __post_init__(self) -> None:
        self.peft_type = PeftType.TOY_MEAN
        super().__post_init__()
