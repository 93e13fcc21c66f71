"""Seeded splits of the offline world as in-memory uint8 frames with captions (no files written).

`generate_split` is the fast path for tests and for anything that does not need the mp4 round trip; `export.py`
writes the same samples to disk. The kinds of a split follow its `kind_weights` exactly (a smooth weighted
round-robin: every prefix of a split holds each kind within one scene of its share), and every scene is drawn from its
own `SeedSequence([seed, split, index, attempt])`, so a split does not depend on how many videos the other splits hold,
a larger split starts with the videos of a smaller one, and the same arguments always give the same frames and
captions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .captions import caption_for
from .render import render_scene
from .world import STATIC_KINDS, TEMPORAL_KINDS, Scene, reverse_scene, sample_scene

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 2048, "val": 256, "test": 512}
"""Videos per split of the default world: its test split holds 41-51 twin pairs of every temporal kind, all with
captions that occur in neither train nor val (`tests/test_synthetic.py` checks it)."""
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "stills": 3}
_MAX_ATTEMPTS = 200


@dataclass
class WorldConfig:
    """How videos of the offline world are drawn.

    Args:
        num_frames: frames per video (8 to 16 is the intended range).
        image_size: frame side in pixels.
        seed: master seed; the same config always produces the same world.
        kind_weights: share of the videos of every split that each scene kind gets (exactly, not in expectation;
            a video and its twin count as two). Temporal kinds: `order`, `motion`, `colour`, `size`; static kinds
            (the caption holds for every frame, so reversing changes nothing): `single`, `count`, `pair`.
        pairs_in_train: draw the training split as order-sensitive pairs too (a video and its time-reversed twin),
            as `val` and `test` always are. On by default: a contrastive batch that holds both twins is what teaches
            order (see `peft_video.group_sampler`); without twins in the data, content alone satisfies the loss.
    """

    num_frames: int = 12
    image_size: int = 64
    seed: int = 0
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {
            "order": 0.2,
            "motion": 0.2,
            "colour": 0.2,
            "size": 0.16,
            "single": 0.09,
            "count": 0.03,
            "pair": 0.12,
        }
    )
    pairs_in_train: bool = True

    def __post_init__(self) -> None:
        if not 4 <= self.num_frames <= 64:
            raise ValueError(f"num_frames must be between 4 and 64, got {self.num_frames}")
        if self.image_size < 32 or self.image_size % 2:
            raise ValueError(f"image_size must be even and at least 32 (H.264 yuv420p), got {self.image_size}")
        unknown = set(self.kind_weights) - set(TEMPORAL_KINDS) - set(STATIC_KINDS)
        if unknown:
            raise ValueError(f"unknown scene kinds in kind_weights: {sorted(unknown)}")
        if sum(self.kind_weights.values()) <= 0 or min(self.kind_weights.values()) < 0:
            raise ValueError(f"kind_weights must be non-negative with a positive sum, got {self.kind_weights}")


@dataclass(frozen=True)
class VideoSample:
    """One video of the world: frames uint8 [T, H, W, 3] (RGB), its caption, and how it relates to others.

    `order_pair_id` is shared by a video and its time-reversed twin (None for videos without a twin);
    `is_order_sensitive` is True for every video whose caption depends on the order of its frames.
    """

    video_id: str
    split: str
    caption: str
    kind: str
    frames: np.ndarray
    scene: Scene
    order_pair_id: str | None = None
    is_order_sensitive: bool = False


def _rng(seed: int, split: str, index: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index, attempt]))


def kind_schedule(weights: dict[str, float], paired: bool):
    """The kinds of a split's scenes, in order (an endless generator; a paired temporal scene makes 2 videos).

    A smooth weighted round-robin over scenes weighted `weight / videos`, so that the videos of every prefix follow
    `weights` within one scene per kind; `send(True)` asks for a one-video (static) kind next, for the last slot of a
    split of odd size."""
    kinds = [k for k in sorted(weights) if weights[k] > 0]
    size = {k: 2 if paired and k in TEMPORAL_KINDS else 1 for k in kinds}
    share = {k: weights[k] / size[k] for k in kinds}
    total = sum(share.values())
    credit = dict.fromkeys(kinds, 0.0)
    single_only = False
    while True:
        for k in kinds:
            credit[k] += share[k]
        allowed = [k for k in kinds if size[k] == 1] if single_only else kinds
        if not allowed:
            raise ValueError("no one-video kind left for the last slot")
        kind = max(allowed, key=lambda k: credit[k])
        credit[kind] -= total
        single_only = bool((yield kind))


def _draw_kind(rng: np.random.Generator, weights: dict[str, float]) -> str:
    kinds = sorted(weights)
    p = np.asarray([weights[k] for k in kinds], dtype=np.float64)
    return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]


def generate_split(
    split: str,
    num_videos: int,
    config: WorldConfig | None = None,
    avoid_captions: Iterable[str] = (),
) -> list[VideoSample]:
    """Draws `num_videos` videos of one split, with captions unique within the split and absent from `avoid_captions`.

    In `val` and `test` (and in `train` when `config.pairs_in_train`), every temporal scene comes with its reverse:
    the same frames in reverse order, captioned with the reversed meaning. Such a pair is consecutive and shares
    `order_pair_id`; a mean over frames is identical for both, so frame-mean pooling scores them at chance.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_videos < 0:
        raise ValueError(f"num_videos must be >= 0, got {num_videos}")
    config = config or WorldConfig()
    paired = split != "train" or config.pairs_in_train
    has_static = any(config.kind_weights.get(k, 0) > 0 for k in STATIC_KINDS)
    if paired and num_videos % 2 and not has_static:
        raise ValueError(
            f"{split} holds only paired temporal videos with these kind_weights, so num_videos must be even, "
            f"got {num_videos}"
        )
    taken = set(avoid_captions)
    samples: list[VideoSample] = []
    schedule = kind_schedule(config.kind_weights, paired)
    kind = next(schedule)
    index = 0
    while len(samples) < num_videos:
        if paired and kind in TEMPORAL_KINDS and num_videos - len(samples) < 2:
            kind = schedule.send(True)  # one slot left: a pair would not fit
        for attempt in range(_MAX_ATTEMPTS):
            rng = _rng(config.seed, split, index, attempt)
            scene = sample_scene(rng, kind, config.num_frames, config.image_size)
            scenes = [scene, reverse_scene(scene)] if paired and scene.is_temporal else [scene]
            captions = [caption_for(s) for s in scenes]
            if len(set(captions)) == len(captions) and not taken.intersection(captions):
                break
        else:
            raise RuntimeError(
                f"could not draw a new unique caption for {split} video {len(samples)} ({kind}) "
                f"after {_MAX_ATTEMPTS} attempts; the split is too large for the grammar (ask for fewer videos)"
            )
        pair_id = f"{split}_pair_{index:05d}" if len(scenes) == 2 else None
        frames = render_scene(scene)
        # the twin is the very same frames backwards (rendering the reversed scene gives the same pixels, slower)
        for s, caption, pixels in zip(scenes, captions, (frames, frames[::-1].copy())):
            taken.add(caption)
            video_id = f"{split}_{len(samples):05d}"
            samples.append(VideoSample(video_id, split, caption, s.kind, pixels, s, pair_id, s.is_temporal))
        index += 1
        kind = next(schedule)
    return samples


