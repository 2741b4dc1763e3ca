"""Fault injection (issue 12, "Then prove it"): every fault ends the affected connection
cleanly and promptly, and the v2py process gets back to its baseline of asyncio tasks,
sockets and descriptors (asserted, after a warm-up connection made the lazy things).

Faults: the target refuses; the target resets mid-stream; the target accepts and never
answers; the target never completes the TCP handshake (its accept queue is full); the
VMess server process is killed mid-transfer (TCP and mKCP); the DNS server of a
freedom ``UseIP`` domain answers NXDOMAIN or never answers.

v2py runs in this process (``run_v2py``) so that its tasks can be counted; a server that
gets killed runs as its own ``v2py run`` process. Timeouts come from small policies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.app.test_dns import dns_server
from tests.support.census import Census, back_to
from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.servers import (
    freedom,
    policy,
    run_v2py_process,
    serve_inbound,
    socks_inbound,
)
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port, free_ports

#: Every await of a test is bounded by this.
STEP_TIMEOUT_S = 15.0
#: How long a process gets to return to its baseline after a fault.
SETTLE_S = 10.0
#: freedom's dial timeout in the hanging-dial test (4.34's system dialer: 16 s)
DIAL_TIMEOUT_TEST_S = 0.5
#: connIdle / handshake of the configs here: a silent peer is given up on after this.
CONN_IDLE_S = 1
BULK = os.urandom(4 << 20)


# -- targets --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def target(handler: Any) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running ``handler(reader, writer)``; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await server.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def reset_after_bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readexactly(1)
    writer.write(BULK[: 256 * 1024])
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):  # takes everything, never answers
        pass


async def bulk_source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readexactly(1)
    for i in range(0, len(BULK), 65536):
        writer.write(BULK[i : i + 65536])
        await writer.drain()


@contextlib.contextmanager
def unaccepting_listener() -> Any:
    """A port whose accept queue is full: further SYNs are dropped, connects hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        server.close()


# -- configs --------------------------------------------------------------------------


def _policy() -> dict[str, Any]:
    return {
        "levels": {
            "0": {
                "handshake": CONN_IDLE_S,
                "connIdle": CONN_IDLE_S,
                "uplinkOnly": 0,
                "downlinkOnly": 0,
            }
        }
    }


def socks_freedom(port: int, **freedom: Any) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "policy": _policy(),
        "inbounds": [
            {"listen": "127.0.0.1", "port": port, "protocol": "socks", "settings": {"udp": False}}
        ],
        "outbounds": [{"protocol": "freedom", "settings": freedom}],
    }


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> tuple[int, str]:
    """Bytes read until the connection ended, and how (``eof`` / ``reset``)."""
    got = 0
    try:
        async with asyncio.timeout(timeout):
            while data := await reader.read(65536):
                got += len(data)
    except ConnectionResetError:
        return got, "reset"
    return got, "eof"


@contextlib.asynccontextmanager
async def warmed_socks(config: dict[str, Any], port: int, echo_port: int) -> AsyncIterator[Census]:
    """Run ``config`` in-process, make one good connection, yield the baseline census."""
    async with run_v2py(config):
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(port, "127.0.0.1", echo_port)
            writer.write(b"warm")
            assert await reader.readexactly(4) == b"warm"
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.1)  # let v2py see the close (its census settles below)
        baseline = Census.take()
        yield baseline


# -- tests ----------------------------------------------------------------------------


async def test_target_refuses() -> None:
    port = free_port()
    dead = free_port()  # nothing listens there
    async with (
        target(echo) as echo_port,
        warmed_socks(socks_freedom(port), port, echo_port) as base,
    ):
        started = time.monotonic()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(port, "127.0.0.1", dead)
            writer.write(b"hello")
            got, how = await read_until_closed(reader, STEP_TIMEOUT_S)
        assert got == 0
        assert time.monotonic() - started < 5.0  # 4.34's dial retries take ~1 s
        writer.close()
        await back_to(base, "refused target")


async def test_target_resets_mid_stream() -> None:
    port = free_port()
    async with (
        target(echo) as echo_port,
        target(reset_after_bulk) as rst_port,
        warmed_socks(socks_freedom(port), port, echo_port) as base,
    ):
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(port, "127.0.0.1", rst_port)
            writer.write(b"x")
            got, how = await read_until_closed(reader, STEP_TIMEOUT_S)
        assert got <= 256 * 1024
        writer.close()
        await back_to(base, "target reset")


async def test_target_accepts_and_never_answers() -> None:
    port = free_port()
    async with (
        target(echo) as echo_port,
        target(silent) as silent_port,
        warmed_socks(socks_freedom(port), port, echo_port) as base,
    ):
        started = time.monotonic()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(port, "127.0.0.1", silent_port)
            writer.write(b"anyone there?")
            got, how = await read_until_closed(reader, STEP_TIMEOUT_S)
        took = time.monotonic() - started
        assert got == 0
        assert CONN_IDLE_S * 0.8 <= took < CONN_IDLE_S + 5.0, took  # connIdle ends it
        writer.close()
        await back_to(base, "silent target")


async def test_client_leaves_while_the_dial_hangs() -> None:
    """4.34 aborts a hanging dial once the client has ended its side and downlinkOnly
    passed (its inbound keeps copying and timing the client while the outbound dials);
    so does v2py (app/dial_guard.py) instead of running freedom's 5 x 16 s attempts."""
    port = free_port()
    with unaccepting_listener() as black_port:
        async with (
            target(echo) as echo_port,
            warmed_socks(socks_freedom(port), port, echo_port) as base,
        ):
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks5_connect(port, "127.0.0.1", black_port)
                writer.write(b"hello")
                await asyncio.sleep(0.3)  # the dial is hanging now
                writer.close()
                await writer.wait_closed()
            took = await back_to(base, "client left a hanging dial", timeout=5.0)
            print(f"hanging dial released {took:.2f}s after the client left")


