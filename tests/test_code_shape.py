"""The shape a newcomer can read: no library file over about 500 lines, and no function over
60 lines unless a comment beside its ``def`` says why it stays long.

Long modules and functions were where coordination hid (a parser of 461 lines, two corpus
generators of 1,000+ lines each with private copies of the same DSP); this keeps them from
growing back one flag at a time. The generated gRPC stubs are not ours to shape.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("asc", "edge", "server", "training", "proto")
MAX_FILE_LINES = 520  # "about 500": a docstring's worth of slack, no more
MAX_FUNCTION_LINES = 60


def library_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                files.append(path)
    return files


def has_reason(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A comment on the ``def`` line, or on the line just above it (or above its decorators)."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    def_line = lines[node.lineno - 1]
    above = lines[first - 2].strip() if first >= 2 else ""
    return "#" in def_line.split(")")[-1] or above.startswith("#")


def test_library_files_stay_short() -> None:
    long_files = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in library_files()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert not long_files, f"split these by concern (limit {MAX_FILE_LINES}): {long_files}"


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_long_functions_say_why(path: Path) -> None:
    text = path.read_text()
    lines = text.splitlines()
    unexplained = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not has_reason(lines, node):
                unexplained.append(f"{node.name} (line {node.lineno}, {length} lines)")
    assert not unexplained, (
        f"{path.relative_to(ROOT)}: split into named steps, or put a comment beside the def "
        f"saying why it stays long: {unexplained}"
    )
