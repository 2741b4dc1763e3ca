"""Shared fixtures: explicit clock, seeded rng, loopback echo servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator

import hypothesis  # noqa: F401  (imported early: see below)
import pytest

# CPython 3.11 can fail with "SystemError: AST constructor recursion depth mismatch"
# when the hypothesis plugin first imports hypothesis (with pytest's assertion
# rewriting) at the end of a session that never imported it, e.g. running a single
# test file without Hypothesis tests. Importing it here, at collection, avoids that.


@pytest.fixture
def rng() -> Callable[[int], bytes]:
    """A seeded byte source with the ``rng(n) -> bytes`` shape the cores take."""
    gen = random.Random(1234)
    return gen.randbytes


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, int]]:
    """A TCP echo server on 127.0.0.1; yields (host, port)."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield ("127.0.0.1", port)
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await server.wait_closed()


# -- interop accounting: .ci/run fails unless interop tests really ran -------------
_interop = {"passed": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "interop" not in report.keywords:
        return
    if report.when == "call" and report.passed:
        _interop["passed"] += 1
    elif report.skipped:
        _interop["skipped"] += 1
    elif report.failed:
        _interop["failed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    path = os.environ.get("V2PY_INTEROP_REPORT")
    if path:
        with open(path, "w") as fh:
            fh.write(f"{_interop['passed']} {_interop['skipped']} {_interop['failed']}\n")


@pytest.fixture
def access(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Access-log lines of in-process v2py instances, as they are written (shared by
    the interop tests that compare them with 4.34's access log)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("v2py.access")
    monkeypatch.setattr(logger, "handlers", [Collect(logging.INFO)])
    monkeypatch.setattr(logger, "disabled", False)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.setLevel(level)
