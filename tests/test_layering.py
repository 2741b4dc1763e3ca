"""The pure zone (protocol/, common/, config/, app/ports.py) does no I/O of its own."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "v2py"
FORBIDDEN = {"asyncio", "socket", "selectors", "time", "random", "os"}


def _parse(path: Path) -> ast.Module:
    """``ast.parse`` in a thread of its own. Once, run after other tests in one process,
    CPython 3.11.7 raised "AST constructor recursion depth mismatch" here: the check
    compares the calling thread's recursion bookkeeping, which a fresh thread starts
    clean."""
    result: list[ast.Module | BaseException] = []

    def run() -> None:
        try:
            result.append(ast.parse(path.read_text(), filename=str(path)))
        except BaseException as exc:  # re-raised in the caller
            result.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


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
        tree = _parse(path)
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


# Package direction: the shell imports downwards only (proxy -> app -> transport ->
# protocol/common/config). The top-level assembly (build, instance, cli, run) may
# import anything.
_MAY_NOT_IMPORT = {
    "protocol": ("v2py.app", "v2py.transport", "v2py.proxy", "v2py.build", "v2py.instance"),
    "common": ("v2py.app", "v2py.transport", "v2py.proxy", "v2py.build", "v2py.instance"),
    "config": ("v2py.app", "v2py.transport", "v2py.proxy", "v2py.build", "v2py.instance"),
    "transport": ("v2py.app", "v2py.proxy", "v2py.build", "v2py.instance"),
    "app": ("v2py.proxy", "v2py.build", "v2py.instance"),
}


#: Generated protobuf message modules: data, no shell code. They sit beside the gRPC
#: API for history; config/protobuf.py (``-format pb`` configs) reads them too.
_MESSAGE_MODULES = ("v2py.app.commander.proto", "v2py.app.geo_proto")


def _imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layering_offenders(src: Path = SRC) -> list[str]:
    """Every import (also lazy, inside functions) that goes up the layers."""
    offenders = []
    for package, forbidden in _MAY_NOT_IMPORT.items():
        for path in sorted((src / package).rglob("*.py")):
            for name in _imported_modules(path):
                if any(name == m or name.startswith(m + ".") for m in _MESSAGE_MODULES):
                    continue
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    offenders.append(f"{path.relative_to(src)}: imports {name}")
    return offenders


def test_packages_import_downwards_only() -> None:
    assert not layering_offenders()


def test_layering_check_catches_an_app_to_proxy_import(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "bad.py").write_text("def f():\n    from v2py.proxy.freedom import X\n")
    assert layering_offenders(tmp_path) == ["app/bad.py: imports v2py.proxy.freedom"]
