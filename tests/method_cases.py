"""Every registered method's test variants (`peft_video.registry`), as the cases the shared contract tests run on.

Nothing here names a method: a new method's package declares its `test_variants` when it registers itself.
"""

from __future__ import annotations

from collections.abc import Callable

from peft_video.config import VideoAdapterConfig
from peft_video.registry import video_methods

NUM_FRAMES = 4

METHOD_CASES: dict[str, Callable[[], VideoAdapterConfig]] = {
    variant: (lambda build=build: build(NUM_FRAMES))
    for method in video_methods().values()
    for variant, build in method.test_variants.items()
}
