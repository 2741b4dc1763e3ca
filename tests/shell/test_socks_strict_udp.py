"""Issue 12 defect 7: a socks inbound with ``udp: true`` relays UDP for anyone (4.34
alike, kept by default); ``V2PY_SOCKS_STRICT_UDP=1`` serves UDP only from the IP of a
live (authenticated) ASSOCIATE and ends that IP's flows when its last one closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.servers import RecordingOutbound, serve_inbound, socks_inbound
from tests.support.socks import start_udp_echo
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port
from v2py.app.shared_state import SharedKeyTable, WorkerContext
from v2py.build import SOCKS_STRICT_UDP_ENV
from v2py.config.load import load_config
from v2py.errors import ConfigError
from v2py.instance import Instance

TIMEOUT_S = 10.0
#: How long a test waits to be sure a datagram was not answered.
SILENCE_S = 0.3
HEADER = bytes.fromhex("000000017f0000017530")  # 127.0.0.1:30000
ACCOUNTS = {"user": "pass"}


def strict_inbound(port: int):  # type: ignore[no-untyped-def]
    # idle timers far beyond the test: only the end of an association ends flows here
    return socks_inbound(
        port,
        udp=True,
        auth="password",
        accounts=ACCOUNTS,
        strict_udp=True,
        udp_flow_idle=60.0,
        udp_source_idle=60.0,
    )


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


@contextlib.asynccontextmanager
async def udp_client():  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    try:
        yield transport, proto
    finally:
        transport.close()


async def associate(port: int, user: str = "user", password: str = "pass"):  # type: ignore[no-untyped-def]
    """Password handshake + UDP ASSOCIATE; returns (reader, writer, reply code)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x02")
    async with asyncio.timeout(TIMEOUT_S):
        assert await reader.readexactly(2) == b"\x05\x02"
        u, p = user.encode(), password.encode()
        writer.write(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        status = (await reader.readexactly(2))[1]
        if status != 0:
            return reader, writer, status
        writer.write(b"\x05\x03\x00\x01" + bytes(6))
        reply = await reader.readexactly(10)
    return reader, writer, reply[1]


async def answered(transport, proto, port: int, payload: bytes) -> bool:  # type: ignore[no-untyped-def]
    transport.sendto(HEADER + payload, ("127.0.0.1", port))
    try:
        async with asyncio.timeout(SILENCE_S):
            got = await proto.queue.get()
    except TimeoutError:
        return False
    assert got == HEADER + payload
    return True


async def test_default_relays_without_associate_as_4_34() -> None:
    port = free_port()
    inbound = socks_inbound(port, udp=True, auth="password", accounts=ACCOUNTS)
    async with (
        serve_inbound(inbound, [RecordingOutbound()], port=port),
        udp_client() as (transport, proto),
    ):
        assert await answered(transport, proto, port, b"anyone")
    stats = inbound.udp_statistics()
    assert stats is None  # closed


async def test_strict_refuses_without_associate_and_serves_with_one() -> None:
    port = free_port()
    recorder = RecordingOutbound()
    inbound = strict_inbound(port)
    async with serve_inbound(inbound, [recorder], port=port), udp_client() as (transport, proto):
        assert not await answered(transport, proto, port, b"no association")
        # a wrong password never gets an association
        _, writer, status = await associate(port, password="wrong")
        assert status == 0xFF
        writer.close()
        assert not await answered(transport, proto, port, b"bad password")
        stats = inbound.udp_statistics()
        assert stats is not None
        assert (stats.refused, stats.flows_opened) == (2, 0)

        reader, writer, status = await associate(port)
        assert status == 0
        assert await answered(transport, proto, port, b"associated")
        stats = inbound.udp_statistics()
        assert stats is not None
        assert (stats.flows, stats.flows_opened) == (1, 1)

        # the control connection ends: the IP's flows end and UDP is refused again
        writer.close()
        async with asyncio.timeout(TIMEOUT_S):
            await recorder.link_closed.wait()
            while (stats := inbound.udp_statistics()) is not None and stats.flows:
                await asyncio.sleep(0.01)
        assert not await answered(transport, proto, port, b"after close")
        stats = inbound.udp_statistics()
        assert stats is not None
        assert (stats.refused, stats.flows, stats.sources) == (3, 0, 0)
    assert recorder.sessions and len(recorder.sessions) == 1


async def test_strict_counts_associations_per_ip() -> None:
    port = free_port()
    inbound = strict_inbound(port)
    async with (
        serve_inbound(inbound, [RecordingOutbound()], port=port),
        udp_client() as (transport, proto),
    ):
        _, first, _ = await associate(port)
        _, second, _ = await associate(port)
        first.close()
        await first.wait_closed()
        await asyncio.sleep(0.05)  # let the server see the first close (no timer here)
        assert await answered(transport, proto, port, b"one left")
        second.close()
        async with asyncio.timeout(TIMEOUT_S):
            while (stats := inbound.udp_statistics()) is not None and stats.sources:
                await asyncio.sleep(0.01)
        assert not await answered(transport, proto, port, b"none left")


def _config(port: int) -> dict[str, object]:
    return {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "socks",
                "settings": {
                    "auth": "password",
                    "accounts": [{"user": "user", "pass": "pass"}],
                    "udp": True,
                },
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


@pytest.mark.parametrize("strict", [False, True])
async def test_environment_switch_end_to_end(strict: bool) -> None:
    echo, echo_port = await start_udp_echo()
    port = free_port()
    env = {SOCKS_STRICT_UDP_ENV: "1"} if strict else {}
    header = b"\x00\x00\x00\x01\x7f\x00\x00\x01" + echo_port.to_bytes(2, "big")
    try:
        async with run_v2py(_config(port), env=env), udp_client() as (transport, proto):
            transport.sendto(header + b"ping", ("127.0.0.1", port))
            try:
                async with asyncio.timeout(1.0):
                    got: bytes | None = await proto.queue.get()
            except TimeoutError:
                got = None
            assert got == (None if strict else header + b"ping")
            _, writer, status = await associate(port)
            assert status == 0
            deadline = time.monotonic() + TIMEOUT_S
            async with asyncio.timeout(TIMEOUT_S):
                while True:  # the first datagram of a flow may race the dial
                    transport.sendto(header + b"pong", ("127.0.0.1", port))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            assert await proto.queue.get() == header + b"pong"
                            break
                    assert time.monotonic() < deadline
            writer.close()
    finally:
        echo.close()


def test_strict_mode_refused_with_workers() -> None:
    loaded = load_config([("test.json", json.dumps(_config(1080)))], {})
    worker = WorkerContext(
        index=0, count=2, store=SharedKeyTable(1024), seed=bytes(32), start_monotonic=0.0
    )
    with pytest.raises(ConfigError) as info:
        Instance.from_config(loaded.config, env={SOCKS_STRICT_UDP_ENV: "1"}, worker=worker)
    assert "inbounds[0].settings.udp" in str(info.value)
    assert SOCKS_STRICT_UDP_ENV in str(info.value)


def test_strict_mode_refused_before_workers_fork(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_config(free_port())))
    env = {**os.environ, SOCKS_STRICT_UDP_ENV: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "v2py", "run", "-c", str(path), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 23
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "config error" in line]
    assert errors == [
        "v2py: config error: inbounds[0].settings.udp: "
        f"{SOCKS_STRICT_UDP_ENV} needs a single process (not --workers)"
    ]