async def test_client_leaves_while_the_vmess_server_dial_hangs() -> None:
    """The same for the VMess outbound: its server never accepts, the client leaves."""
    port = free_port()
    with unaccepting_listener() as black_port:
        config = vmess_client_config(port, black_port, str(uuid.uuid4()), 0, "aes-128-gcm")
        config["policy"] = _policy()
        async with run_v2py(config):
            base = Census.take()
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks5_connect(port, "127.0.0.1", 9)
                writer.write(b"hello")
                await asyncio.sleep(0.3)  # the dial to the server is hanging now
                writer.close()
                await writer.wait_closed()
            took = await back_to(base, "client left a hanging VMess dial", timeout=5.0)
            print(f"hanging VMess dial released {took:.2f}s after the client left")


async def test_target_never_completes_the_handshake() -> None:
    """The client stays while freedom's dial hangs: the dial runs its attempts (4.34: 5 of
    16 s; here freedom is built with short ones), then the client gets the end and
    everything is released."""
    port = free_port()
    attempts = (0.0, 0.1)
    outbound = freedom(dial_timeout=DIAL_TIMEOUT_TEST_S, dial_delays=attempts)
    inbound = socks_inbound(port, policy=policy(handshake=CONN_IDLE_S, conn_idle=CONN_IDLE_S))
    with unaccepting_listener() as black_port:
        async with target(echo) as echo_port, serve_inbound(inbound, [outbound], port=port):
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks5_connect(port, "127.0.0.1", echo_port)
                writer.write(b"warm")
                assert await reader.readexactly(4) == b"warm"
                writer.close()
                await writer.wait_closed()
            await asyncio.sleep(0.1)
            base = Census.take()
            started = time.monotonic()
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks5_connect(port, "127.0.0.1", black_port)
                writer.write(b"hello")
                got, how = await read_until_closed(reader, STEP_TIMEOUT_S)
            took = time.monotonic() - started
            assert got == 0
            dial_time = len(attempts) * DIAL_TIMEOUT_TEST_S + sum(attempts)
            assert dial_time * 0.8 <= took < dial_time + 5.0, took
            writer.close()
            await back_to(base, "hanging dial")


@pytest.mark.parametrize("strategy", ["nxdomain", "silent"])
async def test_dns_failure_for_a_freedom_domain(strategy: str) -> None:
    port = free_port()
    async with target(echo) as echo_port, dns_server({}) as dns:
        getattr(dns, strategy).add("gone.test")
        config = socks_freedom(port, domainStrategy="UseIPv4")
        config["dns"] = {"servers": [{"address": "127.0.0.1", "port": dns.port}]}
        async with warmed_socks(config, port, echo_port) as base:
            started = time.monotonic()
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks5_connect(port, "gone.test", 80)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                got, how = await read_until_closed(reader, STEP_TIMEOUT_S)
            took = time.monotonic() - started
            assert got == 0
            assert took < 10.0, took  # 4 s DNS timeout, then the domain as is fails
            assert ("gone.test.", "A") in dns.names()
            writer.close()
            await back_to(base, f"dns {strategy}")


async def _kill_server_mid_transfer(network: str, settle: float) -> None:
    socks_port, vmess_port, ready_port = free_ports(3)
    user = str(uuid.uuid4())
    server_cfg = vmess_server_config(vmess_port, user, 0)
    # a TCP port to wait on (an mKCP server listens on UDP only)
    server_cfg["inbounds"].append(
        {
            "listen": "127.0.0.1",
            "port": ready_port,
            "protocol": "dokodemo-door",
            "settings": {"address": "127.0.0.1", "port": 9, "network": "tcp"},
        }
    )
    client_cfg = vmess_client_config(socks_port, vmess_port, user, 0, "aes-128-gcm")
    client_cfg["policy"] = _policy()
    if network == "kcp":
        kcp = {"network": "kcp", "kcpSettings": {"uplinkCapacity": 20, "downlinkCapacity": 20}}
        server_cfg["inbounds"][0]["streamSettings"] = kcp
        client_cfg["outbounds"][0]["streamSettings"] = kcp
    async with (
        target(bulk_source) as bulk_port,
        target(echo) as echo_port,
        run_v2py(client_cfg),
        run_v2py_process(server_cfg, wait_tcp=ready_port) as server,
    ):
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
            writer.write(b"warm")
            assert await reader.readexactly(4) == b"warm"
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.1)
        base = Census.take()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(socks_port, "127.0.0.1", bulk_port)
            writer.write(b"x")
            got = 0
            while got < 256 * 1024:
                data = await reader.read(65536)
                assert data, "ended before the kill"
                got += len(data)
        os.kill(server.pid, signal.SIGKILL)
        killed = time.monotonic()
        got, how = await read_until_closed(reader, STEP_TIMEOUT_S + settle)
        ended = time.monotonic() - killed
        assert got < len(BULK)
        writer.close()
        took = await back_to(base, f"server killed ({network})", timeout=settle)
        print(
            f"{network}: client saw the end {ended:.2f}s after the kill ({how}), "
            f"census back after {took:.2f}s"
        )


async def test_vmess_server_killed_mid_transfer() -> None:
    await _kill_server_mid_transfer("tcp", SETTLE_S)


@pytest.mark.slow
async def test_mkcp_peer_vanishes() -> None:
    """mKCP has no RST: the client's session outlives the dead server until 4.34's timers
    end it (connIdle closes the relay; with nothing left to send the session goes from
    ReadyToClose to Terminating at once and is Terminated 8 s later)."""
    await _kill_server_mid_transfer("kcp", 40.0)
