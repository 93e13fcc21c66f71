"""A method defined in the test suite alone, to show that a new method needs no edit outside its own package."""

from peft_video.registry import register_video_method

from .config import ToyMeanConfig
from .model import ToyMeanModel

register_video_method(
    name="toy_mean",
    config_cls=ToyMeanConfig,
    model_cls=ToyMeanModel,
    display_name="Toy Mean",
    description="A toy method of the test suite: a residual linear map on the mean of the frame embeddings.",
    citation="@misc{toymean, title = {A toy method}}",
    test_variants={"toy_mean": lambda num_frames: ToyMeanConfig(num_frames=num_frames)},
)
