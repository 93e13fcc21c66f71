"""The vocabulary of the offline world: colours, shapes, named positions, and every word a caption can use.

Everything else in `peft_video.synthetic` (scenes, captions, the tiny CLIP's tokenizer) is derived from these tables,
so adding a colour or a shape here is the only edit needed to grow the world.
"""

from __future__ import annotations

# Saturated, far-apart colours: each must stay nearest to its own palette entry after H.264 with 4:2:0 chroma
# subsampling (checked in tests/test_synthetic.py on decoded mp4 frames).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 60),
    "blue": (45, 85, 235),
    "yellow": (240, 215, 35),
    "white": (240, 240, 240),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PLURAL: dict[str, str] = {shape: shape + "s" for shape in SHAPES}

BACKGROUND: tuple[int, int, int] = (28, 28, 32)

# Named positions as fractions of the frame side (x, y), with the phrase a caption uses for them.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.18, 0.5),
    "right": (0.82, 0.5),
    "top": (0.5, 0.18),
    "bottom": (0.5, 0.82),
    "center": (0.5, 0.5),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}

COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three"}
SIZE_WORDS: tuple[str, ...] = ("small", "big")

# Words that only temporal captions use. The tiny CLIP is pretrained without them (they are in its vocabulary so that
# adapters can learn them, but their embeddings never received a gradient during pretraining).
TEMPORAL_WORDS: tuple[str, ...] = ("appears", "then", "moves", "from", "to", "turns", "grows", "shrinks")

STATIC_FUNCTION_WORDS: tuple[str, ...] = ("and", "on", "the", "at", "in", ",")


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
        for word in group:
            if word not in words:
                words.append(word)
    return words


def all_words() -> list[str]:
    """Every word any caption of the world can contain (static first, then temporal), in a fixed order."""
    return static_words() + [w for w in TEMPORAL_WORDS if w not in static_words()]
