"""The `peft-video` console script. It lives outside the `peft_video` package so that `--help` and `--version` answer
at once: `import peft_video` registers the video methods with peft (the public contract), which imports torch and
transformers, seconds before a help text could print.

A command line that asks for help, the version, or nothing at all is parsed by `peft_video.cli.build_parser()` loaded
on its own (the packages `peft_video` and `peft_video.data` stand in as plain folders, so that their `__init__`s, and
torch, are not run); every other command line runs `peft_video.cli.main` in the real package.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

ANSWERED_WITHOUT_THE_LIBRARY = {"-h", "--help", "--version"}
_LIGHT_PACKAGES = ("peft_video", "peft_video.data")  # their __init__s import torch; cli.py's parser needs neither


def main(argv: list[str] | None = None) -> int:
    """Entry point of `peft-video`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or ANSWERED_WITHOUT_THE_LIBRARY & set(argv):
        parser = _parser_without_the_library()
        if parser is not None:
            parser.parse_args(argv)  # prints the help or the version (or argparse's error) and exits
    from peft_video.cli import main as run

    return run(argv)


def _parser_without_the_library():
    """`peft_video.cli.build_parser()` with the two heavy package `__init__`s replaced by plain folders; None if that
    parser needs more of the library (the real one is used then)."""
    spec = importlib.util.find_spec("peft_video")
    if spec is None or spec.origin is None or "peft_video" in sys.modules:
        return None
    folder = Path(spec.origin).parent
    saved = dict(sys.modules)
    try:
        for name in _LIGHT_PACKAGES:
            package = types.ModuleType(name)
            package.__path__ = [str(folder.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = package
        return importlib.import_module("peft_video.cli").build_parser()
    except (ImportError, AttributeError):
        return None
    finally:  # the light modules must not stand in for the real package later in this process
        for name in set(sys.modules) - set(saved):
            if name.startswith("peft_video"):
                del sys.modules[name]
        sys.modules.update({name: saved[name] for name in saved if name.startswith("peft_video")})
        for name in _LIGHT_PACKAGES:
            if name not in saved:
                sys.modules.pop(name, None)


if __name__ == "__main__":
    sys.exit(main())
