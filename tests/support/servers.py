"""Small servers and fakes shared by the socks/http/dokodemo/freedom shell tests and scenarios:
an HTTP origin, recording outbounds, an inbound runner, curl, a TLS ClientHello builder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest

from v2py.app.dispatcher import Dispatcher
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.proxyman import OutboundManager
from v2py.app.session import Session, SniffingSettings
from v2py.common.net import Destination
from v2py.proxy.freedom import FreedomOutbound
from v2py.proxy.socks_inbound import SocksInbound
from v2py.transport.stream import Stream
from v2py.transport.tcp import listen_tcp

TIMEOUT_S = 10.0
BODY = os.urandom(300_000)

# -- shared helpers -------------------------------------------------------------------


class HttpOrigin:
    """A tiny HTTP/1.1 origin on 127.0.0.1: answers every request with ``body``, then
    closes. Records each request head (and body bytes seen with it)."""

    def __init__(self, body: bytes = BODY) -> None:
        self.body = body
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HttpOrigin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                self.requests[-1] += await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body)
            )
            writer.write(self.body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


class RecordingOutbound:
    """Records sessions; TCP: answers ``reply`` then closes; UDP: echoes until the link
    closes, then sets ``link_closed``."""

    def __init__(self, tag: str = "record", reply: bytes = b"recorded") -> None:
        self.tag = tag
        self.reply = reply
        self.sessions: list[Session] = []
        self.first_bytes: list[bytes] = []
        self.seen = asyncio.Event()
        self.link_closed = asyncio.Event()

    async def handle(self, session: Session, stream: Stream) -> None:
        self.sessions.append(session)
        self.seen.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                self.first_bytes.append(await stream.read())
        stream.write(self.reply)
        await stream.drain()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        self.sessions.append(session)
        self.seen.set()
        while (data := await link.recv()) is not None:
            link.send(data)
        self.link_closed.set()

    @property
    def destinations(self) -> list[Destination | None]:
        return [s.destination for s in self.sessions]


class RecordingFreedom(FreedomOutbound):
    """Freedom that also records the destination each session asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sessions: list[Session] = []
        self.destinations: list[Destination | None] = []

    async def handle(self, session: Session, stream: Stream) -> None:
        self.sessions.append(session)
        self.destinations.append(session.destination)
        await super().handle(session, stream)


def policy(**overrides: float) -> PolicyTable:
    return PolicyTable({0: Timeouts(**overrides)})


@contextlib.asynccontextmanager
async def serve_inbound(
    inbound: Any, outbounds: list[Any], *, tag: str = "in", port: int = 0
) -> AsyncIterator[int]:
    """Run ``inbound`` behind a loopback TCP listener on ``port`` (as app/inbound.py
    does); yield the TCP port."""
    dispatcher = Dispatcher(OutboundManager.of(outbounds))

    async def on_connection(stream: Any) -> None:
        session = Session(inbound_tag=tag, source=stream.peer)
        await inbound.handle(session, stream, dispatcher)

    listener = await listen_tcp("127.0.0.1", port, on_connection)
    await inbound.start(dispatcher)
    try:
        yield listener.port
    finally:
        listener.close()
        inbound.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await listener.wait_closed()


async def run_curl(*args: str) -> bytes:
    """Run curl quietly; return stdout. Skips when curl is absent."""
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--noproxy",
        "",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT_S + 5):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out


def client_hello(server_name: str) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


async def socks_connect(
    port: int, request: bytes, *, greeting: bytes = b"\x05\x01\x00"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Raw SOCKS5 no-auth CONNECT with ``request`` = ATYP/ADDR/PORT; returns the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(greeting + b"\x05\x01\x00" + request)
    await writer.drain()
    reply = await reader.readexactly(2 + 10)
    return reader, writer, reply


def socks_inbound(port: int = 0, **kwargs: Any) -> SocksInbound:
    kwargs.setdefault("policy", PolicyTable())
    kwargs.setdefault("sniffing", SniffingSettings())
    return SocksInbound(tag="socks-in", listen="127.0.0.1", port=port, **kwargs)


def freedom(**kwargs: Any) -> FreedomOutbound:
    kwargs.setdefault("policy", PolicyTable())
    return FreedomOutbound(tag="direct", **kwargs)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(TIMEOUT_S):
        return await reader.read()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tagged_servers(
    tags: Iterable[str], handler_for: Callable[[str], Handler]
) -> AsyncIterator[dict[str, int]]:
    """One TCP server on 127.0.0.1 per tag, serving ``handler_for(tag)``; yields the
    ports by tag. Routing tests point one outbound at each, so the server that answers
    tells which outbound a connection took."""
    servers = []
    ports: dict[str, int] = {}
    try:
        for tag in tags:
            server = await asyncio.start_server(handler_for(tag), "127.0.0.1", 0)
            servers.append(server)
            ports[tag] = server.sockets[0].getsockname()[1]
        yield ports
    finally:
        for server in servers:
            server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                for server in servers:
                    await server.wait_closed()


# -- curl through socks + freedom -----------------------------------------------------


# -- many connections: an echo server that holds thousands, v2py as its own process ------


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, conns: set[asyncio.BaseTransport]) -> None:
        self._conns = conns
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._conns.add(transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once the peer has finished sending

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._conns.discard(self._transport)


class TcpEchoServer:
    """A TCP echo server on 127.0.0.1 built on a plain ``asyncio.Protocol`` (no stream
    objects), with a deep listen backlog: for thousands of concurrent connections.
    ``open`` counts the connections it holds right now."""

    BACKLOG = 4096

    def __init__(self) -> None:
        self.port = 0
        self._conns: set[asyncio.BaseTransport] = set()
        self._server: asyncio.Server | None = None

    @property
    def open(self) -> int:
        return len(self._conns)

    async def __aenter__(self) -> TcpEchoServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _EchoProtocol(self._conns), "127.0.0.1", 0, backlog=self.BACKLOG
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self._conns):
            transport.abort()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._server.wait_closed()


class V2pyProcess:
    """A ``python -m v2py run -c FILE`` child; ``log`` returns what it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: str) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()


@contextlib.asynccontextmanager
async def run_v2py_process(
    config: dict[str, Any], *, wait_tcp: int, start_timeout: float = 20.0
) -> AsyncIterator[V2pyProcess]:
    """Run ``config`` in a separate ``v2py run`` process (its own descriptors, its own CPU,
    its own open-files limit, raised to the hard one by the CLI) until the block ends."""
    import json
    import sys
    import tempfile

    from tests.support.v2ray import wait_tcp_port

    workdir = tempfile.mkdtemp(prefix="v2py-proc-")
    cfg_path = os.path.join(workdir, "config.json")
    log_path = os.path.join(workdir, "v2py.log")
    with open(cfg_path, "w") as fh:
        json.dump(config, fh)
    with open(log_path, "wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "v2py", "run", "-c", cfg_path,
            stdout=log_file, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    handle = V2pyProcess(proc, log_path)
    try:
        try:
            await wait_tcp_port(wait_tcp, timeout=start_timeout)
        except TimeoutError:
            raise RuntimeError(f"v2py did not listen on {wait_tcp}: {handle.log()}") from None
        yield handle
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def fd_count(pid: int | str) -> int:
    """Open descriptors of process ``pid`` (or ``"self"``), from /proc."""
    return len(os.listdir(f"/proc/{pid}/fd"))