def generate_world(
    num_train: int, num_val: int, num_test: int, config: WorldConfig | None = None
) -> dict[str, list[VideoSample]]:
    """All three splits; val and test captions never occur in train (nor test captions in val)."""
    config = config or WorldConfig()
    train = generate_split("train", num_train, config)
    val = generate_split("val", num_val, config, avoid_captions={s.caption for s in train})
    test = generate_split("test", num_test, config, avoid_captions={s.caption for s in train + val})
    return {"train": train, "val": val, "test": test}


STILL_KIND_WEIGHTS: dict[str, float] = {"single": 0.5, "count": 0.2, "pair": 0.3}


def generate_stills(
    num_images: int, seed: int = 0, image_size: int = 64, unique_captions: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Still frames with static captions only (no temporal words): uint8 [N, H, W, 3] and N captions.

    This is what the tiny CLIP is pretrained and evaluated on. With `unique_captions`, no caption repeats (use it
    for retrieval evaluation, where a repeated caption would make recall ill-defined).
    """
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    captions: list[str] = []
    taken: set[str] = set()
    for i in range(num_images):
        for attempt in range(_MAX_ATTEMPTS):
            rng = _rng(seed, "stills", i, attempt)
            scene = sample_scene(rng, _draw_kind(rng, STILL_KIND_WEIGHTS), 1, image_size)
            caption = caption_for(scene)
            if not unique_captions or caption not in taken:
                break
        else:
            raise RuntimeError(f"could not draw {num_images} stills with unique captions; ask for fewer")
        taken.add(caption)
        images[i] = render_scene(scene)[0]
        captions.append(caption)
    return images, captions
