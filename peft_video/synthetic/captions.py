"""Captions of the offline world, written from a scene's facts by a small fixed grammar.

Static captions ("a small red circle on the left", "two blue squares", "three small pink diamonds", "an orange
circle on the left and a blue square at the top right") use only `grammar.static_words()`; temporal ones add the
words in `grammar.TEMPORAL_WORDS`:

- order:  "a red circle appears on the left, then a blue square appears on the right"
- motion: "a red circle moves to the right at the top", "a big blue diamond moves to the bottom right"
- colour: "a small circle on the left turns from red to green"
- size:   "a small red circle on the left grows" / "a big red circle on the left shrinks"

Temporal twins differ in words the frozen tiny CLIP knows: where a moving object goes ("to the right" / "to the
left"), the size a growing or shrinking object starts with ("a small ... grows" / "a big ... shrinks"), not only in the
order of the same words ("from left to right" / "from right to left") or in a word it never learnt ("grows" /
"shrinks"), which its text encoder barely tells apart (cosine 0.99-0.999 between such twin captions: a bag-of-words
encoder, like CLIP's).
"""

from __future__ import annotations

from .grammar import COUNT_WORDS, PLURAL, POSITION_PHRASES
from .world import Scene


def _indefinite(words: list[str]) -> str:
    """`words` after the right indefinite article ("an orange circle", "a big orange circle")."""
    return " ".join(["an" if words[0][0] in "aeiou" else "a", *words])


def _noun_phrase(obj: dict) -> str:
    return _indefinite([*([obj["size"]] if obj.get("size") else []), obj["colour"], obj["shape"]])


def _with_position(phrase: str, position: str | None) -> str:
    return f"{phrase} {POSITION_PHRASES[position]}" if position else phrase


def caption_for(scene: Scene) -> str:
    """The caption that states `scene.facts` (lower case; a comma only in order captions)."""
    f = scene.facts
    if scene.kind == "single":
        return _with_position(_noun_phrase(f), f["position"])
    if scene.kind == "count":
        size = f"{f['size']} " if f.get("size") else ""
        return f"{COUNT_WORDS[f['count']]} {size}{f['colour']} {PLURAL[f['shape']]}"
    if scene.kind == "pair":
        first, second = (_with_position(_noun_phrase(f[k]), f[k]["position"]) for k in ("first", "second"))
        return f"{first} and {second}"
    if scene.kind == "order":
        first, second = (
            f"{_noun_phrase(f[k])} appears {POSITION_PHRASES[f[k]['position']]}" for k in ("first", "second")
        )
        return f"{first}, then {second}"
    if scene.kind == "motion":  # where it goes (the start is the opposite side), along which lane
        return _with_position(f"{_noun_phrase(f)} moves to the {f['end']}", f["lane"])
    if scene.kind == "colour":
        thing = _indefinite([*([f["size"]] if f.get("size") else []), f["shape"]])
        return f"{_with_position(thing, f['position'])} turns from {f['start_colour']} to {f['end_colour']}"
    if scene.kind == "size":  # the size it starts with, then what it does
        start = "small" if f["change"] == "grows" else "big"
        return f"{_with_position(_noun_phrase({**f, 'size': start}), f['position'])} {f['change']}"
    raise ValueError(f"no caption template for scene kind {scene.kind!r}")
