"""Hand-wired VMess endpoints and a raw-socket prober for the VMess scenario tests.

* ``v2py_vmess_server``: a v2py VMess inbound on 127.0.0.1 whose accepted sessions go
  to a tiny direct outbound (so a successful request reaches e.g. an echo server).
* ``v2py_vmess_client``: a plain TCP port whose connections are tunnelled by a v2py
  VMess outbound to a fixed destination (a dokodemo-door in miniature).
* ``first_packet``: the bytes a v2py client core sends first (header + first chunk).
* ``probe``: send raw bytes, report every byte the server answered and when it closed.
* ``CapturingRelay``: a TCP relay that records both directions of each connection.

All waits are bounded; nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.support.v2ray import free_port
from v2py.app.dispatcher import Dispatcher
from v2py.app.handler import Dispatch
from v2py.app.inbound import AlwaysOnInbound
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.proxyman import OutboundManager
from v2py.app.relay import relay
from v2py.app.session import Session
from v2py.common.net import tcp
from v2py.config.model import EnvSwitches
from v2py.protocol.vmess import (
    DataReceived,
    RequestCommand,
    SecurityType,
    VmessClientConnection,
    VmessUser,
    parse_uuid,
)
from v2py.proxy.vmess_inbound import VmessInbound
from v2py.proxy.vmess_outbound import ServerEntry, VmessAccount, VmessOutbound
from v2py.transport.stream import Stream
from v2py.transport.tcp import dial_tcp

#: Handshake policy for servers under test: short, so no test waits on the 60 s default.
HANDSHAKE_S = 1.0
#: Upper bound for any single network step in these tests.
STEP_TIMEOUT_S = 10.0

Rng = Callable[[int], bytes]
Clock = Callable[[], float]


def user(uuid: str, alter_id: int = 0, email: str = "") -> VmessUser:
    """A VmessUser from a UUID string."""
    return VmessUser(id=parse_uuid(uuid), alter_id=alter_id, email=email)


def short_policy(handshake: float = HANDSHAKE_S) -> PolicyTable:
    """Level-0 policy with a short handshake timeout and short half-close waits."""
    return PolicyTable({0: Timeouts(handshake=handshake, conn_idle=30.0)})


class DirectOutbound:
    """Connects to ``session.destination`` over TCP and relays (a minimal freedom).

    Only 127.0.0.1 is ever dialled; with ``allowed_ports`` only those ports. Any other
    destination (say, one decoded from a fuzzed header) is dropped like a blackhole
    and remembered in ``refused``.
    """

    tag = "direct"

    def __init__(self, policy: PolicyTable, allowed_ports: frozenset[int] | None = None) -> None:
        self._policy = policy
        self._allowed_ports = allowed_ports
        self.refused = 0

    async def handle(self, session: Session, stream: Stream) -> None:
        dest = session.destination
        assert dest is not None
        if dest.address != "127.0.0.1" or (
            self._allowed_ports is not None and dest.port not in self._allowed_ports
        ):
            self.refused += 1
            return
        remote = await dial_tcp(dest.address, dest.port, timeout=STEP_TIMEOUT_S)
        try:
            await relay(stream, remote, self._policy.for_level(0))
        finally:
            remote.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        self.refused += 1


class FixedTarget:
    """Inbound proxy that sends every connection to one destination (dokodemo-door-like)."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        session.destination = tcp(self._host, self._port)
        await dispatcher.dispatch(session, stream)

    async def start(self, dispatcher: Dispatch) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass(slots=True)
class ServerHandle:
    port: int
    inbound: VmessInbound
    outbound: DirectOutbound


@contextlib.asynccontextmanager
async def v2py_vmess_server(
    users: Sequence[VmessUser],
    *,
    handshake: float = HANDSHAKE_S,
    clock: Clock = time.time,
    rng: Rng = os.urandom,
    disable_insecure: bool = False,
    port: int | None = None,
    allowed_ports: frozenset[int] | None = None,
) -> AsyncIterator[ServerHandle]:
    """A running v2py VMess inbound on 127.0.0.1 with a direct outbound behind it."""
    policy = short_policy(handshake)
    inbound = VmessInbound(
        tag="vmess-in",
        users=users,
        policy=policy,
        disable_insecure=disable_insecure,
        rng=rng,
        clock=clock,
    )
    port = port or free_port()
    listener = AlwaysOnInbound(tag="vmess-in", proxy=inbound, listen_host="127.0.0.1", ports=[port])
    outbound = DirectOutbound(policy, allowed_ports)
    await listener.start(Dispatcher(OutboundManager.of([outbound])))
    try:
        yield ServerHandle(port=port, inbound=inbound, outbound=outbound)
    finally:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await listener.close()


