"""Run ``v2py run --workers N`` as a subprocess and look at its worker processes.

* ``run_v2py_workers``: start it from a config (dict or text), wait for the
  "started" line (printed once every worker listens), stop it with SIGTERM and
  check that it exits 0 with every worker gone.
* ``established_local_ports``: local ports of a process's ESTABLISHED TCP sockets
  (Linux /proc), to see which worker holds which connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
#: Polling interval for the log file and /proc (observing, not driving, anything).
POLL_S = 0.05
_STARTED = re.compile(r"started \(.*?(\d+) workers: pids ([\d, ]+)\)")


@dataclass(slots=True)
class WorkersProcess:
    """A running ``v2py run --workers N``."""

    proc: asyncio.subprocess.Process
    err_path: Path
    workdir: Path
    worker_pids: list[int]

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_pids_gone(pids: list[int], timeout: float = STOP_TIMEOUT_S) -> None:
    async with asyncio.timeout(timeout):
        while any(pid_alive(p) for p in pids):
            await asyncio.sleep(POLL_S)


async def start_workers(
    config: dict[str, Any] | str, workers: int = 2, *, args: tuple[str, ...] = ()
) -> WorkersProcess:
    """Start ``v2py run -c FILE --workers N`` and wait until it says "started"."""
    workdir = Path(tempfile.mkdtemp(prefix="v2py-workers-"))
    cfg = workdir / "config.json"
    cfg.write_text(config if isinstance(config, str) else json.dumps(config), encoding="utf-8")
    err = workdir / "stderr.log"
    argv = args or ("run", "-c", str(cfg), "--workers", str(workers))
    with err.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "v2py", *argv,
            stdout=err_file, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    handle = WorkersProcess(proc=proc, err_path=err, workdir=workdir, worker_pids=[])
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while (match := _STARTED.search(handle.log())) is None:
                if proc.returncode is not None:
                    raise RuntimeError(f"v2py exited early: {handle.log()}")
                await asyncio.sleep(POLL_S)
    except BaseException:
        await stop_workers(handle, check=False)
        raise
    handle.worker_pids = [int(p) for p in match.group(2).split(",")]
    assert len(handle.worker_pids) == int(match.group(1)) == workers
    return handle


async def stop_workers(handle: WorkersProcess, *, check: bool = True) -> int:
    """SIGTERM the parent; wait for it (SIGKILL if stuck). With ``check``: exit 0,
    every worker gone."""
    proc = handle.proc
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            for pid in handle.worker_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            raise
    assert proc.returncode is not None
    if check:
        assert proc.returncode == 0, handle.log()
        assert not any(pid_alive(p) for p in handle.worker_pids)
    return proc.returncode


@contextlib.asynccontextmanager
async def run_v2py_workers(
    config: dict[str, Any] | str, workers: int = 2
) -> AsyncIterator[WorkersProcess]:
    """``start_workers`` ... ``stop_workers`` (which checks exit 0, workers gone)."""
    handle = await start_workers(config, workers)
    try:
        yield handle
    except BaseException:
        await stop_workers(handle, check=False)
        raise
    await stop_workers(handle)


def established_local_ports(pid: int) -> list[int]:
    """Local ports of the ESTABLISHED TCP sockets process ``pid`` holds (one per socket)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = []
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if fields[3] == "01" and fields[9] in inodes:  # 01 = ESTABLISHED
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def connections_per_worker(handle: WorkersProcess, ports: set[int]) -> dict[int, int]:
    """How many established connections on local ``ports`` each worker holds now."""
    return {
        pid: sum(1 for p in established_local_ports(pid) if p in ports)
        for pid in handle.worker_pids
    }
