"""Slow and hostile clients on every listener (issue 12, "Then prove it").

* Slowloris: a client that drips its handshake one byte at a time is cut at the
  level's ``handshake`` timeout on socks, http, VMess over TCP and VMess over mKCP
  (the deadline is not extended by each byte); dokodemo-door has no handshake, so a
  silent client there is cut at ``connIdle``.
* Half-open handshakes: ``HALF_OPEN`` connections (2,000 in CI; ``V2PY_HALF_OPEN=10000``
  by hand) open on the TCP listeners and send part of a handshake (dokodemo-door: one
  byte, relayed), while good clients keep doing socks round trips through the same
  process; every good round trip succeeds, every half-open connection is closed by v2py
  near the handshake deadline (dokodemo-door: connIdle), and v2py's descriptors return
  to their baseline. (mKCP's half-open sessions: tests/shell/test_mkcp_half_open.py.)

v2py runs in this process for the slowloris tests (its tasks are counted too) and as
its own ``v2py run`` process for the half-open storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.census import Census, back_to
from tests.support.many import raise_fd_limit
from tests.support.servers import TcpEchoServer, fd_count, run_v2py_process
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport.mkcp import dial_kcp

HANDSHAKE_S = 1
CONN_IDLE_S = 2
#: How late a cut may come on a loaded 2-core machine (it is never early).
CUT_SLACK_S = 3.0
#: A slowloris client sends one byte this often (well inside the handshake deadline).
DRIP_S = 0.2
STEP_TIMEOUT_S = 15.0
HALF_OPEN = int(os.environ.get("V2PY_HALF_OPEN", "2000"))
#: Half-open connections being opened at the same time.
OPEN_PARALLEL = 200
GOOD_CLIENTS = 8
FD_TOLERANCE = 2
USER = str(uuid.uuid4())


def hostile_config(ports: dict[str, int], echo_port: int) -> dict[str, Any]:
    kcp = {"network": "kcp", "kcpSettings": {"uplinkCapacity": 5, "downlinkCapacity": 5}}
    return {
        "log": {"loglevel": "warning"},
        "policy": {
            "levels": {
                "0": {
                    "handshake": HANDSHAKE_S,
                    "connIdle": CONN_IDLE_S,
                    "uplinkOnly": 0,
                    "downlinkOnly": 0,
                }
            }
        },
        "inbounds": [
            {"listen": "127.0.0.1", "port": ports["socks"], "protocol": "socks"},
            {"listen": "127.0.0.1", "port": ports["http"], "protocol": "http"},
            {
                "listen": "127.0.0.1",
                "port": ports["dokodemo"],
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": echo_port, "network": "tcp"},
            },
            {
                "listen": "127.0.0.1",
                "port": ports["vmess"],
                "protocol": "vmess",
                "settings": {"clients": [{"id": USER}]},
            },
            {
                "listen": "127.0.0.1",
                "port": ports["mkcp"],
                "protocol": "vmess",
                "settings": {"clients": [{"id": USER}]},
                "streamSettings": kcp,
            },
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


#: What each listener's slowloris client drips: a handshake that is never complete.
DRIPS = {
    "socks": b"\x05\xff" + bytes(range(1, 256)),
    "http": b"GET http://example.test/ HTTP/1.1\r\nX-Slow: " + b"a" * 200,
    "vmess": os.urandom(64),  # 16 bytes would end the auth; the deadline comes first
    "mkcp": os.urandom(64),
}


@contextlib.asynccontextmanager
async def in_process() -> AsyncIterator[tuple[dict[str, int], int, Census]]:
    ports = dict(zip(("socks", "http", "dokodemo", "vmess", "mkcp"), free_ports(5), strict=True))
    async with TcpEchoServer() as echo, run_v2py(hostile_config(ports, echo.port)):
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(ports["socks"], "127.0.0.1", echo.port)
            writer.write(b"warm")
            assert await reader.readexactly(4) == b"warm"
            writer.close()
            await writer.wait_closed()
            while echo.open:
                await asyncio.sleep(0.02)
        yield ports, echo.port, Census.take()


async def drip_tcp(port: int, data: bytes) -> float:
    """Drip ``data`` until the server closes; seconds from the first byte to the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def drip() -> None:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await asyncio.sleep(DRIP_S)

    dripper = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            with contextlib.suppress(ConnectionResetError):
                while await reader.read(65536):
                    pass
        return time.monotonic() - started
    finally:
        dripper.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await dripper
        writer.close()


async def drip_kcp(port: int, data: bytes) -> float:
    stream = await dial_kcp("127.0.0.1", port, KcpSettings(uplink_capacity=5, downlink_capacity=5))
    started = time.monotonic()

    async def drip() -> None:
        for i in range(len(data)):
            stream.write(data[i : i + 1])
            await asyncio.sleep(DRIP_S)

    dripper = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while await stream.read():
                pass
        return time.monotonic() - started
    finally:
        dripper.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await dripper
        stream.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await stream.wait_closed()


