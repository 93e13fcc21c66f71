"""The offline world: procedurally generated short videos whose captions depend on time, and a tiny CLIP pretrained
on still frames of that world (see docs/offline_world.md).

- `generate_split` / `generate_world`: seeded uint8 frames + captions in memory (no files);
- `write_world`: the same videos as H.264 mp4 files plus a `manifest.jsonl` (the bring-your-own manifest format);
- `generate_stills`: still frames with static captions (what the tiny CLIP was pretrained on);
- `TINY_CLIP_PATH`: folder of the committed tiny CLIP (`CLIPModel.from_pretrained` / `AutoTokenizer.from_pretrained`).
"""

from .captions import caption_for
from .dataset import (
    DEFAULT_SPLIT_SIZES,
    SPLITS,
    VideoSample,
    WorldConfig,
    generate_split,
    generate_stills,
    generate_world,
)
from .export import read_manifest, write_mp4, write_world
from .render import render_scene
from .tiny_clip import TINY_CLIP_PATH, load_tiny_clip, still_frame_recall
from .world import STATIC_KINDS, TEMPORAL_KINDS, Scene, Track, reverse_scene, sample_scene

__all__ = [
    "DEFAULT_SPLIT_SIZES",
    "SPLITS",
    "STATIC_KINDS",
    "TEMPORAL_KINDS",
    "TINY_CLIP_PATH",
    "Scene",
    "Track",
    "VideoSample",
    "WorldConfig",
    "caption_for",
    "generate_split",
    "generate_stills",
    "generate_world",
    "load_tiny_clip",
    "read_manifest",
    "render_scene",
    "reverse_scene",
    "sample_scene",
    "still_frame_recall",
    "write_mp4",
    "write_world",
]
