"""Starting, watching and stopping chain processes; /proc readings (RSS, CPU)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.chains import ProcPlan

CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T", int, float)

# every process we started and have not reaped yet; cleaned up on any exit
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


class ChainStartError(RuntimeError):
    """A chain process did not come up; the message carries its stderr tail."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int, low: int = 20000, high: int = 32000) -> list[int]:
    """``n`` distinct ports free for both TCP and UDP on 127.0.0.1.

    Picked below the kernel's ephemeral range (32768+), so that the bench's own client
    connections never sit on a port a chain process is about to listen on between runs.
    """
    import random

    rng = random.SystemRandom()
    out: list[int] = []
    for _ in range(2000):
        if len(out) == n:
            break
        p = rng.randrange(low, high)
        if p in out:
            continue
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
            ):
                t.bind(("127.0.0.1", p))
                u.bind(("127.0.0.1", p))
        except OSError:
            continue
        out.append(p)
    while len(out) < n:  # crowded range: let the kernel pick
        p = free_port()
        if p not in out:
            out.append(p)
    return out


def command_for(template: str, config: Path) -> list[str]:
    """``template`` with ``{config}`` replaced, split like a shell would."""
    return [part.replace("{config}", str(config)) for part in shlex.split(template)]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (``v2py run --workers N`` forks workers)."""
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    out.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def _tree_sum(pid: int, one: Callable[[int], T | None]) -> T | None:
    """Sum ``one`` over the process tree of ``pid``; None if ``pid`` itself is gone."""
    total = one(pid)
    if total is None:
        return None
    for child in process_tree(pid)[1:]:
        value = one(child)
        if value is not None:
            total += value  # type: ignore[operator]
    return total


def read_status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/PID/status`` value in KiB (VmRSS, VmHWM) summed over the process tree
    (workers' shared copy-on-write pages are counted once per worker: conservative),
    or None if gone."""
    return _tree_sum(pid, lambda p: _status_kib(p, key))


def _status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of the process tree (all threads, all workers) in seconds, or None."""
    return _tree_sum(pid, _cpu_seconds)


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name may contain spaces: fields start after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fd_count(pid: int | str) -> int | None:
    """Open file descriptors of ``pid``'s process tree (or of ``"self"``), or None."""
    if pid == "self":
        return _fd_count(pid)
    return _tree_sum(int(pid), _fd_count)


def _fd_count(pid: int | str) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _tcp_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _udp_bound(port: int) -> bool:
    hexport = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    local = line.split()[1]
                    if local.endswith(hexport):
                        return True
        except OSError:
            continue
    return False


@dataclass
class ChainProcess:
    role: str
    argv: list[str]
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)
    stdout_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_path = self.workdir / f"{self.role}.stderr"
        self.stdout_path = self.workdir / f"{self.role}.stdout"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # own session: a Ctrl-C at the terminal reaches only the bench, which stops us
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        _LIVE[self.popen.pid] = self.popen

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output_tail(self, lines: int = 25) -> str:
        chunks = []
        for path in (self.stderr_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                chunks.append("\n".join(text.rstrip().splitlines()[-lines:]))
        return "\n".join(chunks) if chunks else "(no output)"

    def describe_failure(self, why: str) -> str:
        code = self.popen.poll() if self.popen else None
        state = f"exited with code {code}" if code is not None else "still running"
        return (
            f"{self.role} process {why} ({state}): {shlex.join(self.argv)}\n"
            f"--- output tail ---\n{self.output_tail()}\n-------------------"
        )

    def wait_ready(self, plan: ProcPlan, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending_tcp = list(plan.tcp_ports)
        pending_udp = list(plan.udp_ports)
        while True:
            if not self.alive():
                raise ChainStartError(self.describe_failure("died during start-up"))
            pending_tcp = [p for p in pending_tcp if not _tcp_listening(p)]
            pending_udp = [p for p in pending_udp if not _udp_bound(p)]
            if not pending_tcp and not pending_udp:
                return
            if time.monotonic() > deadline:
                ports = ", ".join(
                    [f"tcp/{p}" for p in pending_tcp] + [f"udp/{p}" for p in pending_udp]
                )
                raise ChainStartError(
                    self.describe_failure(f"did not listen on {ports} within {timeout:.0f}s")
                )
            time.sleep(0.05)

    def stop(self, grace: float = 3.0) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(grace)
        _LIVE.pop(p.pid, None)


async def start_chain(
    plans: list[ProcPlan],
    template: str,
    workdir: Path,
    prefix: str,
    started: list[ChainProcess],
    timeout: float,
) -> None:
    """Write each plan's config to ``<prefix>-<role>.json`` in ``workdir`` and start its
    process from ``template`` (also named ``<prefix>-<role>``), in order, each listening
    before the next starts. A process joins ``started`` before it is waited for, so the
    caller stops whatever did start when one fails."""
    for plan in plans:
        name = f"{prefix}-{plan.role}"
        path = workdir / f"{name}.json"
        path.write_text(plan.config_text())
        proc = ChainProcess(name, command_for(template, path), workdir)
        proc.start()
        started.append(proc)
        await asyncio.to_thread(proc.wait_ready, plan, timeout)


async def stop_chain(procs: list[ChainProcess]) -> None:
    """Stop a chain's processes, the last started first (clients before their servers),
    each in a thread so the event loop keeps serving while one is given its grace."""
    for proc in reversed(procs):
        await asyncio.to_thread(proc.stop)


def kill_all_started() -> None:
    """Stop every process the bench started and has not stopped (exit / Ctrl-C path)."""
    for pid, p in list(_LIVE.items()):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(2)
        _LIVE.pop(pid, None)
