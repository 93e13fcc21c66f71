"""The vocabulary of the offline world: colours, shapes, named positions, and every word a caption can use.

Everything else in `peft_video.synthetic` (scenes, captions, the tiny CLIP's tokenizer) is derived from these tables,
so adding a colour or a shape here is the only edit needed to grow the world.
"""

from __future__ import annotations

# Saturated, far-apart colours: each must stay nearest to its own palette entry after H.264 with 4:2:0 chroma
# subsampling (checked in tests/test_synthetic.py on decoded mp4 frames).
# Every pair is at least 110 apart in L1 (RGB), three times the largest colour jitter of an object.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "orange": (250, 130, 20),
    "yellow": (240, 215, 35),
    "green": (35, 195, 60),
    "cyan": (30, 215, 220),
    "blue": (45, 85, 235),
    "purple": (150, 60, 225),
    "pink": (245, 125, 185),
    "white": (240, 240, 240),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
PLURAL: dict[str, str] = {shape: shape + "s" for shape in SHAPES}

BACKGROUND: tuple[int, int, int] = (28, 28, 32)

# Named positions (a 3 x 3 grid) as fractions of the frame side (x, y), with the phrase a caption uses for them.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.18, 0.5),
    "right": (0.82, 0.5),
    "top": (0.5, 0.18),
    "bottom": (0.5, 0.82),
    "center": (0.5, 0.5),
    "top left": (0.18, 0.18),
    "top right": (0.82, 0.18),
    "bottom left": (0.18, 0.82),
    "bottom right": (0.82, 0.82),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
    "top left": "at the top left",
    "top right": "at the top right",
    "bottom left": "at the bottom left",
    "bottom right": "at the bottom right",
}

COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three"}
SIZE_WORDS: tuple[str, ...] = ("small", "big")

# Words that only temporal captions use. The tiny CLIP is pretrained without them (they are in its vocabulary so that
# adapters can learn them, but their embeddings never received a gradient during pretraining).
TEMPORAL_WORDS: tuple[str, ...] = ("appears", "then", "moves", "from", "to", "turns", "grows", "shrinks")

STATIC_FUNCTION_WORDS: tuple[str, ...] = ("an", "and", "on", "the", "at", "in", ",")


def static_words() -> list[str]:
    """Every word a static (still-frame) caption can contain, in a fixed order."""
    words: list[str] = []
    for group in (
        COUNT_WORDS.values(),
        SIZE_WORDS,
        COLOURS,
        SHAPES,
        PLURAL.values(),
        POSITIONS,
        STATIC_FUNCTION_WORDS,
    ):
        for phrase in group:
            for word in phrase.split():  # multi-word positions ("top left") are made of single words
                if word not in words:
                    words.append(word)
    return words


def all_words() -> list[str]:
    """Every word any caption of the world can contain (static first, then temporal), in a fixed order."""
    return static_words() + [w for w in TEMPORAL_WORDS if w not in static_words()]
