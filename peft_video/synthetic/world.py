"""Scenes of the offline world: what is where in every frame, and the facts a caption is written from.

A `Scene` is pure data (no pixels): per-frame tracks of objects plus `facts`, the structured meaning of the scene that
`captions.py` turns into words. Temporal kinds (`order`, `motion`, `colour`, `size`) can be reversed in time with
`reverse_scene`, which flips every track and rewrites the facts so that the caption stays true; a mean over frames is
the same for a scene and its reverse, so frame-mean pooling cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .grammar import COLOURS, POSITIONS, SHAPES

TEMPORAL_KINDS: tuple[str, ...] = ("order", "motion", "colour", "size")
STATIC_KINDS: tuple[str, ...] = ("single", "count", "pair")

# Radii as fractions of the frame side. Normal objects sit between the "small" and "big" bands so that a size word in
# a caption is never ambiguous.
# Named positions are 0.32 of the side apart; with these radii and jitter two normal objects at different named
# positions do not overlap (tests read every object back from the pixels).
NORMAL_RADIUS = (0.1, 0.125)
SMALL_RADIUS = (0.07, 0.085)
BIG_RADIUS = (0.17, 0.195)
POSITION_JITTER = 0.02
REACH = 1.15  # farthest extent of any shape from its centre, in radii (the triangle's corners; see render.py)
COLOUR_JITTER = 12


@dataclass(frozen=True)
class Track:
    """One object over time. Arrays have one entry per frame; `x`, `y`, `radius` are in pixels."""

    shape: str
    colour: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    visible: np.ndarray
    rgb_offset: tuple[int, int, int] = (0, 0, 0)

    def reversed(self) -> Track:
        """The same object with time running backwards."""
        return replace(
            self,
            colour=tuple(reversed(self.colour)),
            x=self.x[::-1].copy(),
            y=self.y[::-1].copy(),
            radius=self.radius[::-1].copy(),
            visible=self.visible[::-1].copy(),
        )


@dataclass(frozen=True)
class Scene:
    """A scene: its kind, the objects' tracks, and the facts its caption states.

    Args:
        kind: one of `TEMPORAL_KINDS` or `STATIC_KINDS`.
        tracks: the objects, drawn in this order (later ones on top).
        facts: the structured meaning (see the samplers below for the keys of each kind).
        num_frames: frames in the scene (1 for a still).
        image_size: frame side in pixels.
    """

    kind: str
    tracks: tuple[Track, ...]
    facts: dict = field(default_factory=dict)
    num_frames: int = 1
    image_size: int = 64

    @property
    def is_temporal(self) -> bool:
        """Whether the caption depends on the order of frames."""
        return self.kind in TEMPORAL_KINDS


def _constant(value: float, num_frames: int) -> np.ndarray:
    return np.full(num_frames, float(value))


def _pick(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _radius(rng: np.random.Generator, band: tuple[float, float], image_size: int) -> float:
    return float(rng.uniform(*band)) * image_size


def _place(rng: np.random.Generator, position: str, image_size: int, radius: float) -> tuple[float, float]:
    fx, fy = POSITIONS[position]
    jx, jy = rng.uniform(-POSITION_JITTER, POSITION_JITTER, size=2)
    # Big objects move inwards rather than being cut by the frame edge (a cut triangle no longer looks like one).
    margin = min(REACH * radius + 1.0, image_size / 2)
    return tuple(float(np.clip(f * image_size, margin, image_size - margin)) for f in (fx + jx, fy + jy))


def _rgb_offset(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3))


def _static_track(rng, shape, colour, x, y, radius, num_frames) -> Track:
    return Track(
        shape=shape,
        colour=(colour,) * num_frames,
        x=_constant(x, num_frames),
        y=_constant(y, num_frames),
        radius=_constant(radius, num_frames),
        visible=np.ones(num_frames, dtype=bool),
        rgb_offset=_rgb_offset(rng),
    )


def _obj(rng: np.random.Generator) -> dict:
    return {"colour": _pick(rng, COLOURS), "shape": _pick(rng, SHAPES)}


# ----------------------------------------------------------------------------------------------- static kinds


def sample_single(rng: np.random.Generator, num_frames: int = 1, image_size: int = 64) -> Scene:
    """One object; facts: colour, shape, size (None/"small"/"big"), position (a named position or None)."""
    obj = _obj(rng)
    size = _pick(rng, [None, None, None, "small", "big"])
    band = {None: NORMAL_RADIUS, "small": SMALL_RADIUS, "big": BIG_RADIUS}[size]
    radius = _radius(rng, band, image_size)
    if rng.random() < 0.75:
        position = _pick(rng, POSITIONS)
        x, y = _place(rng, position, image_size, radius)
    else:  # anywhere (like a frame of a moving object); the caption then names no position
        position = None
        margin = REACH * radius + 1
        x, y = rng.uniform(margin, image_size - margin, size=2)
    track = _static_track(rng, obj["shape"], obj["colour"], x, y, radius, num_frames)
    return Scene("single", (track,), {**obj, "size": size, "position": position}, num_frames, image_size)


def sample_count(rng: np.random.Generator, num_frames: int = 1, image_size: int = 64) -> Scene:
    """Two or three identical objects at random non-overlapping places; facts: count, colour, shape, size (None or
    "small")."""
    obj = _obj(rng)
    count = int(rng.integers(2, 4))
    size = _pick(rng, [None, "small"])
    radius = _radius(rng, (0.09, 0.12) if size is None else SMALL_RADIUS, image_size)
    centres: list[tuple[float, float]] = []
    while len(centres) < count:
        margin = REACH * radius + 1
        candidate = rng.uniform(margin, image_size - margin, size=2)
        if all(np.hypot(candidate[0] - cx, candidate[1] - cy) > 2.6 * radius + 2 for cx, cy in centres):
            centres.append((float(candidate[0]), float(candidate[1])))
    tracks = tuple(_static_track(rng, obj["shape"], obj["colour"], x, y, radius, num_frames) for x, y in centres)
    return Scene("count", tracks, {**obj, "count": count, "size": size}, num_frames, image_size)


def sample_pair(rng: np.random.Generator, num_frames: int = 1, image_size: int = 64) -> Scene:
    """Two different objects at two different named positions; facts: first, second (each colour/shape/position)."""
    first, second = _two_distinct_objects(rng)
    positions = rng.permutation(list(POSITIONS))[:2]
    tracks = []
    for obj, position in zip((first, second), positions):
        obj["position"] = str(position)
        radius = _radius(rng, NORMAL_RADIUS, image_size)
        x, y = _place(rng, obj["position"], image_size, radius)
        tracks.append(_static_track(rng, obj["shape"], obj["colour"], x, y, radius, num_frames))
    return Scene("pair", tuple(tracks), {"first": first, "second": second}, num_frames, image_size)


def _two_distinct_objects(rng: np.random.Generator) -> tuple[dict, dict]:
    first = _obj(rng)
    while True:
        second = _obj(rng)
        if second != first:
            return first, second


# --------------------------------------------------------------------------------------------- temporal kinds


def sample_order(rng: np.random.Generator, num_frames: int = 12, image_size: int = 64) -> Scene:
    """Object `first` appears, then object `second` appears (at other places); facts: first, second.

    Visibility intervals are first = [a, T - b - k2) and second = [a + k1, T - b) with a, b and k1, k2 drawn from the
    same ranges, so the reversed scene is drawn from the same distribution with the roles swapped.
    """
    t = num_frames
    first, second = _two_distinct_objects(rng)
    a, b = (int(v) for v in rng.integers(0, max(1, t // 8) + 1, size=2))
    k1, k2 = (int(v) for v in rng.integers(max(2, t // 4), t // 2 + 1, size=2))
    intervals = ((a, t - b - k2), (a + k1, t - b))
    positions = rng.permutation(list(POSITIONS))[:2]
    frames = np.arange(t)
    tracks = []
    for obj, position, (start, stop) in zip((first, second), positions, intervals):
        obj["position"] = str(position)
        radius = _radius(rng, NORMAL_RADIUS, image_size)
        x, y = _place(rng, obj["position"], image_size, radius)
        track = _static_track(rng, obj["shape"], obj["colour"], x, y, radius, t)
        tracks.append(replace(track, visible=(frames >= start) & (frames < stop)))
    return Scene("order", tuple(tracks), {"first": first, "second": second}, t, image_size)


# Where a moving object goes from each named start, and the lanes it may move along (diagonal paths have none).
OPPOSITE_SIDES: dict[str, str] = {
    "left": "right",
    "right": "left",
    "top": "bottom",
    "bottom": "top",
    "top left": "bottom right",
    "bottom right": "top left",
    "top right": "bottom left",
    "bottom left": "top right",
}
_LANES = {"left": ("top", "center", "bottom"), "top": ("left", "center", "right")}
MOTION_PATHS: tuple[tuple[str, str | None], ...] = tuple(
    (start, lane) for start in OPPOSITE_SIDES for lane in _LANES.get(start, _LANES.get(OPPOSITE_SIDES[start], (None,)))
)
"""Every (start, lane) of a motion scene: left/right along 3 lanes, top/bottom along 3 lanes, 4 diagonals."""


def _size_band(rng: np.random.Generator) -> tuple[str | None, tuple[float, float]]:
    size = _pick(rng, [None, None, "small", "big"])
    return size, {None: NORMAL_RADIUS, "small": SMALL_RADIUS, "big": BIG_RADIUS}[size]


def sample_motion(rng: np.random.Generator, num_frames: int = 12, image_size: int = 64) -> Scene:
    """One object moving across the frame along a side-to-side, top-to-bottom or diagonal path; facts: colour,
    shape, size (None/"small"/"big"), start, end (named positions), lane (named position, None for diagonals)."""
    obj = _obj(rng)
    size, band = _size_band(rng)
    start, lane = MOTION_PATHS[int(rng.integers(len(MOTION_PATHS)))]
    end = OPPOSITE_SIDES[start]
    radius = _radius(rng, band, image_size)
    margin = REACH * radius + 1.0
    lane_xy = _place(rng, lane, image_size, radius) if lane else (0.0, 0.0)
    coordinates = []
    for axis in (0, 1):
        begin, finish = POSITIONS[start][axis], POSITIONS[end][axis]
        if begin == finish:  # the lane's axis
            coordinates.append(_constant(lane_xy[axis], num_frames))
            continue
        low, high = 0.2 + rng.uniform(-0.03, 0.03), 0.8 + rng.uniform(-0.03, 0.03)
        # big objects start and end further in, so that they stay whole inside the frame
        low, high = max(low * image_size, margin), min(high * image_size, image_size - margin)
        coordinates.append(
            np.linspace(high, low, num_frames) if begin > finish else np.linspace(low, high, num_frames)
        )
    track = _static_track(rng, obj["shape"], obj["colour"], 0, 0, radius, num_frames)
    track = replace(track, x=coordinates[0], y=coordinates[1])
    facts = {**obj, "size": size, "start": start, "end": end, "lane": lane}
    return Scene("motion", (track,), facts, num_frames, image_size)


def sample_colour_change(rng: np.random.Generator, num_frames: int = 12, image_size: int = 64) -> Scene:
    """One object whose colour switches once; facts: shape, size, position, start_colour, end_colour."""
    shape = _pick(rng, SHAPES)
    size, band = _size_band(rng)
    start_colour = _pick(rng, COLOURS)
    end_colour = _pick(rng, [c for c in COLOURS if c != start_colour])
    low = max(1, num_frames // 3)
    switch = int(rng.integers(low, num_frames - low + 1))  # symmetric range: reversal keeps the distribution
    position = _pick(rng, POSITIONS)
    radius = _radius(rng, band, image_size)
    x, y = _place(rng, position, image_size, radius)
    colours = (start_colour,) * switch + (end_colour,) * (num_frames - switch)
    track = replace(_static_track(rng, shape, start_colour, x, y, radius, num_frames), colour=colours)
    facts = {
        "shape": shape,
        "size": size,
        "position": position,
        "start_colour": start_colour,
        "end_colour": end_colour,
    }
    return Scene("colour", (track,), facts, num_frames, image_size)


def sample_size_change(rng: np.random.Generator, num_frames: int = 12, image_size: int = 64) -> Scene:
    """One object growing or shrinking steadily; facts: colour, shape, position, change ("grows"/"shrinks")."""
    obj = _obj(rng)
    change = _pick(rng, ["grows", "shrinks"])
    position = _pick(rng, POSITIONS)
    small, big = _radius(rng, SMALL_RADIUS, image_size), _radius(rng, BIG_RADIUS, image_size)
    x, y = _place(rng, position, image_size, big)
    radii = np.linspace(small, big, num_frames) if change == "grows" else np.linspace(big, small, num_frames)
    track = replace(_static_track(rng, obj["shape"], obj["colour"], x, y, small, num_frames), radius=radii)
    return Scene("size", (track,), {**obj, "position": position, "change": change}, num_frames, image_size)


SAMPLERS = {
    "single": sample_single,
    "count": sample_count,
    "pair": sample_pair,
    "order": sample_order,
    "motion": sample_motion,
    "colour": sample_colour_change,
    "size": sample_size_change,
}


def sample_scene(rng: np.random.Generator, kind: str, num_frames: int, image_size: int = 64) -> Scene:
    """Draws a scene of the given kind (a key of `SAMPLERS`)."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {sorted(SAMPLERS)}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels for shapes to stay recognisable, got {image_size}")
    return SAMPLERS[kind](rng, num_frames=num_frames, image_size=image_size)


def reverse_scene(scene: Scene) -> Scene:
    """The scene played backwards, with facts rewritten so that its caption describes the reversed frames."""
    facts = dict(scene.facts)
    if scene.kind == "order":
        # The track list keeps its drawing order; only which object appears first changes.
        facts = {"first": scene.facts["second"], "second": scene.facts["first"]}
    elif scene.kind == "motion":
        facts["start"], facts["end"] = scene.facts["end"], scene.facts["start"]
    elif scene.kind == "colour":
        facts["start_colour"], facts["end_colour"] = scene.facts["end_colour"], scene.facts["start_colour"]
    elif scene.kind == "size":
        facts["change"] = {"grows": "shrinks", "shrinks": "grows"}[scene.facts["change"]]
    else:
        raise ValueError(f"a {scene.kind!r} scene looks the same backwards; only {TEMPORAL_KINDS} can be reversed")
    return replace(scene, tracks=tuple(track.reversed() for track in scene.tracks), facts=facts)
