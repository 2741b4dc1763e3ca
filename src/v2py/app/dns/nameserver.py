"""Name servers of the built-in DNS (v2ray-core 4.34 ``app/dns/nameserver_udp.go``,
``nameserver_local.go``, ``dnscommon.go``).

* :class:`UdpNameServer`: classic DNS over UDP. Messages are built and parsed
  with dnspython. Queries go out through a :class:`PacketChannel`: in an
  instance, a datagram link dispatched like any other UDP session (inbound tag
  = ``dns.tag``), so routing rules decide which outbound carries them, as in
  4.34; or straight from a local socket (:class:`DirectChannel`). A and AAAA are
  asked separately; answers are cached per name and type for the smallest TTL
  of the answer (TTL 0 and the upper bound are 600 s, as 4.34). ``clientIp``
  adds the EDNS client-subnet option with 4.34's exact OPT record.
* DNS over HTTPS lives in ``doh.py`` and DNS over QUIC in ``doq.py`` (each imported
  only when configured); they share the message building and parsing
  (:func:`make_query`, :func:`parse_answer`) and 4.34's cache, question IDs and
  lookup of those two kinds (:class:`CachingNameServer`); DoH also the dispatched
  query path (:func:`query_session`, :func:`run_query_path`).
* :class:`LocalNameServer`: the system resolver (``getaddrinfo``), which is
  also what runs when there is no ``dns`` object at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.common.net import Destination, pack_ip, udp

if TYPE_CHECKING:
    import dns.message

    from v2py.app.handler import Dispatch

__all__ = [
    "CacheEntry",
    "CachingNameServer",
    "DirectChannel",
    "DnsAnswer",
    "DispatchedChannel",
    "DnsLookupError",
    "LocalNameServer",
    "NameServer",
    "PacketChannel",
    "UdpNameServer",
    "in_query_path",
    "make_query",
    "parse_answer",
    "query_session",
    "run_query_path",
]

log = logging.getLogger(__name__)

#: Per-server query deadline (4.34 ``Client.QueryIP``: 4 s).
QUERY_TIMEOUT_S = 4.0
#: Cache lifetime for TTL 0 and the upper bound of any answer (4.34 ``parseResponse``).
MAX_TTL_S = 600.0
#: EDNS as 4.34 sends it: payload 1350, OPT TTL from ``SetEDNS0(1350, 0xfe00, true)``.
EDNS_PAYLOAD = 1350
EDNS_FLAGS = 0xE000_8000
ECS_V4_BITS = 24
ECS_V6_BITS = 96
_RCODE_NOERROR = 0
_TYPE_A = 1
_TYPE_AAAA = 28

#: Set inside the tasks that carry the DNS client's own connections (4.34 marks
#: them ``SkipDNSResolve``): a lookup from there would ask the same server again.
_QUERY_PATH: contextvars.ContextVar[bool] = contextvars.ContextVar("v2py_dns_query_path")


class DnsLookupError(Exception):
    """A lookup failed. ``retry_next`` is True for timeouts and expectIPs mismatches,
    the only failures after which 4.34 asks the next server. ``rcode``: the server
    answered with that error code (4.34 ``RCodeError``); ``empty``: the name has no
    address of the asked family (4.34 ``ErrEmptyResponse``). The ``dns`` outbound
    answers those two and stays silent on any other failure."""

    def __init__(
        self,
        message: str,
        *,
        retry_next: bool = False,
        rcode: int | None = None,
        empty: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_next = retry_next
        self.rcode = rcode
        self.empty = empty


class NameServer(Protocol):
    """One configured server."""

    name: str

    async def query(self, domain: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...]:
        """Packed IPs for ``domain`` (no trailing dot). Raises DnsLookupError."""
        ...

    async def aclose(self) -> None: ...


class LocalNameServer:
    """The system resolver. As 4.34's ``localdns`` client it asks for every address
    and keeps the asked families: a name with addresses of the other family only is
    an empty response (not a failure), e.g. an AAAA question for an IPv4-only name."""

    name = "localhost"

    async def query(self, domain: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...]:
        from v2py.transport.hosts import static_addresses

        # Go's resolver answers /etc/hosts names itself (transport/hosts.py).
        addresses: list[str] = list(static_addresses(domain))
        if not addresses:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(
                    domain, None, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM
                )
            except (OSError, UnicodeError) as exc:
                raise DnsLookupError(f"system resolver: {exc}") from None
            addresses = [str(info[4][0]) for info in infos]
        found: dict[bytes, None] = {}
        for address in addresses:
            packed = pack_ip(address.partition("%")[0])
            if packed is not None and (ipv4 if len(packed) == 4 else ipv6):
                found[packed] = None
        if not found:
            raise DnsLookupError("system resolver: empty response", empty=True)
        return tuple(found)

    async def aclose(self) -> None:
        return None


class PacketChannel(Protocol):
    """A datagram path to one server: ``send`` a query; answers arrive at the
    ``on_answer`` callback given when the channel was made."""

    def send(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


ChannelFactory = Callable[[str, int, Callable[[bytes], None]], PacketChannel]


def make_query(
    fqdn: str, rdtype: int, client_ip: str | None, *, query_id: int | None = None
) -> dns.message.QueryMessage:
    """One question as 4.34 ``buildReqMsgs`` asks it: RD set; with ``client_ip``, the
    EDNS client-subnet OPT record of ``genEDNS0Options`` (/24 or /96)."""
    import dns.edns
    import dns.message
    import dns.rdatatype

    kind = dns.rdatatype.RdataType.make(rdtype)
    if client_ip is None:
        return dns.message.make_query(fqdn, kind, id=query_id)
    bits = ECS_V4_BITS if ":" not in client_ip else ECS_V6_BITS
    option = dns.edns.ECSOption(client_ip, bits)
    return dns.message.make_query(
        fqdn,
        kind,
        use_edns=0,
        ednsflags=EDNS_FLAGS,
        payload=EDNS_PAYLOAD,
        options=[option],
        id=query_id,
    )


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One response as 4.34 ``parseResponse`` reads it: the A/AAAA addresses of the
    answer section and its smallest TTL (0 counts as 600; at most 600 s)."""

    id: int
    ips: tuple[bytes, ...]
    ttl: float
    rcode: int


