"""One package per method, in peft's shape: config.py, layer.py, model.py, and an `__init__.py` that registers the
method with `peft_video.registry.register_video_method`. Every package here is imported (and so registered) when
`peft_video` is imported; a new method needs no edit outside its own package."""

import importlib
import pkgutil

for _package in pkgutil.iter_modules(__path__):
    if _package.ispkg:
        importlib.import_module(f"{__name__}.{_package.name}")
