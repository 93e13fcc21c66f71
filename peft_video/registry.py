"""The one table of peft_video methods. Each method's package registers itself here, from its own `__init__.py`.

`register_video_method` records what the rest of the library needs to know about a method (its config and tuner
classes, what its model card says, and the small configurations the shared test suite runs) and registers it with
peft. Everything that lists methods (training scripts' `--method`, model cards, the shared tests) reads this table;
nothing outside a method's package names the method.

    # peft_video/tuners/my_method/__init__.py
    from ...registry import register_video_method
    register_video_method(name="my_method", config_cls=MyMethodConfig, model_cls=MyMethodModel,
                          display_name="My Method", description="...", citation="@article{...}",
                          test_variants={"my_method": lambda num_frames: MyMethodConfig(num_frames=num_frames)})
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import _peft_registration
from .config import VideoAdapterConfig


@dataclass(frozen=True)
class VideoMethod:
    """A registered peft_video method.

    Args:
        name: lower-case identifier: peft's method name, `--method` of the training scripts, the model card's tag.
            Its upper-case form is the method's `PeftType` member.
        config_cls: the method's `VideoAdapterConfig` subclass.
        model_cls: the method's `VideoTuner` subclass (what peft instantiates for the config).
        display_name: the method's name for people ("Prompt Cube (Prompt Switch)").
        description: one paragraph for model cards: what the method does and what is trained.
        citation: BibTeX of the paper.
        test_variants: name -> `callable(num_frames)` returning a small config of the method, sized for a tiny CLIP.
            Together they should exercise each of the method's code paths; the shared test suite runs every one.
    """

    name: str
    config_cls: type[VideoAdapterConfig]
    model_cls: type
    display_name: str
    description: str
    citation: str
    test_variants: Mapping[str, Callable[[int], VideoAdapterConfig]] = field(default_factory=dict)

    @property
    def peft_type(self) -> str:
        """The method's `PeftType` member name (`"TFVL"`)."""
        return self.name.upper()


_METHODS: dict[str, VideoMethod] = {}


def register_video_method(
    *,
    name: str,
    config_cls: type[VideoAdapterConfig],
    model_cls: type,
    display_name: str,
    description: str,
    citation: str,
    test_variants: Mapping[str, Callable[[int], VideoAdapterConfig]] | None = None,
) -> VideoMethod:
    """Register a video method with peft_video and with peft (idempotent for the same classes); see `VideoMethod`."""
    from .modeling import VideoTuner

    if not re.fullmatch(r"[a-z][a-z0-9_]*[a-z0-9]", name):
        raise ValueError(f"method name must be lower-case letters, digits and '_' (peft's rule), got {name!r}.")
    if not (isinstance(config_cls, type) and issubclass(config_cls, VideoAdapterConfig)):
        raise TypeError(f"config_cls of {name!r} must subclass VideoAdapterConfig, got {config_cls!r}.")
    if not (isinstance(model_cls, type) and issubclass(model_cls, VideoTuner)):
        raise TypeError(f"model_cls of {name!r} must subclass peft_video.modeling.VideoTuner, got {model_cls!r}.")
    method = VideoMethod(
        name=name,
        config_cls=config_cls,
        model_cls=model_cls,
        display_name=display_name,
        description=description,
        citation=citation,
        test_variants=MappingProxyType(dict(test_variants or {})),
    )
    known = _METHODS.get(name)
    if known is not None:
        if (known.config_cls, known.model_cls) != (config_cls, model_cls):
            raise ValueError(
                f"a different peft_video method is already registered as {name!r} "
                f"({known.config_cls.__qualname__}, {known.model_cls.__qualname__})."
            )
        return known
    clash = [v for m in _METHODS.values() for v in m.test_variants if v in method.test_variants]
    if clash:
        raise ValueError(f"test variant name(s) {clash} of {name!r} are already used by another method.")
    _peft_registration.register_peft_method(
        peft_type=method.peft_type, name=name, config_cls=config_cls, model_cls=model_cls
    )
    _METHODS[name] = method
    return method


def video_methods() -> Mapping[str, VideoMethod]:
    """Every registered method by name, in registration order."""
    return MappingProxyType(_METHODS)


def get_video_method(key: Any) -> VideoMethod:
    """The method of a name (`"tfvl"`), a peft type (`"TFVL"`, `PeftType.TFVL`) or an adapter config instance."""
    if isinstance(key, VideoAdapterConfig):
        key = key.peft_type
    text = str(getattr(key, "value", key))
    method = _METHODS.get(text) or _METHODS.get(text.lower())
    if method is None:
        raise KeyError(f"no peft_video method {text!r} is registered; registered: {sorted(_METHODS)}.")
    return method


ENTRY_POINT_GROUP = "peft_video.methods"


def load_method_packages() -> list[str]:
    """Import every installed package that declares an entry point in the `peft_video.methods` group: its import
    registers its method, exactly as the built-in `tuners/<method>/__init__.py` do. Called by `import peft_video`, so
    that a method published as its own package is known to the training scripts and to `PeftModel.from_pretrained`
    once it is installed:

        # pyproject.toml of the package
        [project.entry-points."peft_video.methods"]
        my_method = "my_package.my_method"

    A package that fails to import is skipped with a warning naming it (it must not break `import peft_video`).
    Returns the names of the entry points loaded."""
    import warnings
    from importlib.metadata import entry_points

    loaded = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # noqa: BLE001  (any failure of a third-party package)
            warnings.warn(
                f"peft_video: the method package {entry_point.value!r} (entry point {entry_point.name!r} of "
                f"{ENTRY_POINT_GROUP!r}) failed to import and is not registered: {error!r}",
                stacklevel=2,
            )
        else:
            loaded.append(entry_point.name)
    return loaded


def build_test_variants(num_frames: int) -> dict[str, VideoAdapterConfig]:
    """Every registered method's test variants, built for `num_frames` frames: variant name -> config."""
    return {variant: build(num_frames) for m in _METHODS.values() for variant, build in m.test_variants.items()}