@pytest.mark.parametrize("listener", ["socks", "http", "vmess", "mkcp"])
async def test_slowloris_cut_at_the_handshake_deadline(listener: str) -> None:
    async with in_process() as (ports, _, base):
        if listener == "mkcp":
            took = await drip_kcp(ports[listener], DRIPS[listener])
        else:
            took = await drip_tcp(ports[listener], DRIPS[listener])
        # cut by the deadline counted from the start, not extended by each byte
        assert HANDSHAKE_S * 0.8 <= took < HANDSHAKE_S + CUT_SLACK_S, took
        await back_to(base, f"slowloris on {listener}", timeout=STEP_TIMEOUT_S)


async def test_silent_client_on_dokodemo_cut_at_conn_idle() -> None:
    async with in_process() as (ports, _, base):
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["dokodemo"])
        started = time.monotonic()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            assert await reader.read() == b""
        took = time.monotonic() - started
        writer.close()
        assert CONN_IDLE_S * 0.8 <= took < CONN_IDLE_S + CUT_SLACK_S, took
        await back_to(base, "silent dokodemo client", timeout=STEP_TIMEOUT_S)


# -- many half-open handshakes -----------------------------------------------------------

#: The partial handshake each kind of half-open connection sends.
PARTIAL = {
    "socks": b"\x05\x02\x00",  # greeting cut short
    "http": b"CONNECT example.test:443 HTTP/1.1\r\n",  # no blank line
    "vmess": b"\x17" * 10,  # less than the 16-byte auth
    "dokodemo": b"x",  # no handshake: relayed to the echo target, then cut at connIdle
}


async def _half_open(
    port: int, data: bytes, gate: asyncio.Semaphore, closed_after: list[float]
) -> None:
    writer = None
    try:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(HANDSHAKE_S + STEP_TIMEOUT_S):
            with contextlib.suppress(ConnectionResetError):
                while await reader.read(65536):
                    pass
        closed_after.append(time.monotonic() - started)
    finally:
        if writer is not None:
            writer.close()


async def _good_client(
    socks_port: int,
    echo_port: int,
    stop: asyncio.Event,
    latencies: list[float],
    *,
    at_least_once: bool = False,
) -> None:
    """Socks round trips of 1 KiB through v2py to the echo server until ``stop``."""
    payload = os.urandom(1024)
    while at_least_once or not stop.is_set():
        at_least_once = False
        started = time.monotonic()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
            writer.write(payload)
            assert await reader.readexactly(len(payload)) == payload
            writer.close()
            await writer.wait_closed()
        latencies.append(time.monotonic() - started)


async def test_half_open_handshakes_while_good_clients_are_served() -> None:
    raise_fd_limit(HALF_OPEN + 1024, f"{HALF_OPEN} half-open connections")
    ports = dict(zip(("socks", "http", "dokodemo", "vmess", "mkcp"), free_ports(5), strict=True))
    async with (
        TcpEchoServer() as echo,
        run_v2py_process(hostile_config(ports, echo.port), wait_tcp=ports["socks"]) as proc,
    ):
        # one good client first: what v2py opens lazily is part of its baseline
        once = asyncio.Event()
        once.set()
        await _good_client(ports["socks"], echo.port, once, [], at_least_once=True)
        stop = asyncio.Event()
        baseline = fd_count(proc.pid)
        latencies: list[float] = []
        closed_after: list[float] = []
        gate = asyncio.Semaphore(OPEN_PARALLEL)
        kinds = list(PARTIAL)
        started = time.monotonic()
        async with asyncio.timeout(120):
            good = [
                asyncio.create_task(_good_client(ports["socks"], echo.port, stop, latencies))
                for _ in range(GOOD_CLIENTS)
            ]
            await asyncio.gather(
                *(
                    _half_open(ports[k], PARTIAL[k], gate, closed_after)
                    for k in (kinds[i % len(kinds)] for i in range(HALF_OPEN))
                )
            )
            stop.set()
            await asyncio.gather(*good)
        took = time.monotonic() - started
        assert len(closed_after) == HALF_OPEN
        assert max(closed_after) < CONN_IDLE_S + 5.0, max(closed_after)
        assert len(latencies) >= GOOD_CLIENTS
        deadline = time.monotonic() + 10.0
        while fd_count(proc.pid) > baseline + FD_TOLERANCE and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        after = fd_count(proc.pid)
        assert after <= baseline + FD_TOLERANCE, (baseline, after)
        print(
            f"{HALF_OPEN} half-open in {took:.1f}s, closed by v2py after "
            f"median {statistics.median(closed_after):.2f}s / max {max(closed_after):.2f}s; "
            f"{len(latencies)} good round trips, median "
            f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
            f"fds {baseline} -> {after}"
        )