def parse_answer(data: bytes) -> DnsAnswer:
    """Parse a DNS response. Raises ValueError when it is not one."""
    import dns.exception
    import dns.message
    import dns.rdatatype

    try:
        message = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"bad DNS message: {exc}") from None
    ttl = MAX_TTL_S
    ips: list[bytes] = []
    for rrset in message.answer:
        # Every answer record (CNAMEs too) bounds the cache time, as in 4.34.
        ttl = min(ttl, float(rrset.ttl) or MAX_TTL_S)
        if rrset.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            continue
        for rdata in rrset:
            packed = pack_ip(rdata.address)
            if packed is not None:
                ips.append(packed)
    return DnsAnswer(message.id, tuple(ips), ttl, int(message.rcode()))


def query_session(tag: str, destination: Destination, *, protocol: str = "") -> Session:
    """The session of one DNS query path: inbound tag ``dns.tag`` (4.34 puts the
    DNS component's inbound into the context), ``protocol`` as its ``Content``."""
    session = Session(inbound_tag=tag, source=None, destination=destination, internal=True)
    session.sniffed_protocol = protocol
    return session


def in_query_path() -> bool:
    """True inside a task started by :func:`run_query_path`."""
    return _QUERY_PATH.get(False)


def run_query_path(
    run: Callable[[], Awaitable[None]], destination: Destination
) -> asyncio.Task[None]:
    """Start ``run()`` (the dispatch of a query path) as a task marked as the DNS
    client's own (:func:`in_query_path`); failures are logged, never raised."""

    async def guarded() -> None:
        try:
            await run()
        except (OSError, ValueError) as exc:
            log.info("dns: query path to %s failed: %s", destination, exc)
        except Exception:  # a broken outbound must not break DNS for everyone else
            log.exception("dns: query path to %s failed", destination)

    context = contextvars.copy_context()
    context.run(_QUERY_PATH.set, True)
    return asyncio.get_running_loop().create_task(guarded(), context=context)


