"""Scripts reach shared code through the library: no `sys.path` edits in examples/ or benchmarks/ (examples/ import
only their sibling `arguments`, which Python finds beside a script it runs), and nothing imported from tests/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_MODULES = {p.stem for p in (REPO / "tests").glob("*.py")} | {"toy_method"}
SCRIPTS = sorted([*(REPO / "examples").glob("*.py"), *(REPO / "benchmarks").glob("*.py")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_import_the_library_not_each_other_or_the_tests(script):
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("insert", "append")
            and ast.unparse(node.value) == "sys.path"
        ):
            pytest.fail(f"{script.name}:{node.lineno} edits sys.path")
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module]
        for module in modules:
            top = module.split(".")[0]
            assert top not in TEST_MODULES, f"{script.name}:{node.lineno} imports {module} from tests/"
            assert top not in {"train", "evaluate"}, f"{script.name}:{node.lineno} imports another script ({module})"
