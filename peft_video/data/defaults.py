"""Sampling names and defaults shared by the library and the command line. Kept free of torch so that
`peft-video --help` can read them without importing the library."""

DEFAULT_NUM_FRAMES = 12
"""The library's one default frame count (T): adapter configs, `FrameSampling`, and the `peft-video` commands."""

FRAME_SAMPLING_STRATEGIES = ("segments", "chunked_segments", "fps")
SHORT_VIDEO_POLICIES = ("repeat", "pad")
