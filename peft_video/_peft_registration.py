"""Registration of the peft_video methods with peft. The ONLY module that touches peft internals.

peft's `PeftType` and `TaskType` are closed enums, and `register_peft_method` refuses names that are not members. So
this module (1) adds members to both enums, (2) maps our task type to `PeftModelForVideoTextRetrieval` in
`MODEL_TYPE_TO_PEFT_MODEL_MAPPING` (peft's own dispatch for task-specific PeftModel classes), (3) calls peft's
public `register_peft_method`, (4) hands `peft.auto._BaseAutoPeftModel` to `peft_video.auto` and (5) makes
`AutoPeftModel.from_pretrained` point a video adapter to `AutoPeftModelForVideoTextRetrieval` instead of
`AutoPeftModelForCausalLM`. Every internal relied upon is checked first; a peft release that changed one makes
`import peft_video` fail with an ImportError that names the peft version and the internal, instead of
misbehaving later. Which methods exist is not decided here: each method's package registers itself through
`peft_video.registry.register_video_method`, which calls `register_peft_method` below.
`tests/test_registration.py` guards this.
"""

from __future__ import annotations

import enum
import inspect

import peft

from .config import VIDEO_TASK_TYPE

TESTED_PEFT_VERSIONS = ">=0.21,<0.22"


class PeftInternalsChanged(ImportError):
    """peft no longer has an internal that peft_video's registration relies on."""


def _fail(what: str) -> PeftInternalsChanged:
    return PeftInternalsChanged(
        f"peft_video cannot register its methods with peft {peft.__version__}: {what}. peft_video is tested with "
        f"peft{TESTED_PEFT_VERSIONS}; install a version in that range or upgrade peft_video."
    )


def _check_internals() -> None:
    from peft import auto, mapping
    from peft.utils import peft_types

    for enum_cls in (peft_types.PeftType, peft_types.TaskType):
        if not (isinstance(enum_cls, enum.EnumMeta) and issubclass(enum_cls, str)):
            raise _fail(f"{enum_cls.__qualname__} is no longer a str Enum")
        for attr in ("_member_map_", "_value2member_map_", "_member_names_"):
            if not hasattr(enum_cls, attr):
                raise _fail(f"{enum_cls.__qualname__} has no {attr}")
    if not isinstance(getattr(auto, "MODEL_TYPE_TO_PEFT_MODEL_MAPPING", None), dict):
        raise _fail("peft.auto.MODEL_TYPE_TO_PEFT_MODEL_MAPPING is missing or not a dict")
    base_auto = getattr(auto, "_BaseAutoPeftModel", None)
    if not (
        isinstance(base_auto, type)
        and {"_target_class", "_target_peft_class"} <= set(vars(base_auto))
        and {"pretrained_model_name_or_path", "adapter_name", "is_trainable"}
        <= set(inspect.signature(base_auto.from_pretrained).parameters)
        and isinstance(getattr(auto, "AutoPeftModel", None), type)
        and issubclass(auto.AutoPeftModel, base_auto)
    ):
        raise _fail("peft.auto._BaseAutoPeftModel (the base of peft's AutoPeftModelFor<Task> classes) changed")
    for name in ("PEFT_TYPE_TO_CONFIG_MAPPING", "PEFT_TYPE_TO_TUNER_MAPPING", "PEFT_TYPE_TO_PREFIX_MAPPING"):
        if not isinstance(getattr(mapping, name, None), dict):
            raise _fail(f"peft.mapping.{name} is missing or not a dict")
    register = getattr(peft_types, "register_peft_method", None)
    if register is None or not {"name", "config_cls", "model_cls", "prefix"} <= set(
        inspect.signature(register).parameters
    ):
        raise _fail("peft.utils.peft_types.register_peft_method is missing or changed its signature")


def _add_str_enum_member(enum_cls: type[enum.Enum], name: str) -> enum.Enum:
    """Add `name` (value == name) to a closed str Enum, the way the Enum metaclass would have at class creation."""
    if name in enum_cls.__members__:
        return enum_cls[name]
    member = str.__new__(enum_cls, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = enum_cls
    enum_cls._member_map_[name] = member
    enum_cls._value2member_map_[name] = member
    enum_cls._member_names_.append(name)
    type.__setattr__(enum_cls, name, member)
    if enum_cls(name) is not member or name not in [m.value for m in enum_cls]:
        raise _fail(f"adding {name!r} to {enum_cls.__qualname__} did not take effect")
    return member


def register_task_type() -> None:
    """Add the video task type to peft and route it to `PeftModelForVideoTextRetrieval` (idempotent)."""
    _check_internals()
    from peft import auto
    from peft.utils import peft_types

    from .peft_model import PeftModelForVideoTextRetrieval

    _add_str_enum_member(peft_types.TaskType, VIDEO_TASK_TYPE)
    auto.MODEL_TYPE_TO_PEFT_MODEL_MAPPING[VIDEO_TASK_TYPE] = PeftModelForVideoTextRetrieval
    _explain_video_task_in_auto_peft_model()


def base_auto_peft_model() -> type:
    """peft's private base of its `AutoPeftModelFor<Task>` classes, which `AutoPeftModelForVideoTextRetrieval`
    extends exactly as they do (two class attributes)."""
    _check_internals()
    from peft import auto

    return auto._BaseAutoPeftModel


def _explain_video_task_in_auto_peft_model() -> None:
    """Make the generic `AutoPeftModel.from_pretrained` name our class for a video adapter (idempotent).

    peft refuses any adapter with a task type in `AutoPeftModel` and suggests `AutoPeftModelForCausalLM`, which is
    wrong for a video adapter. The wrapper calls peft's own method unchanged and only rewrites that one refusal when
    the adapter's task type is ours; every other outcome, for every other adapter, is peft's.
    """
    from peft import PeftConfig, auto

    if getattr(auto.AutoPeftModel.from_pretrained, "_peft_video_wrapper", False):
        return
    peft_from_pretrained = auto.AutoPeftModel.from_pretrained.__func__

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return peft_from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs)
        except ValueError as error:
            if cls is not auto.AutoPeftModel or "Cannot use `AutoPeftModel` with a task type" not in str(error):
                raise
            hub_kwargs = {k: kwargs[k] for k in ("revision", "subfolder", "cache_dir", "token") if k in kwargs}
            try:
                task_type = PeftConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs).task_type
            except Exception:
                raise error from None
            if task_type != VIDEO_TASK_TYPE:
                raise
            raise ValueError(
                f"{pretrained_model_name_or_path} is a peft_video adapter (task_type={VIDEO_TASK_TYPE!r}): load it "
                "with `peft_video.AutoPeftModelForVideoTextRetrieval.from_pretrained(...)`, which loads the base "
                "CLIPModel named in its adapter_config.json too, or with `PeftModel.from_pretrained(clip, ...)`."
            ) from error

    from_pretrained._peft_video_wrapper = True
    from_pretrained.__doc__ = peft_from_pretrained.__doc__
    auto.AutoPeftModel.from_pretrained = classmethod(from_pretrained)


def register_peft_method(*, peft_type: str, name: str, config_cls: type, model_cls: type) -> None:
    """Add `peft_type` to peft's closed `PeftType` enum and register the method through peft's public
    `register_peft_method` (idempotent). Called by `peft_video.registry.register_video_method`."""
    _check_internals()
    from peft import mapping
    from peft.utils import peft_types

    member = _add_str_enum_member(peft_types.PeftType, peft_type)
    if member in mapping.PEFT_TYPE_TO_TUNER_MAPPING:
        return
    peft_types.register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls, prefix=model_cls.prefix)
