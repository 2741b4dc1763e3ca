"""The pure zone (protocol/, common/, config/, app/ports.py) does no I/O of its own."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "v2py"
FORBIDDEN = {"asyncio", "socket", "selectors", "time", "random", "os"}


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for folder in ("protocol", "common", "config"):
        files.extend(sorted((SRC / folder).rglob("*.py")))
    for name in ("app/ports.py", "app/router.py"):
        if (SRC / name).exists():
            files.append(SRC / name)
    return files


def test_pure_zone_imports_no_io() -> None:
    offenders = []
    for path in _pure_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(SRC)}: imports {name}")
    assert not offenders, offenders