@contextlib.asynccontextmanager
async def v2py_vmess_client(
    server_port: int,
    account: VmessUser,
    target: tuple[str, int],
    *,
    security: SecurityType = SecurityType.AES_128_GCM,
    clock: Clock = time.time,
    rng: Rng = os.urandom,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[int]:
    """A local TCP port whose connections a v2py VMess outbound carries to ``target``."""
    policy = short_policy()
    outbound = VmessOutbound(
        tag="vmess-out",
        servers=[
            ServerEntry(
                address="127.0.0.1",
                port=server_port,
                accounts=[VmessAccount(user=account, security=security)],
            )
        ],
        policy=policy,
        aead_forced=EnvSwitches.from_env(env or {}).vmess_aead_forced,
        padding=EnvSwitches.from_env(env or {}).vmess_padding,
        rng=rng,
        clock=clock,
    )
    port = free_port()
    listener = AlwaysOnInbound(
        tag="door", proxy=FixedTarget(*target), listen_host="127.0.0.1", ports=[port]
    )
    await listener.start(Dispatcher(OutboundManager.of([outbound])))
    try:
        yield port
    finally:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await listener.close()


def new_client(
    account: VmessUser,
    *,
    aead: bool,
    now: float,
    rng: Rng = os.urandom,
    security: SecurityType = SecurityType.AES_128_GCM,
    target: tuple[str, int] = ("127.0.0.1", 80),
) -> VmessClientConnection:
    """A v2py client core for one TCP request to ``target``."""
    return VmessClientConnection(
        account,
        security,
        command=RequestCommand.TCP,
        address=target[0],
        port=target[1],
        now=now,
        rng=rng,
        use_aead=aead,
    )


def first_packet(
    account: VmessUser,
    *,
    aead: bool,
    now: float,
    rng: Rng = os.urandom,
    security: SecurityType = SecurityType.AES_128_GCM,
    target: tuple[str, int] = ("127.0.0.1", 80),
    payload: bytes = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
) -> bytes:
    """What a v2py client core sends first: the request header plus the first chunk."""
    core = new_client(account, aead=aead, now=now, rng=rng, security=security, target=target)
    core.send_data(payload)
    return core.data_to_send()


def body_chunk(core: VmessClientConnection, payload: bytes) -> bytes:
    """``payload`` as the first body chunk of ``core``'s request, without its header
    (to follow a header sealed by hand for the same request)."""
    core.data_to_send()  # the header
    core.send_data(payload)
    return bytes(core.data_to_send())


async def vmess_exchange(
    port: int,
    core: VmessClientConnection,
    first: bytes,
    *,
    expect: int,
    timeout: float = STEP_TIMEOUT_S,
) -> bytes:
    """Send ``first`` (header + chunks from ``core``) and decode ``expect`` response bytes."""
    got = bytearray()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(first)
            await writer.drain()
            while len(got) < expect:
                data = await reader.read(65536)
                core.receive_data(data)
                while (event := core.next_event()) is not None:
                    if isinstance(event, DataReceived):
                        got += event.data
                if not data:
                    break
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return bytes(got)


@dataclass(slots=True)
class ProbeResult:
    """What the server did with a probe."""

    received: bytes  # every byte the server sent
    closed: bool  # the server closed (FIN or RST) within the wait
    reset: bool  # ... by a reset
    close_delay: float  # seconds from the last byte we sent to the close (inf if open)


async def wait_close(
    reader: asyncio.StreamReader, *, timeout: float
) -> tuple[bytes, bool, bool, float]:
    """Read until the peer closes or ``timeout``; returns (received, closed, reset, delay)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while data := await reader.read(65536):
                received += data
    except TimeoutError:
        return bytes(received), False, False, float("inf")
    except ConnectionResetError:
        return bytes(received), True, True, loop.time() - start
    return bytes(received), True, False, loop.time() - start


async def probe(
    port: int,
    chunks: Sequence[bytes],
    *,
    half_close: bool = False,
    wait: float = STEP_TIMEOUT_S,
    gap: float = 0.0,
) -> ProbeResult:
    """Connect, send ``chunks`` (``gap`` seconds apart), optionally half-close, and watch.

    Returns after the server closes or after ``wait`` seconds of it staying open.
    """
    async with asyncio.timeout(STEP_TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, chunk in enumerate(chunks):
            if i and gap:
                await asyncio.sleep(gap)
            writer.write(chunk)
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(STEP_TIMEOUT_S):
                    await writer.drain()
        if half_close and writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        received, closed, reset, delay = await wait_close(reader, timeout=wait)
        return ProbeResult(received=received, closed=closed, reset=reset, close_delay=delay)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await writer.wait_closed()


async def roundtrip(port: int, payload: bytes, *, timeout: float = STEP_TIMEOUT_S) -> bytes:
    """Send ``payload``, half-close, return everything received until EOF (b"" on reset)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(payload)
            await writer.drain()
            received = bytearray()
            try:
                while len(received) < len(payload):
                    data = await reader.read(65536)
                    if not data:
                        break
                    received += data
            except ConnectionResetError:
                pass
            return bytes(received)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(slots=True)
class Captured:
    """Both directions of one relayed connection."""

    upstream: bytearray = field(default_factory=bytearray)  # client -> server
    downstream: bytearray = field(default_factory=bytearray)  # server -> client
    done: asyncio.Event = field(default_factory=asyncio.Event)


class CapturingRelay:
    """A TCP relay on 127.0.0.1 in front of ``upstream_port`` that records all bytes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections: list[Captured] = []
        self.new_connection = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CapturingRelay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        cap = Captured()
        self.connections.append(cap)
        self.new_connection.set()
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cwriter.close()
            cap.done.set()
            self._tasks.discard(task)
            return

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, buf: bytearray) -> None:
            try:
                while data := await r.read(65536):
                    buf += data
                    w.write(data)
                    await w.drain()
                if w.can_write_eof():
                    w.write_eof()
            except OSError:
                w.close()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(pump(creader, swriter, cap.upstream))
                group.create_task(pump(sreader, cwriter, cap.downstream))
        finally:
            for w in (cwriter, swriter):
                w.close()
            cap.done.set()
            self._tasks.discard(task)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
