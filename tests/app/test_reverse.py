"""Reverse proxy on 127.0.0.1: v2py bridge + v2py portal (the V2Ray guide's setup), and
what each side puts on the wire, checked against 4.34 (the same test runs the real
v2ray in the role under test, marked interop).

A raw portal here is a Mux.Cool client (the pure core) over the TCP connection a
bridge dials (its outbound to the portal is freedom redirected to us); a raw bridge
is a plain TCP client of a dokodemo inbound whose target is the portal's domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.reverse import (
    DOMAIN,
    bridge_config,
    echo_through,
    portal_config,
    wait_bridged,
)
from tests.support.servers import TcpEchoServer
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_ports, run_v2ray
from v2py.app.reverse import Bridge, Portal
from v2py.common.net import Network, tcp, udp
from v2py.protocol.mux import (
    DataReceived,
    MuxConnection,
    MuxRole,
    SessionOpened,
    decode_metadata,
)
from v2py.protocol.reverse import (
    INTERNAL_DOMAIN,
    Control,
    ControlState,
    decode_control,
    encode_control,
)

TIMEOUT_S = 20.0
KINDS = ["v2py", pytest.param("v2ray", marks=pytest.mark.interop)]


async def test_v2py_bridge_and_portal_concurrent_sessions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="v2py.access")
    vmess_port, external_port, probe_port = free_ports(3)
    async with TcpEchoServer() as echo:  # noqa: SIM117 - the configs need echo.port
        async with (
            run_v2py(portal_config(vmess_port, external_port, echo.port)) as portal_side,
            run_v2py(bridge_config(vmess_port, probe_port)) as bridge_side,
        ):
            async with asyncio.timeout(TIMEOUT_S):
                await wait_bridged(external_port)
                await asyncio.gather(*(echo_through(external_port, i, 100_000) for i in range(30)))
            assert portal_side.reverse is not None and bridge_side.reverse is not None
            portal = portal_side.reverse.portals[0]
            bridge = bridge_side.reverse.bridges[0]
            assert isinstance(portal, Portal) and isinstance(bridge, Bridge)
            assert portal_side.outbounds.get("portal") is portal
            # one bridge connection carried everything (30 sessions, retries of the
            # first probe aside, never more than 16 at once on average at a check)
            assert len(portal.workers) >= 1
            assert sum(w.mux.endpoint.total_sessions for w in portal.workers) >= 31
            assert all(w.active for w in bridge.workers)
    # the bridge's own connections to the portal's domain are the core's: no access
    # line for them (4.34 writes none); the portal's inbound connections have theirs
    accesses = [r.getMessage() for r in caplog.records if r.name == "v2py.access"]
    assert [line for line in accesses if f"accepted tcp:{DOMAIN}:0 [portal]" in line]
    assert not [line for line in accesses if line.startswith("unknown ")], accesses
    # the sessions the bridge serves: 4.34's mux server leaves From nil (no source)
    served = [line for line in accesses if line.endswith(" [out]")]
    assert served and all(line.startswith(" accepted tcp:127.0.0.1:") for line in served)


async def until(check: Callable[[], bool]) -> None:
    """Poll ``check`` (state another process changes; the caller bounds the time)."""
    while not check():
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("bridge_kind", KINDS)
async def test_portal_drains_a_connection_after_256_sessions(bridge_kind: str) -> None:
    """A v2py portal: after a bridge connection has had more than 256 sessions (the
    control session counted, as 4.34's TotalConnections), the next heartbeat sends DRAIN
    and ends the control session; the bridge (v2py or 4.34) dials a new connection at
    its next check, new sessions go there, and the old connection still carries its
    open session until that ends, then closes at the mux client's idle tick."""
    vmess_port, external_port, probe_port = free_ports(3)
    async with TcpEchoServer() as echo:  # noqa: SIM117 - the configs need echo.port
        async with run_v2py(portal_config(vmess_port, external_port, echo.port)) as side:
            assert side.reverse is not None
            portal = side.reverse.portals[0]
            portal.interval = 0.1  # heartbeat (4.34: 2 s), for a quick DRAIN
            portal.idle_tick = 0.2  # the mux client's idle check (4.34: 16 s)
            bridge = bridge_config(vmess_port, probe_port)
            async with run_side(bridge_kind, bridge, probe_port):
                async with asyncio.timeout(TIMEOUT_S):
                    await wait_bridged(external_port)
                    assert len(portal.workers) == 1
                    first = portal.workers[0]
                    # a session that stays open across the DRAIN
                    held_reader, held = await asyncio.open_connection("127.0.0.1", external_port)
                    held.write(b"before")
                    assert await held_reader.readexactly(6) == b"before"
                    # short sessions, 4 at a time (the bridge opens a second connection
                    # only above 16 sessions per connection)
                    gate = asyncio.Semaphore(4)

                    async def short(index: int) -> None:
                        async with gate:
                            await echo_through(external_port, index, 16)

                    await asyncio.gather(*(short(i) for i in range(260)))
                    assert first.mux.endpoint.total_sessions > 256
                    await until(lambda: first.draining)
                    assert first.control.end_sent  # DRAIN was the control session's last
                    # the bridge's new connection; new sessions go there
                    await until(lambda: any(not w.draining for w in portal.workers))
                    assert len(portal.workers) == 2
                    second = next(w for w in portal.workers if not w.draining)
                    before = first.mux.endpoint.total_sessions
                    await asyncio.gather(*(short(i) for i in range(8)))
                    assert first.mux.endpoint.total_sessions == before
                    assert second.mux.endpoint.total_sessions == 1 + 8  # control + 8
                    # the old connection still carries its session, then closes
                    assert not first.closed
                    held.write(b"after")
                    assert await held_reader.readexactly(5) == b"after"
                    held.close()
                    await until(lambda: first.closed)
                    await until(lambda: portal.workers == [second])
                    assert not second.closed


async def test_portal_without_bridge_refuses() -> None:
    vmess_port, external_port = free_ports(2)
    async with (
        TcpEchoServer() as echo,
        run_v2py(portal_config(vmess_port, external_port, echo.port)),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", external_port)
        writer.write(b"x")
        async with asyncio.timeout(TIMEOUT_S):
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        writer.close()


# -- a raw portal in front of a bridge ---------------------------------------------------


class RawPortal:
    """Accepts the bridge's connections; each gets a Mux.Cool client core."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[RawLink] = asyncio.Queue()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: list[RawLink] = []  # all, closed at exit (the bridge may dial more)

    async def __aenter__(self) -> RawPortal:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            link = RawLink(reader, writer)
            self._links.append(link)
            await self.connections.put(link)

        self._server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for link in self._links:
            link.writer.close()


class RawLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.core = MuxConnection(MuxRole.CLIENT)

    def flush(self) -> None:
        self.writer.write(self.core.data_to_send())

    async def event(self) -> Any:
        while (event := self.core.next_event()) is None:
            data = await self.reader.read(65536)
            self.core.receive_data(data)
            if not data:
                return self.core.next_event()
        return event


def bridge_side_config(portal_port: int, probe_port: int) -> dict[str, Any]:
    config = bridge_config(0, probe_port)
    config["outbounds"][0] = {
        "tag": "interconn",
        "protocol": "freedom",
        "settings": {"redirect": f"127.0.0.1:{portal_port}"},
    }
    return config


@contextlib.asynccontextmanager
async def bridge_side(kind: str, config: dict[str, Any], probe_port: int) -> AsyncIterator[Any]:
    if kind == "v2ray":
        async with run_v2ray(config, wait_tcp=[probe_port]) as proc:
            yield proc
    else:
        async with run_v2py(config) as instance:
            yield instance


@pytest.mark.parametrize("kind", KINDS)
async def test_bridge_serves_sessions_and_obeys_drain(kind: str) -> None:
    (probe_port,) = free_ports(1)
    async with TcpEchoServer() as echo, RawPortal() as portal:  # noqa: SIM117
        async with bridge_side(kind, bridge_side_config(portal.port, probe_port), probe_port):
            async with asyncio.timeout(TIMEOUT_S):
                link = await portal.connections.get()
                # the bridge sends nothing first: the portal speaks
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await link.reader.read(1)
                control = link.core.open_session(udp(INTERNAL_DOMAIN, 0))
                link.core.send_data(control, encode_control(Control(random=b"\x01\x02")))
                session = link.core.open_session(tcp("127.0.0.1", echo.port))
                link.core.send_data(session, b"ping")
                link.flush()
                got = b""
                while got != b"ping":
                    event = await link.event()
                    assert isinstance(event, DataReceived) and event.session_id == session
                    got += event.data
                # DRAIN: the bridge stops counting this connection and dials another one
                # at its next check (every 2 s); the old one keeps serving its sessions
                link.core.send_data(control, encode_control(Control(state=ControlState.DRAIN)))
                link.flush()
                second = await portal.connections.get()
                link.core.send_data(session, b"pong")
                link.flush()
                event = await link.event()
                assert isinstance(event, DataReceived) and event.data == b"pong"
                # the portal ends the control session: 4.34's bridge answers nothing
                link.core.send_end(control)
                link.flush()
                answer = b""
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        answer += await link.reader.read(65536)
                assert answer == b""
                second.writer.close()
                link.writer.close()


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF (a reset counts as EOF); the caller bounds the time."""
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(65536):
            out += chunk
    return out


@pytest.mark.parametrize("kind", KINDS)
async def test_bridge_never_ends_the_control_session_when_the_connection_ends(
    kind: str,
) -> None:
    """The portal finishes sending (EOF on the bridge's connection): 4.34's bridge sends
    nothing on the control session, not even End, and later closes the connection
    [verified: no frame at all, EOF about 1 s later from its freedom's uplinkOnly]."""
    (probe_port,) = free_ports(1)
    async with TcpEchoServer() as echo, RawPortal() as portal:  # noqa: SIM117
        async with bridge_side(kind, bridge_side_config(portal.port, probe_port), probe_port):
            async with asyncio.timeout(TIMEOUT_S):
                link = await portal.connections.get()
                control = link.core.open_session(udp(INTERNAL_DOMAIN, 0))
                link.core.send_data(control, encode_control(Control(random=b"\x05")))
                session = link.core.open_session(tcp("127.0.0.1", echo.port))
                link.core.send_data(session, b"ping")
                link.flush()
                event = await link.event()
                assert isinstance(event, DataReceived) and event.data == b"ping"
                link.writer.write_eof()
                rest = await read_to_eof(link.reader)
            parsed, used = frames(rest)
            assert used == len(rest)
            # (v2py's freedom half-closes to the echo service, which then ends session
            # 2; 4.34's freedom does not and its connection closes first)
            assert all(meta[:2] != b"\x00\x01" for meta, _ in parsed), parsed
            link.writer.close()


# -- a raw bridge in front of a portal ----------------------------------------------------


def raw_bridge_portal_config(tunnel_port: int, external_port: int, service_port: int) -> Any:
    config = portal_config(0, external_port, service_port)
    config["inbounds"][1] = {
        "tag": "interconn",
        "port": tunnel_port,
        "listen": "127.0.0.1",
        "protocol": "dokodemo-door",
        "settings": {"address": DOMAIN, "port": 0, "network": "tcp"},
    }
    return config


@contextlib.asynccontextmanager
async def portal_side(kind: str, config: dict[str, Any], port: int) -> AsyncIterator[Any]:
    if kind == "v2ray":
        async with run_v2ray(config, wait_tcp=[port]) as proc:
            yield proc
    else:
        async with run_v2py(config) as instance:
            yield instance


def frames(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """(metadata, data) of each complete frame at the start of ``data``, and the bytes
    they take (a frame cut by the read stays for the next one)."""
    out = []
    pos = 0
    while True:
        if pos + 2 > len(data):
            return out, pos
        end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
        if end > len(data) or end - pos < 6:
            return out, pos
        meta = data[pos + 2 : end]
        payload = b""
        if meta[3] & 1:
            if end + 2 > len(data):
                return out, pos
            size = int.from_bytes(data[end : end + 2], "big")
            if end + 2 + size > len(data):
                return out, pos
            payload = data[end + 2 : end + 2 + size]
            end += 2 + size
        out.append((meta, payload))
        pos = end


@pytest.mark.parametrize("kind", KINDS)
async def test_portal_control_session_on_the_wire(kind: str) -> None:
    """At once: New (UDP reverse.internal.v2ray.com:0) carrying an ACTIVE control
    message; then a Keep with one every 2 s. A routed connection opens a session."""
    tunnel_port, external_port, service_port = free_ports(3)
    config = raw_bridge_portal_config(tunnel_port, external_port, service_port)
    # (wait for the external port: a probe of the tunnel port would be a bridge
    # connection, and 4.34 keeps picking a closed one for up to 30 s [verified])
    async with portal_side(kind, config, external_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel_port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        seen: list[tuple[float, bytes, bytes]] = []
        buf = b""
        async with asyncio.timeout(TIMEOUT_S):
            while len(seen) < 2:
                chunk = await reader.read(65536)
                assert chunk, "the portal closed the tunnel"
                buf += chunk
                parsed, used = frames(buf)
                buf = buf[used:]
                # only session 1 (a wait probe of the external port may add a session)
                seen.extend((loop.time() - start, m, d) for m, d in parsed if m[:2] == b"\x00\x01")
        (t0, meta0, data0), (t1, meta1, data1) = seen[:2]
        first = decode_metadata(meta0)
        assert first.session_id == 1 and first.destination == udp(INTERNAL_DOMAIN, 0)
        # New with data; without when the message drew no random bytes (1 in 64: an
        # empty message is not written at all, the New leaves alone after its wait)
        assert meta0[2:4] == (b"\x01\x01" if data0 else b"\x01\x00")
        assert decode_control(data0).state is ControlState.ACTIVE
        assert meta1 == b"\x00\x01\x02\x01"  # Keep with data, session 1
        assert decode_control(data1).state is ControlState.ACTIVE
        assert data0[:2] in (b"", b"\x9a\x06") and len(data0) <= 2 + 1 + 63
        # every 2 s (4 s when the message in between drew no random bytes; a New without
        # data may also be 4.34's first-payload wait beating a loaded heartbeat)
        gap = t1 - t0
        assert t0 < 0.5
        if data0:
            assert round(gap / 2) in (1, 2) and abs(gap - 2 * round(gap / 2)) < 0.8, gap
        # an external connection becomes a session
        _, ext = await asyncio.open_connection("127.0.0.1", external_port)
        ext.write(b"hello")
        async with asyncio.timeout(TIMEOUT_S):
            core = MuxConnection(MuxRole.SERVER)
            if buf:  # a frame cut by the last read above (empty input means EOF)
                core.receive_data(buf)
            while True:
                chunk = await reader.read(65536)
                core.receive_data(chunk)
                events = []
                while (event := core.next_event()) is not None:
                    events.append(event)
                opened = [
                    e
                    for e in events
                    if isinstance(e, SessionOpened) and e.destination.port == service_port
                ]
                if opened:
                    break
        assert opened[0].destination.network is Network.TCP
        assert opened[0].destination == tcp("127.0.0.1", service_port)
        ext.close()
        writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_portal_sends_no_end_when_the_bridge_connection_ends(kind: str) -> None:
    """The bridge finishes sending (EOF on the portal's bridge connection): 4.34's portal
    (a mux client worker) sends no End for the control session nor for the others and
    closes the connection at once; the external connection ends [verified]."""
    tunnel_port, external_port, service_port = free_ports(3)
    config = raw_bridge_portal_config(tunnel_port, external_port, service_port)
    async with portal_side(kind, config, external_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel_port)
        async with asyncio.timeout(TIMEOUT_S):
            buf = b""
            while not any(m[:2] == b"\x00\x01" for m, _ in frames(buf)[0]):
                chunk = await reader.read(65536)
                assert chunk, "the portal closed the tunnel"
                buf += chunk
            ext_reader, ext = await asyncio.open_connection("127.0.0.1", external_port)
            ext.write(b"hello")
            # wait for the external session's New (id 2, or 3 after a wait probe)
            while not any(p == b"hello" for _, p in frames(buf)[0]):
                chunk = await reader.read(65536)
                assert chunk, "the portal closed the tunnel"
                buf += chunk
            _, used = frames(buf)
            assert used == len(buf)
            writer.write_eof()
            rest = await read_to_eof(reader)
            assert rest == b""
            assert await read_to_eof(ext_reader) == b""
        ext.close()
        writer.close()


def test_portal_tag_replaces_an_outbound_with_that_tag() -> None:
    """4.34's portal registers at start with AddHandler, which replaces a handler
    under a taken tag; the default outbound stays the first configured one."""
    from v2py.config.load import load_config
    from v2py.instance import Instance

    config = {
        "reverse": {"portals": [{"tag": "direct", "domain": DOMAIN}]},
        "outbounds": [{"tag": "direct", "protocol": "freedom"}],
    }
    loaded = load_config([("t.json", json.dumps(config))], {})
    instance = Instance.from_config(loaded.config, env={})
    assert isinstance(instance.outbounds.get("direct"), Portal)
    assert not isinstance(instance.outbounds.default, Portal)
