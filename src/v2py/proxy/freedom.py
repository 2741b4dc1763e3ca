"""The ``freedom`` outbound: connect directly to the destination (spec
socks-sniffing-freedom.md section 3; v2ray-core 4.34 ``proxy/freedom/freedom.go``).

* ``redirect`` replaces the address (unless empty or 0.0.0.0) and/or the port
  (unless 0) of every destination.
* ``domainStrategy`` UseIP/UseIPv4/UseIPv6 resolve a domain first and dial a random
  result; a failed or empty lookup falls back to dialling the domain as is. The
  lookup goes to the built-in DNS when the config has a ``dns`` object (``resolver``),
  else to the system resolver, as 4.34 (``proxy/freedom`` ``resolveIP``).
* Dialling makes up to 5 attempts, waiting 0/100/200/300/400 ms before them (4.34's
  ``retry.ExponentialBackoff(5, 100)``); with UseIP* each attempt resolves the domain
  again and picks one of its addresses at random, as 4.34's does.
* ``streamSettings.sockopt`` (mark, tcpFastOpen, tproxy) is set on every dialled
  socket and ``sendThrough`` is bound as its local address, as 4.34's system dialer
  does (UDP sockets get the listener-side options, as 4.34's ``ListenSystemPacket``).
* TCP is relayed with the level's policy; UDP uses one connected socket per link,
  reading at most 2048 bytes per response datagram, until the link closes or idles
  out (connIdle).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from v2py.app.dial_guard import dial_watching
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable
from v2py.app.relay import ActivityTimer, relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, ip_text, is_ip
from v2py.errors import LocalProtocolError
from v2py.transport.stream import Stream
from v2py.transport.tcp import dial_tcp

if TYPE_CHECKING:
    from v2py.app.chain import PacketChannel
    from v2py.transport import Transport
    from v2py.transport.sockopt import SocketOptions

__all__ = [
    "DomainStrategy",
    "FreedomOutbound",
    "Resolver",
]

log = logging.getLogger(__name__)

#: Delays before each dial attempt (seconds).
DIAL_DELAYS_S = (0.0, 0.1, 0.2, 0.3, 0.4)
#: Per-attempt connect timeout (Go's system dialer in v2ray uses 16 s).
DIAL_TIMEOUT_S = 16.0
#: 4.34 reads UDP responses into a 2048-byte buffer; longer datagrams are truncated.
UDP_RESPONSE_MAX_BYTES = 2048


class Resolver(Protocol):
    """The built-in DNS as freedom uses it (``v2py.app.dns.DnsClient``)."""

    async def lookup_ip(
        self, domain: str, *, ipv4: bool = True, ipv6: bool = True
    ) -> tuple[bytes, ...]:
        """Packed IPs of ``domain``; raises an Exception subclass when the lookup fails."""
        ...


class DomainStrategy(enum.Enum):
    """How freedom turns a domain destination into an address."""

    AS_IS = "AsIs"
    USE_IP = "UseIP"
    USE_IPV4 = "UseIPv4"
    USE_IPV6 = "UseIPv6"


_FAMILY = {
    DomainStrategy.USE_IP: socket.AF_UNSPEC,
    DomainStrategy.USE_IPV4: socket.AF_INET,
    DomainStrategy.USE_IPV6: socket.AF_INET6,
}


class FreedomOutbound:
    """Direct connections. ``redirect`` is (address, port) with None for "keep" (the
    config's ``FreedomSettings.redirect_override``). ``socket_options`` and ``source``
    (``sendThrough``) apply to every dialled socket; ``transport`` (when the
    ``streamSettings`` ask for more than plain TCP) carries the TCP connections.
    ``dial_delays`` and ``rng`` exist for tests."""

    def __init__(
        self,
        *,
        tag: str,
        domain_strategy: DomainStrategy = DomainStrategy.AS_IS,
        redirect: tuple[str | None, int | None] = (None, None),
        user_level: int = 0,
        policy: PolicyTable,
        dial_delays: Sequence[float] = DIAL_DELAYS_S,
        dial_timeout: float = DIAL_TIMEOUT_S,
        rng: random.Random | None = None,
        resolver: Resolver | None = None,
        socket_options: SocketOptions | None = None,
        source: str | None = None,
        transport: Transport | None = None,
        open_packets: Callable[[str, int], Awaitable[PacketChannel]] | None = None,
    ) -> None:
        self.tag = tag
        #: TCP destinations are dialled through this (``streamSettings`` other than
        #: plain TCP), else directly with ``socket_options`` and ``source``.
        self._transport = transport
        #: Under ``proxySettings``: UDP goes through the chained outbound.
        self._open_packets = open_packets
        self._options = socket_options
        self._source = source
        self._resolver = resolver
        self._strategy = domain_strategy
        self._redirect = redirect
        self._user_level = user_level
        self._policy = policy
        self._dial_delays = tuple(dial_delays)
        if not self._dial_delays:
            raise ValueError("dial_delays must not be empty")
        self._dial_timeout = dial_timeout
        self._rng = rng or random.Random()

    def target(self, destination: Destination) -> Destination:
        """``destination`` after ``redirect``."""
        address, port = self._redirect
        if address is not None:
            destination = destination.with_address(address)
        if port is not None:
            destination = Destination(destination.network, destination.address, port)
        return destination

    async def _resolve(self, host: str, port: int, kind: int) -> str:
        if self._strategy is DomainStrategy.AS_IS or is_ip(host):
            return host
        if self._resolver is not None:
            try:
                found = await self._resolver.lookup_ip(
                    host,
                    ipv4=self._strategy is not DomainStrategy.USE_IPV6,
                    ipv6=self._strategy is not DomainStrategy.USE_IPV4,
                )
            except Exception as exc:  # any failed lookup: dial the domain as is (4.34)
                log.info("freedom: failed to get IP address for domain %s: %s", host, exc)
                return host
            return ip_text(self._rng.choice(found)) if found else host
        from v2py.transport.hosts import static_addresses

        # Go's resolver answers /etc/hosts names itself (transport/hosts.py).
        family = _FAMILY[self._strategy]
        static = {
            a
            for a in static_addresses(host)
            if family == socket.AF_UNSPEC or (":" in a) == (family == socket.AF_INET6)
        }
        if static:
            return self._rng.choice(sorted(static))
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=kind)
        except (OSError, UnicodeError):
            return host
        addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            return host
        return self._rng.choice(addresses)

    async def handle(self, session: Session, stream: Stream) -> None:
        """Dial the destination and relay until done. Raises OSError when every dial
        attempt fails; never closes ``stream``."""
        if session.destination is None:
            raise LocalProtocolError("freedom: session has no destination")
        slog = session_logger(log, session)
        dest = self.target(session.destination)

        async def connect() -> tuple[Stream, str]:
            return await self._dial(dest.address, dest.port)

        # The client is watched while resolving and dialing, as 4.34's inbound keeps
        # copying and timing it (app/dial_guard.py): a client that leaves ends the dial.
        (remote, host), stream = await dial_watching(
            stream,
            connect,
            self._policy.for_level(session.level),
            discard=lambda dialed: dialed[0].close(),
        )
        slog.debug("freedom: connected to %s (%s)", dest, host)
        try:
            # The inbound's timer runs at its level, freedom's at userLevel (4.34).
            timeouts = self._policy.for_levels(session.level, self._user_level)
            ok = await relay(stream, remote, timeouts)
            if not ok:
                slog.debug("freedom: connection to %s timed out", dest)
        finally:
            remote.close()

    async def _dial(self, address: str, port: int) -> tuple[Stream, str]:
        """Up to 5 attempts; each resolves ``address`` again (UseIP*) and dials one of
        its addresses, as 4.34's retry loop does (a dead address of several is not
        dialled five times)."""
        last: OSError | None = None
        for delay in self._dial_delays:
            if delay > 0:
                await asyncio.sleep(delay)
            host = await self._resolve(address, port, socket.SOCK_STREAM)
            try:
                if self._transport is not None:
                    stream = await self._transport.dial(host, port, timeout=self._dial_timeout)
                else:
                    stream = await dial_tcp(
                        host,
                        port,
                        timeout=self._dial_timeout,
                        options=self._options,
                        source=self._source,
                    )
                return stream, host
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """Relay the link's datagrams through one connected UDP socket (or, under
        ``proxySettings``, the chained outbound) until the link closes or nothing moved
        for connIdle seconds."""
        if session.destination is None:
            raise LocalProtocolError("freedom: session has no destination")
        dest = self.target(session.destination)
        host = await self._resolve(dest.address, dest.port, socket.SOCK_DGRAM)
        task = asyncio.current_task()
        assert task is not None
        timer = ActivityTimer(task, self._policy.for_level(self._user_level).conn_idle)
        closers: list[Callable[[], object]] = []
        try:
            if self._open_packets is not None:
                send = await self._chained_sender(link, host, dest.port, timer, closers)
            else:
                send = await self._socket_sender(link, host, dest.port, timer, closers)
            while (data := await link.recv()) is not None:
                timer.touch()
                send(data)
        except asyncio.CancelledError:
            if timer.expired:
                task.uncancel()
                return
            raise
        finally:
            timer.cancel()
            for close in closers:
                close()

    async def _socket_sender(
        self,
        link: PacketLink,
        host: str,
        port: int,
        timer: ActivityTimer,
        closers: list[Callable[[], object]],
    ) -> Callable[[bytes], object]:
        """A connected UDP socket whose answers go back on ``link``; its close goes on
        ``closers``."""
        loop = asyncio.get_running_loop()
        if self._options is None and self._source is None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _FreedomDatagram(link, timer), remote_addr=(host, port)
            )
        else:
            sock = await self._udp_socket(host, port)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _FreedomDatagram(link, timer), sock=sock
            )
        closers.append(transport.close)
        return transport.sendto

    async def _chained_sender(
        self,
        link: PacketLink,
        host: str,
        port: int,
        timer: ActivityTimer,
        closers: list[Callable[[], object]],
    ) -> Callable[[bytes], object]:
        """A channel through the chained outbound (``proxySettings``) whose answers go
        back on ``link``; its end goes on ``closers``."""
        assert self._open_packets is not None
        channel = await self._open_packets(host, port)

        async def answers() -> None:
            while (data := await channel.recv()) is not None:
                timer.touch()
                link.send(data)

        downlink = asyncio.get_running_loop().create_task(answers())
        closers += (channel.close, downlink.cancel)
        return channel.send

    async def _udp_socket(self, host: str, port: int) -> socket.socket:
        """A UDP socket with the options set, bound to ``source`` (or any address of
        the destination's family), connected to ``host:port``."""
        from v2py.transport.sockopt import connected_udp_socket

        return await connected_udp_socket(host, port, source=self._source, options=self._options)


class _FreedomDatagram(asyncio.DatagramProtocol):
    def __init__(self, link: PacketLink, timer: ActivityTimer) -> None:
        self._link = link
        self._timer = timer

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._timer.touch()
        self._link.send(data[:UDP_RESPONSE_MAX_BYTES])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket; UDP just loses the datagram.
        log.debug("freedom udp: %s", exc)
