"""peft_video: parameter-efficient text-video retrieval on a frozen CLIPModel, through PEFT.

Importing this package registers the video task type and every method in `peft_video.tuners` (TFVL, DGL,
PROMPT_CUBE), and those of installed packages declaring a `peft_video.methods` entry point, with peft, so that
`get_peft_model`, `PeftConfig.from_pretrained` and `PeftModel.from_pretrained` know them. The methods' table is
`peft_video.registry`.
"""

from ._peft_registration import register_task_type as _register_task_type

_register_task_type()

from . import tuners  # noqa: E402, F401  (importing the tuner packages registers them)
from .auto import AutoPeftModelForVideoTextRetrieval  # noqa: E402
from .config import FRAME_SAMPLING_STRATEGIES, VIDEO_TASK_TYPE, VideoAdapterConfig  # noqa: E402
from .modeling import VideoModelOutput, VideoTextRetrievalOutput  # noqa: E402
from .peft_model import PeftModelForVideoTextRetrieval  # noqa: E402
from .registry import VideoMethod, get_video_method, load_method_packages, register_video_method, video_methods  # noqa: E402

# The public contract's `from peft_video import TFVLConfig, ...`: re-exports for users and type checkers only;
# registration does not depend on these lines.
from .tuners.dgl import DGLConfig  # noqa: E402
from .tuners.prompt_cube import PromptCubeConfig  # noqa: E402
from .tuners.tfvl import TFVLConfig  # noqa: E402

__version__ = "0.1.0.dev0"

__all__ = [
    "AutoPeftModelForVideoTextRetrieval",
    "DGLConfig",
    "FRAME_SAMPLING_STRATEGIES",
    "VIDEO_TASK_TYPE",
    "PeftModelForVideoTextRetrieval",
    "PromptCubeConfig",
    "TFVLConfig",
    "VideoAdapterConfig",
    "VideoMethod",
    "VideoModelOutput",
    "VideoTextRetrievalOutput",
    "get_video_method",
    "register_video_method",
    "video_methods",
]

# Last, so that a method package may import anything above: methods of other installed packages (those declaring an
# entry point in the `peft_video.methods` group).
load_method_packages()
