"""`AutoPeftModelForVideoTextRetrieval`: base model and adapter in one call, in peft's `AutoPeftModelFor<Task>`
shape."""

from __future__ import annotations

import os
from typing import Any

from peft import PeftConfig
from transformers import CLIPModel

from ._peft_registration import base_auto_peft_model
from .config import VIDEO_TASK_TYPE
from .peft_model import PeftModelForVideoTextRetrieval


class AutoPeftModelForVideoTextRetrieval(base_auto_peft_model()):
    """Load a peft_video adapter (a folder or a Hub id) together with the CLIPModel named in its
    `adapter_config.json` (`base_model_name_or_path`, at `revision` when recorded), like peft's
    `AutoPeftModelForCausalLM`:

    ```python
    from peft_video import AutoPeftModelForVideoTextRetrieval

    model = AutoPeftModelForVideoTextRetrieval.from_pretrained("user/clip-tfvl-msrvtt", dtype=torch.bfloat16)
    ```

    Keyword arguments go to `CLIPModel.from_pretrained` (e.g. `dtype`, `device_map`) and to
    `PeftModel.from_pretrained` (e.g. `is_trainable`, `adapter_name`, `autocast_adapter_dtype`, `low_cpu_mem_usage`),
    as peft's auto classes pass them.
    """

    _target_class = CLIPModel
    _target_peft_class = PeftModelForVideoTextRetrieval

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any
    ) -> PeftModelForVideoTextRetrieval:
        """Load the base CLIPModel named in the adapter's config, then the adapter; see the class docstring."""
        hub_kwargs = {k: kwargs[k] for k in ("revision", "subfolder", "cache_dir", "token") if k in kwargs}
        config = PeftConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if config.task_type != VIDEO_TASK_TYPE:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {config.peft_type} adapter for task_type "
                f"{config.task_type!r}, not a peft_video adapter ({VIDEO_TASK_TYPE!r}): use peft's AutoPeftModel "
                "class for its task."
            )
        if not config.base_model_name_or_path:
            raise ValueError(
                f"The adapter_config.json of {pretrained_model_name_or_path} names no base model "
                "(base_model_name_or_path is empty: the CLIPModel it was created on had no name_or_path). Load the "
                "base yourself: PeftModel.from_pretrained(CLIPModel.from_pretrained(...), "
                f"{str(pretrained_model_name_or_path)!r})."
            )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