class DirectChannel:
    """Queries from a local UDP socket, connected to the server (made on first send)."""

    def __init__(self, host: str, port: int, on_answer: Callable[[bytes], None]) -> None:
        self._address = (host, port)
        self._on_answer = on_answer
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []

    def send(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.sendto(data)
            return
        self._pending.append(data)
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        on_answer = self._on_answer

        class _Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
                on_answer(data)

            def error_received(self, exc: Exception) -> None:
                log.debug("dns: %s", exc)

        try:
            transport, _ = await loop.create_datagram_endpoint(_Proto, remote_addr=self._address)
        except OSError as exc:
            log.info("dns: cannot reach %s:%d: %s", *self._address, exc)
            self._pending.clear()
            self._opening = None
            return
        self._transport = transport
        pending, self._pending = self._pending, []
        for data in pending:
            transport.sendto(data)

    async def aclose(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class DispatchedChannel:
    """Queries as one UDP session through the dispatcher (4.34 ``udp.Dispatcher``):
    ``inbound_tag`` is ``dns.tag``, so routing rules can send DNS anywhere."""

    def __init__(
        self,
        host: str,
        port: int,
        on_answer: Callable[[bytes], None],
        *,
        dispatcher: Dispatch,
        inbound_tag: str,
    ) -> None:
        self._destination = udp(host, port)
        self._on_answer = on_answer
        self._dispatcher = dispatcher
        self._tag = inbound_tag
        self._link: PacketLink | None = None
        self._task: asyncio.Task[None] | None = None

    def send(self, data: bytes) -> None:
        link = self._link
        if link is None or link.closed or self._task is None or self._task.done():
            link = PacketLink(self._on_answer)
            session = query_session(self._tag, self._destination)
            self._link = link
            self._task = run_query_path(lambda: self._run(session, link), self._destination)
        link.push(data)

    async def _run(self, session: Session, link: PacketLink) -> None:
        try:
            await self._dispatcher.dispatch_packets(session, link)
        finally:
            link.close()

    async def aclose(self) -> None:
        if self._link is not None:
            self._link.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(slots=True)
class _Record:
    expires: float
    ips: tuple[bytes, ...]
    rcode: int


class UdpNameServer:
    """Classic DNS to ``host:port`` with a TTL cache.

    ``channel`` makes the datagram path (see :class:`PacketChannel`);
    ``client_ip`` (text) adds EDNS client-subnet; ``clock`` is the loop's time.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        channel: ChannelFactory,
        client_ip: str | None = None,
        timeout: float = QUERY_TIMEOUT_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = f"UDP:{host}:{port}"
        self._channel = channel(host, port, self._answer)
        self._client_ip = client_ip
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[tuple[str, int], _Record] = {}
        self._waiting: dict[int, tuple[str, int, asyncio.Future[_Record]]] = {}

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def query(self, domain: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...]:
        """A then AAAA (as enabled) for ``domain``; cached answers are used until they expire."""
        import dns.rdatatype

        fqdn = domain if domain.endswith(".") else domain + "."
        kinds = [t for t, on in ((dns.rdatatype.A, ipv4), (dns.rdatatype.AAAA, ipv6)) if on]
        try:
            async with asyncio.timeout(self._timeout):
                records = await asyncio.gather(*(self._record(fqdn, int(k)) for k in kinds))
        except TimeoutError:
            raise DnsLookupError(f"{self.name}: timeout", retry_next=True) from None
        ips = tuple(ip for record in records for ip in record.ips)
        if ips:
            return ips
        failed = next((r.rcode for r in records if r.rcode != _RCODE_NOERROR), None)
        if failed is not None:
            raise DnsLookupError(f"{self.name}: rcode {failed}", rcode=failed)
        raise DnsLookupError(f"{self.name}: empty response", empty=True)

    async def _record(self, fqdn: str, rdtype: int) -> _Record:
        cached = self._cache.get((fqdn, rdtype))
        if cached is not None and cached.expires > self._now():
            return cached
        query = make_query(fqdn, rdtype, self._client_ip)
        future: asyncio.Future[_Record] = asyncio.get_running_loop().create_future()
        query_id = query.id
        while query_id in self._waiting:
            query.id = query_id = (query_id + 1) & 0xFFFF
        self._waiting[query_id] = (fqdn, rdtype, future)
        try:
            self._channel.send(query.to_wire())
            return await future
        finally:
            self._waiting.pop(query_id, None)

    def _answer(self, data: bytes) -> None:
        try:
            answer = parse_answer(data)
        except ValueError as exc:
            log.debug("%s: bad answer: %s", self.name, exc)
            return
        waiting = self._waiting.get(answer.id)
        if waiting is None:
            return
        fqdn, rdtype, future = waiting
        record = _Record(self._now() + answer.ttl, answer.ips, answer.rcode)
        self._cache[(fqdn, rdtype)] = record
        if not future.done():
            future.set_result(record)

    async def aclose(self) -> None:
        for _, _, future in self._waiting.values():
            if not future.done():
                future.cancel()
        await self._channel.aclose()


# --------------------------------------------------------------------------
# what 4.34's DoH and DoQ servers share


@dataclass(slots=True)
class CacheEntry:
    """One cached answer of one type: until when, its addresses, its rcode."""

    expires: float
    ips: tuple[bytes, ...]
    rcode: int


class CachingNameServer:
    """The part 4.34's DoH and DoQ name servers have in common (``nameserver_doh.go`` and
    ``nameserver_quic.go`` carry the same code): question IDs counting 1, 2, ... per
    server (``newReqID``), A and AAAA asked at once under one deadline, and the answers
    cached per name for their TTL (``updateIP`` / ``findIPsForDomain``). A subclass sends
    the questions (:meth:`_ask_all`) and hands each answer to :meth:`_remember`.

    ``clock`` is the loop's time; ``timeout`` the lookup's deadline (4.34 ``QueryIP``'s
    context).
    """

    def __init__(
        self,
        name: str,
        *,
        client_ip: str | None,
        timeout: float,
        clock: Callable[[], float] | None,
    ) -> None:
        self.name = name
        self._client_ip = client_ip
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[str, dict[int, CacheEntry]] = {}
        self._last_id = 0

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _next_id(self) -> int:
        self._last_id = (self._last_id + 1) & 0xFFFF
        return self._last_id

    def _question(self, fqdn: str, rdtype: int, query_id: int) -> bytes:
        """The packed question (4.34 ``buildReqMsgs`` with ``genEDNS0Options``)."""
        return make_query(fqdn, rdtype, self._client_ip, query_id=query_id).to_wire()

    def cached(self, fqdn: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...] | None:
        """The cached answer (4.34 ``findIPsForDomain``): AAAA then A addresses; None
        when the name must be asked. Raises DnsLookupError for a cached empty answer."""
        entries = self._cache.get(fqdn)
        if entries is None:
            return None
        now = self._now()
        for kind in [k for k, e in entries.items() if e.rcode != _RCODE_NOERROR]:
            if entries[kind].expires <= now:  # 4.34's minutely cleanup drops these
                del entries[kind]
        ips: list[bytes] = []
        expired = False
        for kind, wanted in ((_TYPE_AAAA, ipv6), (_TYPE_A, ipv4)):
            entry = entries.get(kind)
            if wanted and entry is not None and entry.rcode == _RCODE_NOERROR:
                if entry.expires <= now:
                    expired = True
                else:
                    ips.extend(entry.ips)
        if ips:
            return tuple(ips)
        if expired:
            return None
        # 4.34 keeps the last failed kind's rcode (A then AAAA).
        failed = [
            entry.rcode
            for kind, wanted in ((_TYPE_A, ipv4), (_TYPE_AAAA, ipv6))
            if wanted and (entry := entries.get(kind)) is not None
        ]
        if failed:
            rcode = next((r for r in reversed(failed) if r != _RCODE_NOERROR), None)
            if rcode is not None:
                raise DnsLookupError(f"{self.name}: rcode {rcode}", rcode=rcode)
            raise DnsLookupError(f"{self.name}: empty response", empty=True)
        return None

    def _remember(self, fqdn: str, rdtype: int, answer: DnsAnswer) -> None:
        """Cache ``answer`` to the ``rdtype`` question (an AAAA answer keeps its IPv6
        addresses only, as 4.34 ``updateIP``)."""
        ips = answer.ips
        if rdtype == _TYPE_AAAA:
            ips = tuple(ip for ip in ips if len(ip) == 16)
        self._cache.setdefault(fqdn, {})[rdtype] = CacheEntry(
            self._now() + answer.ttl, ips, answer.rcode
        )
        log.info("%s got answer: %s %s -> %d IPs", self.name, fqdn, rdtype, len(ips))

    async def query(self, domain: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...]:
        """A and/or AAAA of ``domain`` (cached until the answer's TTL runs out)."""
        fqdn = domain if domain.endswith(".") else domain + "."
        found = self.cached(fqdn, ipv4=ipv4, ipv6=ipv6)
        if found is not None:
            return found
        questions = [(k, self._next_id()) for k, on in ((_TYPE_A, ipv4), (_TYPE_AAAA, ipv6)) if on]
        try:
            async with asyncio.timeout(self._timeout):
                await self._ask_all(fqdn, questions)
        except TimeoutError:
            raise DnsLookupError(f"{self.name}: timeout", retry_next=True) from None
        found = self.cached(fqdn, ipv4=ipv4, ipv6=ipv6)
        if found is None:
            raise DnsLookupError(f"{self.name}: no answer", retry_next=True)
        return found

    async def _ask_all(self, fqdn: str, questions: list[tuple[int, int]]) -> None:
        """Ask each ``(rdtype, query_id)`` question about ``fqdn`` and :meth:`_remember`
        the answers. Raises DnsLookupError (``retry_next``) when the server failed."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None
