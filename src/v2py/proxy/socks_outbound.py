"""The ``socks`` outbound: SOCKS5 CONNECT and UDP ASSOCIATE to an upstream proxy, as
v2ray-core 4.34 ``proxy/socks/client.go`` does it.

* Servers are taken round robin; a server's user, when it has several, at random
  (``ServerSpec.PickUser``). With a user the client offers only method 02 (RFC 1929),
  without one only 00 (the core, ``protocol/socks5.py`` ``Socks5ClientConnection``).
* Dialling makes up to 5 attempts, waiting 0/100/200/300/400 ms before them
  (``retry.ExponentialBackoff(5, 100)``), through the outbound's transport (its
  ``streamSettings``, or another outbound under ``proxySettings``).
* The policy is level 0's, or the picked user's level: its handshake timeout bounds
  the SOCKS handshake, its idle timeouts the relay.
* UDP: an ASSOCIATE for the session's destination on the TCP connection (kept open,
  not read, until the session ends), then one UDP socket to the announced relay
  address (the server's address when it announces 0.0.0.0 or ::). Every datagram is
  sent with the session's destination in its header; every answer's payload is
  delivered whatever address its header names, and a malformed answer ends the
  session, as in 4.34.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.relay import ActivityTimer, relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, Network
from v2py.errors import LocalProtocolError, ProtocolError, Socks5Error
from v2py.protocol.socks5 import (
    UDP_READ_MAX_BYTES,
    ReplyReceived,
    Socks5ClientConnection,
    Socks5Command,
    decode_udp_datagram,
    encode_udp_datagram,
)
from v2py.transport import Transport
from v2py.transport.stream import PrefixedStream, Stream

if TYPE_CHECKING:
    from v2py.transport.sockopt import SocketOptions

__all__ = [
    "DIAL_DELAYS_S",
    "PacketChannel",
    "PacketOpener",
    "ServerPicker",
    "SocksOutbound",
    "UpstreamServer",
    "UpstreamUser",
    "open_udp_channel",
]

log = logging.getLogger(__name__)

#: Delays before each dial attempt (4.34 ``retry.ExponentialBackoff(5, 100)``).
DIAL_DELAYS_S = (0.0, 0.1, 0.2, 0.3, 0.4)
#: Per-attempt connect timeout (Go's system dialer in v2ray uses 16 s).
DIAL_TIMEOUT_S = 16.0
#: Addresses of a UDP ASSOCIATE reply that mean "the server's own address".
_ANY_ADDRESSES = ("0.0.0.0", "::")
_HANDSHAKE_READ_BYTES = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamUser:
    """A configured user of an upstream proxy (credentials and a level)."""

    user: str
    password: str
    level: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamServer:
    """One ``servers`` entry of a SOCKS or HTTP outbound: a proxy and its users."""

    address: str
    port: int
    users: tuple[UpstreamUser, ...] = ()


class _Endpoint(Protocol):
    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...


S = TypeVar("S", bound=_Endpoint)
U = TypeVar("U")


class ServerPicker(Generic[S]):
    """4.34's ``RoundRobinServerPicker`` and ``ServerSpec.PickUser`` (shared by the
    SOCKS, HTTP and VLESS outbounds)."""

    def __init__(self, servers: Sequence[S], rng: random.Random | None = None) -> None:
        if not servers:
            raise ValueError("0 target server")
        self.servers = tuple(servers)
        self._next = 0
        self._rng = rng or random.Random()

    def pick(self) -> S:
        server = self.servers[self._next]
        self._next = (self._next + 1) % len(self.servers)
        return server

    def user(self, users: Sequence[U]) -> U | None:
        """A random one of a server's ``users`` (None when it has none)."""
        if not users:
            return None
        if len(users) == 1:
            return users[0]
        return users[self._rng.randrange(len(users))]


