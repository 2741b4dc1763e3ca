"""Run the real V2Ray 4.34 binary as a test peer (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_ports_of

V2RAY_BIN_ENV = "V2PY_V2RAY_BIN"
REQUIRE_ENV = "V2PY_REQUIRE_V2RAY"


def v2ray_binary() -> str | None:
    """Path of the v2ray binary, or None when absent."""
    explicit = os.environ.get(V2RAY_BIN_ENV)
    if explicit:
        return explicit
    return shutil.which("v2ray") or ("/usr/bin/v2ray" if Path("/usr/bin/v2ray").exists() else None)


def require_v2ray() -> str:
    """Return the binary, skipping the test when it is absent and not required.

    With ``V2PY_REQUIRE_V2RAY`` set (``.ci/run`` sets it) a missing binary fails.
    """
    binary = v2ray_binary()
    if binary is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail("v2ray binary required (V2PY_REQUIRE_V2RAY is set) but not found")
        pytest.skip("v2ray binary not installed")
    return binary


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A currently unused port on 127.0.0.1 for ``kind`` (TCP or UDP), below the
    ephemeral range."""
    return free_ports_of(1, (kind,))[0]


def free_ports(n: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """``n`` distinct free ports."""
    return free_ports_of(n, (kind,))


async def wait_tcp_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


class V2rayProcess:
    """A running ``v2ray -config FILE``; ``log`` returns what it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, workdir: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.workdir = workdir

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@contextlib.asynccontextmanager
async def run_v2ray(
    config: dict[str, Any] | str,
    *,
    wait_tcp: Iterable[int] = (),
    env: dict[str, str] | None = None,
    settle: float = 0.0,
) -> AsyncIterator[V2rayProcess]:
    """Start the real v2ray with ``config`` (dict or JSON text) and stop it afterwards.

    ``wait_tcp`` lists TCP ports to wait for; for UDP-only listeners pass ``settle``
    seconds (v2ray prints its start line before UDP listeners are up).
    """
    binary = require_v2ray()
    workdir = Path(tempfile.mkdtemp(prefix="v2ray-test-"))
    cfg_path = workdir / "config.json"
    cfg_path.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
    log_path = workdir / "v2ray.log"
    log_file = log_path.open("wb")
    proc_env = dict(os.environ)
    proc_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-config",
        str(cfg_path),
        stdout=log_file,
        stderr=asyncio.subprocess.STDOUT,
        env=proc_env,
        cwd=workdir,
    )
    log_file.close()
    handle = V2rayProcess(proc, log_path, workdir)
    try:
        for port in wait_tcp:
            await wait_tcp_port(port)
        if settle:
            await asyncio.sleep(settle)
        if proc.returncode is not None:
            raise RuntimeError(f"v2ray exited early: {handle.log()}")
        yield handle
    finally:
        await handle.stop()
        shutil.rmtree(workdir, ignore_errors=True)
