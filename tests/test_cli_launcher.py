"""The `peft-video` console script answers `--help` and `--version` without importing the library (torch, peft),
with exactly the parser of `peft_video.cli`, and the README names every subcommand."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import peft_video_launcher
from peft_video.cli import build_parser

REPO = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import sys
    import peft_video_launcher
    try:
        peft_video_launcher.main(sys.argv[1:])
    except SystemExit as stop:
        print("exit", stop.code)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "peft", "peft_video"))
    print("imported", heavy)
    """
)


def run_launcher(*argv: str) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["benchmark", "--help"], ["--version"], []])
def test_help_and_version_import_nothing_heavy(argv):
    out = run_launcher(*argv)
    assert out.rstrip().endswith("imported []"), out[-500:]  # no torch, no peft, and no light module left behind
    assert f"exit {2 if not argv else 0}" in out


def test_the_light_parser_is_the_real_one(capsys):
    out = run_launcher("--help")
    assert out.startswith(build_parser().format_help())
    with pytest.raises(SystemExit):  # in a process that already imported the library, the real parser answers
        peft_video_launcher.main(["--version"])
    assert re.fullmatch(r"peft-video \S+\n", capsys.readouterr().out)


def test_readme_names_every_subcommand():
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    line = next(line for line in (REPO / "README.md").read_text().splitlines() if "`peft-video " in line)
    assert all(f" {name}" in line or f"| {name}" in line for name in commands), (line, sorted(commands))
