"""Traffic counters as V2Ray 4.34 names and creates them (v2ray-core ``app/stats``,
``app/proxyman/inbound/always.go``, ``app/proxyman/outbound/handler.go``,
``app/dispatcher/default.go``).

A counter is a named int that only grows (or is reset by the API). Names are
``inbound>>>TAG>>>traffic>>>uplink``, ``outbound>>>TAG>>>traffic>>>downlink``,
``user>>>EMAIL>>>traffic>>>uplink`` and so on: the tag or email verbatim, case kept.

When each exists (4.34 exactly; see ``docs/api.md``):

* inbound counters: when the inbound handler is built (start or AddInbound), if the
  config has ``stats`` and ``policy.system.statsInbound{Up,Down}link`` and the tag is
  non-empty;
* outbound counters: likewise when the outbound handler is built
  (``statsOutbound*``); never for the API's own outbound;
* user counters: at the first dispatch of a session whose user has a non-empty
  email and whose level's policy has ``statsUser{Up,Down}link``.

Counters are never deleted (removing a user, inbound or outbound keeps them).

Hot path: a :class:`CountingStream` adds the length of each read batch and each
write to an int attribute (one add per batch, not per VMess chunk), in pull and
push mode alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from v2py.app.handler import Outbound
from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.transport import Listener, StreamHandler, Transport
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream, StreamLayer

__all__ = [
    "Counter",
    "CountingStream",
    "StatsManager",
    "StatsPolicy",
    "TrafficStats",
    "counter_name",
    "negotiated_alpn",
    "uncounted",
]

#: The separator V2Ray puts between the parts of a counter name.
SEPARATOR = ">>>"
UPLINK = "uplink"
DOWNLINK = "downlink"


def counter_name(kind: str, name: str, direction: str) -> str:
    """``kind>>>name>>>traffic>>>direction`` (kind: inbound, outbound or user)."""
    return f"{kind}{SEPARATOR}{name}{SEPARATOR}traffic{SEPARATOR}{direction}"


class Counter:
    """One int64 counter (``stats.Counter``): ``value`` is read and added to directly
    on the hot path; :meth:`set` swaps it (the API's reset)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def add(self, delta: int) -> int:
        """Add ``delta``; returns the new value."""
        self.value += delta
        return self.value

    def set(self, value: int) -> int:
        """Set the value; returns the previous one (GetStats/QueryStats ``reset``)."""
        old, self.value = self.value, value
        return old


class StatsManager:
    """The counters of one running instance (``stats.Manager``), by name.

    Created only when the config has a ``stats`` object; without it no counter ever
    exists (4.34 then uses a no-op manager).
    """

    def __init__(self) -> None:
        self._counters: dict[str, Counter] = {}

    def get_or_register(self, name: str) -> Counter:
        """The counter called ``name``, created at 0 if absent (4.34
        ``stats.GetOrRegisterCounter``)."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Counter(name)
        return counter

    def get(self, name: str) -> Counter | None:
        """The counter called exactly ``name``, or None."""
        return self._counters.get(name)

    def query(self, pattern: str, *, reset: bool = False) -> list[tuple[str, int]]:
        """(name, value) of every counter whose name contains ``pattern`` (a plain
        substring, not a regex; "" matches all). With ``reset`` each matched counter
        is set to 0 and its previous value returned. Order: registration order
        (4.34's is random; callers must not depend on it)."""
        found: list[tuple[str, int]] = []
        for name, counter in self._counters.items():
            if pattern in name:
                found.append((name, counter.set(0) if reset else counter.value))
        return found

    def __iter__(self) -> Iterator[Counter]:
        return iter(list(self._counters.values()))

    def __len__(self) -> int:
        return len(self._counters)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsPolicy:
    """Which counters a policy asks for (``policy.levels.N.statsUser*``,
    ``policy.system.statsInbound*`` / ``statsOutbound*``). A level missing from
    ``user_uplink`` / ``user_downlink`` has its switch off, as in 4.34."""

    inbound_uplink: bool = False
    inbound_downlink: bool = False
    outbound_uplink: bool = False
    outbound_downlink: bool = False
    user_uplink: frozenset[int] = field(default_factory=frozenset)
    user_downlink: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_levels(
        cls,
        levels: Mapping[int, tuple[bool, bool]],
        *,
        inbound: tuple[bool, bool] = (False, False),
        outbound: tuple[bool, bool] = (False, False),
    ) -> StatsPolicy:
        """Build from ``{level: (statsUserUplink, statsUserDownlink)}`` and the system
        (uplink, downlink) switches."""
        return cls(
            inbound_uplink=inbound[0],
            inbound_downlink=inbound[1],
            outbound_uplink=outbound[0],
            outbound_downlink=outbound[1],
            user_uplink=frozenset(lvl for lvl, (up, _) in levels.items() if up),
            user_downlink=frozenset(lvl for lvl, (_, down) in levels.items() if down),
        )


CounterPair = tuple[Counter | None, Counter | None]


class TrafficStats:
    """The stats hook of the handlers and the dispatcher: creates counters when 4.34
    would and wraps streams so that they count.

    ``manager`` None (no ``stats`` in the config) makes every method a no-op that
    returns its stream unchanged, so nothing is counted and nothing costs.
    """

    def __init__(self, manager: StatsManager | None, policy: StatsPolicy) -> None:
        self.manager = manager
        self.policy = policy
        self._users: dict[tuple[str, int], CounterPair] = {}

    @property
    def enabled(self) -> bool:
        """True when the config has a ``stats`` object."""
        return self.manager is not None

    def _pair(self, kind: str, name: str, up: bool, down: bool) -> CounterPair:
        manager = self.manager
        if manager is None or not name:
            return (None, None)
        return (
            manager.get_or_register(counter_name(kind, name, UPLINK)) if up else None,
            manager.get_or_register(counter_name(kind, name, DOWNLINK)) if down else None,
        )

    def inbound_counters(self, tag: str) -> CounterPair:
        """Create (at handler build) and return the inbound's (uplink, downlink)."""
        p = self.policy
        return self._pair("inbound", tag, p.inbound_uplink, p.inbound_downlink)

    def outbound_counters(self, tag: str) -> CounterPair:
        """Create (at handler build) and return the outbound's (uplink, downlink)."""
        p = self.policy
        return self._pair("outbound", tag, p.outbound_uplink, p.outbound_downlink)

    def user_counters(self, email: str, level: int) -> CounterPair:
        """The user's (uplink, downlink), created on first use (dispatch time)."""
        if self.manager is None or not email:
            return (None, None)
        key = (email, level)
        found = self._users.get(key)
        if found is None:
            p = self.policy
            found = self._pair("user", email, level in p.user_uplink, level in p.user_downlink)
            self._users[key] = found
        return found

    # -- the dispatcher's LinkStats hook --------------------------------------
    def wrap_stream(self, session: Session, stream: Stream) -> Stream:
        """The inbound side of a dispatched link, counting the user's traffic: bytes
        the outbound reads from it are uplink, bytes it writes back are downlink."""
        up, down = self.user_counters(session.user_email, session.level)
        return wrap(stream, read=up, write=down)

    def wrap_packets(self, session: Session, link: PacketLink) -> PacketLink:
        """``link`` counting each datagram's payload as the user's up/downlink."""
        up, down = self.user_counters(session.user_email, session.level)
        if up is None and down is None:
            return link
        return CountingPacketLink(link, up=up, down=down)

    # -- handler counters --------------------------------------------------------
    def inbound_transport(self, tag: str, transport: Transport) -> Transport:
        """``transport`` whose accepted streams count into the inbound's counters
        (created now: at handler build, as 4.34)."""
        up, down = self.inbound_counters(tag)
        if up is None and down is None:
            return transport
        return CountingTransport(transport, read=up, write=down)

    def direct_outbound(self, outbound: Outbound) -> Outbound:
        """``outbound`` (one that dials the destination itself, without a transport)
        counting into its counters; created now, at handler build."""
        up, down = self.outbound_counters(outbound.tag)
        if up is None and down is None:
            return outbound
        return CountingOutbound(outbound, up=up, down=down)

    def outbound_transport(self, tag: str, transport: Transport) -> Transport:
        """``transport`` whose dialed streams count into the outbound's counters:
        bytes written are uplink, bytes read are downlink."""
        up, down = self.outbound_counters(tag)
        if up is None and down is None:
            return transport
        return CountingTransport(transport, read=down, write=up)


class CountingOutbound:
    """An outbound whose own traffic is the link's (freedom: what it dials carries
    exactly the payload): bytes it reads from the link are uplink, bytes it writes
    back are downlink."""

    def __init__(self, inner: Outbound, *, up: Counter | None, down: Counter | None) -> None:
        self._inner = inner
        self.tag = inner.tag
        self._up = up
        self._down = down

    async def handle(self, session: Session, stream: Stream) -> None:
        await self._inner.handle(session, wrap(stream, read=self._up, write=self._down))

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        await self._inner.handle_packets(
            session, CountingPacketLink(link, up=self._up, down=self._down)
        )


class CountingPacketLink(PacketLink):
    """A view of ``inner`` counting datagrams: those the outbound receives are
    uplink, those it sends back are downlink."""

    def __init__(self, inner: PacketLink, *, up: Counter | None, down: Counter | None) -> None:
        super().__init__(inner.send)
        self._inner = inner
        self._up = up
        self._down = down

    def push(self, data: bytes) -> None:
        self._inner.push(data)

    async def recv(self) -> bytes | None:
        data = await self._inner.recv()
        if data is not None and self._up is not None:
            self._up.value += len(data)
        return data

    def send(self, data: bytes) -> None:
        if self._down is not None and not self._inner.closed:
            self._down.value += len(data)
        self._inner.send(data)

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return self._inner.closed


class CountingTransport:
    """A :class:`~v2py.transport.Transport` whose streams (accepted or dialed) count
    their reads into ``read`` and writes into ``write``."""

    def __init__(self, inner: Transport, *, read: Counter | None, write: Counter | None) -> None:
        self._inner = inner
        self._read = read
        self._write = write

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def listener_ends_sessions(self) -> bool:
        return self._inner.listener_ends_sessions

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        stream = await self._inner.dial(host, port, timeout=timeout)
        return CountingStream(stream, read=self._read, write=self._write)

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        read, write = self._read, self._write

        async def counted(stream: Stream) -> None:
            await handler(CountingStream(stream, read=read, write=write))

        return await self._inner.listen(host, port, counted, reuse_port=reuse_port)

    async def aclose(self) -> None:
        await self._inner.aclose()


def wrap(stream: Stream, *, read: Counter | None, write: Counter | None) -> Stream:
    """``stream`` counting the bytes read from it into ``read`` and written to it
    into ``write``; ``stream`` itself when both are None."""
    if read is None and write is None:
        return stream
    return CountingStream(stream, read=read, write=write)


class _CountingTarget:
    """A push target that counts what passes to the next one."""

    __slots__ = ("_counter", "_next")

    def __init__(self, counter: Counter, target: PushTarget) -> None:
        self._counter = counter
        self._next = target

    def pushed_data(self, data: bytes | bytearray) -> None:
        self._counter.value += len(data)
        self._next.pushed_data(data)

    def pushed_eof(self) -> None:
        self._next.pushed_eof()

    def pushed_error(self, exc: BaseException) -> None:
        self._next.pushed_error(exc)


class CountingStream(StreamLayer):
    """A :class:`Stream` over ``inner`` adding each read batch's length to ``read``
    and each write's length to ``write`` (either may be None). Push mode passes
    through, counting each pushed batch."""

    def __init__(self, inner: Stream, *, read: Counter | None, write: Counter | None) -> None:
        self._below = inner
        self._push: PushTarget | None = None
        self._read = read
        self._write = write

    @property
    def inner(self) -> Stream:
        """The wrapped stream."""
        below: Stream = self._below
        return below

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        below: Stream = self._below
        data = await below.read(max_bytes)
        if self._read is not None:
            self._read.value += len(data)
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._write is not None:
            self._write.value += len(data)
        self._below.write(data)

    def _below_target(self, target: PushTarget) -> PushTarget:
        if self._read is None:
            return target
        return _CountingTarget(self._read, target)


def counting_send(
    send: Callable[[bytes], None], counter: Counter | None
) -> Callable[[bytes], None]:
    """``send`` that first adds each datagram's length to ``counter`` (if any)."""
    if counter is None:
        return send

    def counted(data: bytes) -> None:
        counter.value += len(data)
        send(data)

    return counted


def uncounted(stream: object) -> object:
    """The connection behind any traffic counters (4.34 unwraps its
    ``StatCouterConnection`` the same way)."""
    while isinstance(stream, CountingStream):
        stream = stream.inner
    return stream


def negotiated_alpn(stream: object) -> str | None:
    """The ALPN protocol of ``stream`` when it is a TLS connection (seen through a
    traffic counter), else None."""
    alpn = getattr(uncounted(stream), "alpn", None)
    return alpn if isinstance(alpn, str) else None
