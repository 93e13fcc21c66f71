"""Drawing scenes into uint8 frames with numpy only.

Shapes are drawn from signed distance functions with one pixel of anti-aliasing, so edges look the same at every
sub-pixel position and a moving object does not flicker. Squares and triangles are scaled to roughly the area of a
circle of the same `radius`, so size words mean the same thing for every shape.
"""

from __future__ import annotations

import numpy as np

from .grammar import BACKGROUND, COLOURS
from .world import Scene, Track

_SQUARE_HALF_SIDE = 0.886  # times radius: same area as the circle
_TRIANGLE_CIRCUMRADIUS = 1.3  # times radius: a little smaller than equal area, so triangles stay inside the frame
_SQRT3_HALF = np.sqrt(3.0) / 2.0


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if shape == "circle":
        return np.hypot(dx, dy) - radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - _SQUARE_HALF_SIDE * radius
    if shape == "triangle":  # pointing up, its bounding box centred on (x, y); image y grows downwards
        circumradius = _TRIANGLE_CIRCUMRADIUS * radius
        dy = dy - 0.25 * circumradius  # the centroid sits a quarter circumradius below the bounding-box centre
        edges = np.maximum(dy, np.maximum(_SQRT3_HALF * dx - 0.5 * dy, -_SQRT3_HALF * dx - 0.5 * dy))
        return edges - circumradius / 2.0
    raise ValueError(f"unknown shape {shape!r}")


def object_rgb(track: Track, frame: int) -> np.ndarray:
    """The exact colour `track` is drawn with in `frame` (palette colour plus the track's fixed jitter)."""
    base = np.asarray(COLOURS[track.colour[frame]], dtype=np.float32)
    return np.clip(base + np.asarray(track.rgb_offset, dtype=np.float32), 0, 255)


def coverage(track: Track, frame: int, image_size: int) -> np.ndarray:
    """Fraction of each pixel covered by `track` in `frame`, shape [image_size, image_size], in [0, 1]."""
    if not track.visible[frame]:
        return np.zeros((image_size, image_size), dtype=np.float32)
    centres = np.arange(image_size, dtype=np.float32) + 0.5
    dx = centres[None, :] - np.float32(track.x[frame])
    dy = centres[:, None] - np.float32(track.y[frame])
    distance = _signed_distance(track.shape, dx, dy, float(track.radius[frame]))
    return np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)


def render_scene(scene: Scene) -> np.ndarray:
    """Draws every frame of `scene`: uint8 array [num_frames, image_size, image_size, 3] (RGB)."""
    size = scene.image_size
    frames = np.empty((scene.num_frames, size, size, 3), dtype=np.uint8)
    background = np.asarray(BACKGROUND, dtype=np.float32)
    for t in range(scene.num_frames):
        canvas = np.broadcast_to(background, (size, size, 3)).copy()
        for track in scene.tracks:
            alpha = coverage(track, t, size)[..., None]
            canvas = canvas * (1.0 - alpha) + object_rgb(track, t) * alpha
        frames[t] = np.rint(canvas).astype(np.uint8)
    return frames