async def dial_with_retries(
    transport: Transport,
    picker: ServerPicker[S],
    delays: Sequence[float],
    timeout: float,
    slog: logging.LoggerAdapter[logging.Logger],
    what: str,
) -> tuple[Stream, S]:
    """Dial the next server until one answers (4.34's retry loop around ``dialer.Dial``).

    Raises ConnectionError naming the last failure.
    """
    last: BaseException | None = None
    for delay in delays:
        if delay:
            await asyncio.sleep(delay)
        server = picker.pick()
        try:
            stream = await transport.dial(server.address, server.port, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            last = exc
            slog.info("%s: failed to dial %s:%d: %s", what, server.address, server.port, exc)
            continue
        return stream, server
    raise ConnectionError(f"{what}: failed to find an available destination: {last}")


class PacketChannel(Protocol):
    """Datagrams to one address: a UDP socket, or a chained outbound's packet link."""

    def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes | None: ...

    def close(self) -> None: ...


#: Opens a :class:`PacketChannel` to ``(host, port)``.
PacketOpener = Callable[[str, int], Awaitable[PacketChannel]]


class _UdpChannel(asyncio.DatagramProtocol):
    """A connected UDP socket as a :class:`PacketChannel`."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # 4.34 reads each datagram into one 2048-byte buffer.
        self._inbox.put_nowait(data[:UDP_READ_MAX_BYTES])

    def error_received(self, exc: Exception) -> None:
        log.debug("socks udp: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inbox.put_nowait(None)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)

    async def recv(self) -> bytes | None:
        return await self._inbox.get()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_udp_channel(
    host: str,
    port: int,
    *,
    source: str | None = None,
    options: SocketOptions | None = None,
) -> PacketChannel:
    """A UDP socket connected to ``host:port`` (the relay address of an ASSOCIATE),
    bound to ``source`` (``sendThrough``) and with ``sockopt`` ``options`` when set,
    as 4.34's UDP dialer does for every outbound."""
    loop = asyncio.get_running_loop()
    if source is None and options is None:
        _, channel = await loop.create_datagram_endpoint(
            _UdpChannel, remote_addr=(host, port), family=socket.AF_UNSPEC
        )
        return channel
    from v2py.transport.sockopt import connected_udp_socket

    sock = await connected_udp_socket(host, port, source=source, options=options)
    _, channel = await loop.create_datagram_endpoint(_UdpChannel, sock=sock)
    return channel


class SocksOutbound:
    """The ``socks`` outbound handler. ``open_packets`` opens the UDP relay channel
    (a UDP socket; under ``proxySettings`` the chained outbound's packet link);
    ``dial_delays`` and ``rng`` exist for tests."""

    def __init__(
        self,
        *,
        tag: str,
        servers: Sequence[UpstreamServer],
        policy: PolicyTable,
        transport: Transport,
        open_packets: PacketOpener = open_udp_channel,
        dial_delays: Sequence[float] = DIAL_DELAYS_S,
        dial_timeout: float = DIAL_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        self.tag = tag
        self.picker = ServerPicker(servers, rng)
        self.policy = policy
        self.transport = transport
        self._open_packets = open_packets
        self._dial_delays = tuple(dial_delays)
        self._dial_timeout = dial_timeout

    async def _connect(
        self, session: Session, command: Socks5Command
    ) -> tuple[Stream, UpstreamServer, ReplyReceived, Timeouts, bytes]:
        """Dial a server and run the handshake; the stream is closed on failure."""
        dest = session.destination
        if dest is None:
            raise LocalProtocolError("socks: session has no destination")
        slog = session_logger(log, session)
        stream, server = await dial_with_retries(
            self.transport, self.picker, self._dial_delays, self._dial_timeout, slog, "socks"
        )
        try:
            user = self.picker.user(server.users)
            timeouts = self.policy.for_level(user.level if user is not None else 0)
            try:
                core = Socks5ClientConnection(
                    command=command,
                    address=dest.address,
                    port=dest.port,
                    username=user.user if user is not None else None,
                    password=user.password if user is not None else "",
                )
            except ValueError as exc:  # a domain over 255 bytes
                raise LocalProtocolError(f"socks: {exc}") from exc
            async with asyncio.timeout(timeouts.handshake):
                reply = await _handshake(stream, core)
        except BaseException:
            stream.close()
            raise
        slog.info("socks: tunneling request to %s via %s:%d", dest, server.address, server.port)
        return stream, server, reply, timeouts, core.trailing_data

    async def handle(self, session: Session, stream: Stream) -> None:
        """CONNECT through a server and relay; raises OSError / ProtocolError when no
        server answers or the handshake fails. Never closes ``stream``."""
        remote, _, _, timeouts, trailing = await self._connect(session, Socks5Command.CONNECT)
        # The inbound's own timer (its level) runs too, as in 4.34: the shorter one wins.
        timeouts = self.policy.for_level(session.level).meet(timeouts)
        try:
            await relay(stream, PrefixedStream(trailing, remote) if trailing else remote, timeouts)
        finally:
            remote.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """UDP ASSOCIATE through a server and relay the link's datagrams until it
        closes, idles out (connIdle) or the server sends a malformed answer."""
        dest = session.destination
        if dest is None or dest.network is not Network.UDP:
            raise LocalProtocolError("socks: packet session without a UDP destination")
        control, server, reply, timeouts, _ = await self._connect(
            session, Socks5Command.UDP_ASSOCIATE
        )
        slog = session_logger(log, session)
        channel: PacketChannel | None = None
        task = asyncio.current_task()
        assert task is not None
        timer = ActivityTimer(task, timeouts.conn_idle)
        try:
            host = server.address if reply.address in _ANY_ADDRESSES else reply.address
            channel = await self._open_packets(host, reply.port)
            await self._relay_packets(dest, link, channel, timer, timeouts)
        except asyncio.CancelledError:
            if timer.expired:
                task.uncancel()
                return
            raise
        except (OSError, ProtocolError) as exc:
            slog.info("socks: udp relay ended: %s", exc)
        finally:
            timer.cancel()
            if channel is not None:
                channel.close()
            control.close()

    @staticmethod
    async def _relay_packets(
        dest: Destination,
        link: PacketLink,
        channel: PacketChannel,
        timer: ActivityTimer,
        timeouts: Timeouts,
    ) -> None:
        async def uplink() -> None:
            while (data := await link.recv()) is not None:
                timer.touch()
                channel.send(encode_udp_datagram(dest.address, dest.port, data))
            timer.end_direction(timeouts.downlink_only)

        async def downlink() -> None:
            while (data := await channel.recv()) is not None:
                timer.touch()
                packet = decode_udp_datagram(data)
                if packet is None:
                    raise Socks5Error("malformed UDP answer from the server")
                link.send(packet.payload)
            timer.end_direction(timeouts.uplink_only)

        up: asyncio.Task[None] | None = None
        try:
            async with asyncio.TaskGroup() as group:
                up = group.create_task(uplink())
                down = group.create_task(downlink())
                await up
                # The link closed: the inbound ended the flow, so the session is over.
                down.cancel()
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None
        finally:
            if up is not None and not up.done():
                up.cancel()


async def _handshake(stream: Stream, core: Socks5ClientConnection) -> ReplyReceived:
    """Run ``core`` over ``stream`` until the server's reply; raises Socks5Error or
    OSError."""
    stream.write(core.data_to_send())
    await stream.drain()
    while True:
        event = core.next_event()
        if isinstance(event, ReplyReceived):
            return event
        data = await stream.read(_HANDSHAKE_READ_BYTES)
        core.receive_data(data)
        out = core.data_to_send()
        if out:
            stream.write(out)
            await stream.drain()
