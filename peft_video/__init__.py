"""peft_video: parameter-efficient text-video retrieval on a frozen CLIPModel, through PEFT.

Importing this package registers TFVL, DGL and PROMPT_CUBE with peft, so that `get_peft_model`,
`PeftConfig.from_pretrained` and `PeftModel.from_pretrained` know them.
"""

from ._peft_registration import register as _register

_register()

from .config import FRAME_SAMPLING_STRATEGIES, VIDEO_TASK_TYPE, VideoAdapterConfig  # noqa: E402
from .modeling import VideoModelOutput, VideoTextRetrievalOutput  # noqa: E402
from .peft_model import PeftModelForVideoTextRetrieval  # noqa: E402
from .tuners.dgl import DGLConfig  # noqa: E402
from .tuners.prompt_cube import PromptCubeConfig  # noqa: E402
from .tuners.tfvl import TFVLConfig  # noqa: E402

__version__ = "0.1.0.dev0"

__all__ = [
    "DGLConfig",
    "FRAME_SAMPLING_STRATEGIES",
    "VIDEO_TASK_TYPE",
    "PeftModelForVideoTextRetrieval",
    "PromptCubeConfig",
    "TFVLConfig",
    "VideoAdapterConfig",
    "VideoModelOutput",
    "VideoTextRetrievalOutput",
]
