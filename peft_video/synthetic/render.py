"""Drawing scenes into uint8 frames with numpy only.

Shapes are drawn from signed distance functions with one pixel of anti-aliasing, so edges look the same at every
sub-pixel position and a moving object does not flicker. Squares, triangles and diamonds are scaled to roughly the area
of a circle of the same `radius`, so size words mean the same thing for every shape. All frames of a track are drawn
at once.
"""

from __future__ import annotations

import numpy as np

from .grammar import BACKGROUND, COLOURS
from .world import Scene, Track

_SQUARE_HALF_SIDE = 0.886  # times radius: same area as the circle
_TRIANGLE_CIRCUMRADIUS = 1.3  # times radius: a little smaller than equal area, so triangles stay inside the frame
_DIAMOND_HALF_DIAGONAL = 1.15  # times radius: within REACH, so diamonds stay inside the frame like triangles
_SQRT3_HALF = np.sqrt(3.0) / 2.0


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius) -> np.ndarray:
    if shape == "circle":
        return np.hypot(dx, dy) - radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - _SQUARE_HALF_SIDE * radius
    if shape == "triangle":  # pointing up, its bounding box centred on (x, y); image y grows downwards
        circumradius = _TRIANGLE_CIRCUMRADIUS * radius
        dy = dy - 0.25 * circumradius  # the centroid sits a quarter circumradius below the bounding-box centre
        edges = np.maximum(dy, np.maximum(_SQRT3_HALF * dx - 0.5 * dy, -_SQRT3_HALF * dx - 0.5 * dy))
        return edges - circumradius / 2.0
    if shape == "diamond":  # a square standing on a corner
        return (np.abs(dx) + np.abs(dy) - _DIAMOND_HALF_DIAGONAL * radius) / np.sqrt(2.0)
    raise ValueError(f"unknown shape {shape!r}")


def object_rgb(track: Track) -> np.ndarray:
    """The exact colour `track` is drawn with in every frame, float32 [T, 3] (palette colour plus the track's fixed
    jitter)."""
    base = np.asarray([COLOURS[name] for name in track.colour], dtype=np.float32)
    return np.clip(base + np.asarray(track.rgb_offset, dtype=np.float32), 0, 255)


def coverage(track: Track, image_size: int) -> np.ndarray:
    """Fraction of each pixel covered by `track` in every frame, float32 [T, image_size, image_size], in [0, 1]."""
    centres = np.arange(image_size, dtype=np.float32) + 0.5
    dx = centres[None, None, :] - track.x.astype(np.float32)[:, None, None]
    dy = centres[None, :, None] - track.y.astype(np.float32)[:, None, None]
    radius = track.radius.astype(np.float32)[:, None, None]
    distance = _signed_distance(track.shape, dx, dy, radius)
    return np.clip(0.5 - distance, 0.0, 1.0) * track.visible[:, None, None]


def render_scene(scene: Scene) -> np.ndarray:
    """Draws every frame of `scene`: uint8 array [num_frames, image_size, image_size, 3] (RGB)."""
    size = scene.image_size
    canvas = np.empty((scene.num_frames, size, size, 3), dtype=np.float32)
    canvas[:] = np.asarray(BACKGROUND, dtype=np.float32)
    for track in scene.tracks:  # later tracks on top
        alpha = coverage(track, size)[..., None]
        canvas += alpha * (object_rgb(track)[:, None, None, :] - canvas)
    return np.rint(canvas).astype(np.uint8)
