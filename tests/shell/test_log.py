"""Log configuration in V2Ray's shape: files, console, and "none"."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from v2py.app.log import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    for name in ("v2py", "v2py.access"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def test_files_receive_error_and_access_lines(tmp_path: Path) -> None:
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    configure_logging("info", str(access), str(error))
    logging.getLogger("v2py.access").info("from %s accepted %s", "tcp:127.0.0.1:1", "tcp:x:80")
    logging.getLogger("v2py.proxy.test").info("hello %d", 7)
    logging.getLogger("v2py.proxy.test").debug("not at info level")
    for handler in logging.getLogger("v2py").handlers + logging.getLogger("v2py.access").handlers:
        handler.flush()
    assert access.read_text().rstrip().endswith("from tcp:127.0.0.1:1 accepted tcp:x:80")
    text = error.read_text()
    assert "[Info] hello 7" in text and "not at info level" not in text


def test_none_disables_without_creating_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    configure_logging("warning", "none", "none")
    logging.getLogger("v2py.access").info("from a accepted b")
    logging.getLogger("v2py.x").error("boom")
    assert list(tmp_path.iterdir()) == []
