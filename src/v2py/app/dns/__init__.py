"""The built-in DNS client (v2ray-core 4.34 ``app/dns/dns.go``; config in
``config/routing.py`` :class:`~v2py.config.routing.DnsConfig`).

Used by the router (IPIfNonMatch / IPOnDemand) and by freedom's ``UseIP*``.
Lookup order, as 4.34's ``lookupIPInternal``:

1. a trailing dot is dropped;
2. static ``hosts`` (an IP answer ends the lookup; a domain answer replaces
   the name);
3. the servers whose ``domains`` match the name (most specific rule first),
   then the other servers in config order; a ``localhost`` server also takes
   local names (dotless, ``.local``, ``.lan``, ``.test``...) first;
4. the next server is asked only after a timeout or an ``expectIps``
   mismatch (for DoH and DoQ also after a failed request: 4.34 waits out the
   timeout then); any other failure ends the lookup.

Without a ``dns`` object, or without servers, the system resolver answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from v2py.app.dns.hosts import HostAnswer, StaticHosts
from v2py.app.dns.nameserver import (
    DirectChannel,
    DispatchedChannel,
    DnsLookupError,
    LocalNameServer,
    NameServer,
    PacketChannel,
    UdpNameServer,
    in_query_path,
)
from v2py.app.router import DomainSet, GeoSource, IpMatcher, build_ip_matcher
from v2py.config.routing import DnsConfig, DomainKind, DomainRule, GeoSiteRef

if TYPE_CHECKING:
    from v2py.app.handler import Dispatch

__all__ = ["DnsClient", "DnsLookupError", "HostAnswer", "StaticHosts", "build_dns_client"]

log = logging.getLogger(__name__)

#: Names a ``localhost`` server answers first (4.34 ``localTLDsAndDotlessDomains``).
LOCAL_NAMES = (
    DomainRule(DomainKind.REGEX, "^[^.]+$"),
    *(
        DomainRule(DomainKind.DOMAIN, name)
        for name in (
            "local",
            "localdomain",
            "localhost",
            "lan",
            "home.arpa",
            "example",
            "invalid",
            "test",
        )
    ),
)


class _Server:
    """A name server with its priority domains and expected IPs."""

    def __init__(
        self, server: NameServer, domains: Sequence[DomainSet], expect: IpMatcher | None
    ) -> None:
        self.server = server
        self.domains = tuple(s for s in domains if s.size)
        self.expect = expect

    def priority(self, domain: str) -> tuple[int, int] | None:
        """How specifically this server's ``domains`` match (lower: asked first), or None."""
        ranks = [r for r in (s.match_rank(domain) for s in self.domains) if r is not None]
        return min(ranks) if ranks else None

    async def query(self, domain: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...]:
        ips = await self.server.query(domain, ipv4=ipv4, ipv6=ipv6)
        if self.expect is None:
            return ips
        kept = tuple(ip for ip in ips if self.expect.matches((ip,)))
        if not kept:
            raise DnsLookupError(f"{self.server.name}: expectIPs not match", retry_next=True)
        return kept


class DnsClient:
    """Hosts plus name servers. ``lookup_ip`` returns packed IPs or raises DnsLookupError."""

    def __init__(
        self, *, hosts: StaticHosts | None, servers: Sequence[_Server], tag: str = ""
    ) -> None:
        self.hosts = hosts
        self._servers = tuple(servers) or (_Server(LocalNameServer(), (), None),)
        self.tag = tag

    @classmethod
    def system(cls) -> DnsClient:
        """The client used when there is no ``dns`` object: the system resolver."""
        return cls(hosts=None, servers=())

    def _ordered(self, domain: str) -> list[_Server]:
        ranked = [(s.priority(domain), i, s) for i, s in enumerate(self._servers)]
        first = sorted((r, i, s) for r, i, s in ranked if r is not None)
        rest = [s for r, _, s in ranked if r is None]
        return [s for _, _, s in first] + rest

    async def lookup_ip(
        self, domain: str, *, ipv4: bool = True, ipv6: bool = True
    ) -> tuple[bytes, ...]:
        """The IPs of ``domain`` (A and/or AAAA)."""
        if not domain:
            raise DnsLookupError("empty domain name")
        if in_query_path():
            # A connection of this client's own (a DoH server named by domain): 4.34
            # routes it without resolving (SkipDNSResolve); asking would loop.
            raise DnsLookupError(f"{domain}: not resolved for the DNS client's own connection")
        domain = domain.removesuffix(".")
        if self.hosts is not None:
            answer = self.hosts.lookup(domain, ipv4=ipv4, ipv6=ipv6)
            if answer is not None:
                if answer.domain is None:
                    if not answer.ips:
                        raise DnsLookupError(f"{domain}: empty response (static hosts)", empty=True)
                    return answer.ips
                log.debug("dns: domain replaced: %s -> %s", domain, answer.domain)
                domain = answer.domain
        errors: list[str] = []
        for server in self._ordered(domain):
            try:
                return await server.query(domain, ipv4=ipv4, ipv6=ipv6)
            except DnsLookupError as exc:
                log.debug("dns: failed to lookup %s at %s: %s", domain, server.server.name, exc)
                errors.append(str(exc))
                if not exc.retry_next:
                    raise
        raise DnsLookupError(f"{domain}: " + "; ".join(errors), retry_next=True)

    async def aclose(self) -> None:
        """Close every server's socket or link."""
        await asyncio.gather(*(s.server.aclose() for s in self._servers), return_exceptions=True)


def build_dns_client(
    config: DnsConfig,
    geo: GeoSource,
    *,
    dispatcher: Callable[[], Dispatch | None] | None = None,
) -> DnsClient:
    """Compile ``config``. UDP servers query through ``dispatcher()`` (routable by
    ``dns.tag``) when it gives one, else from a local socket.

    Raises ConfigError (from ``geo``) for a missing geo list.
    """
    base = config.path
    hosts = StaticHosts(config.hosts, geo, base) if config.hosts else None
    servers: list[_Server] = []
    for index, server in enumerate(config.servers):
        path = server.path or f"{base}.servers[{index}]"
        client_ip = server.client_ip or config.client_ip
        name_server: NameServer
        doh = server.doh
        if server.address == "localhost":
            name_server = LocalNameServer()
        elif doh is not None:
            from v2py.app.dns.doh import DohNameServer, direct_dialer, dispatched_dialer

            name_server = DohNameServer(
                doh,
                dial=direct_dialer
                if doh.local or dispatcher is None
                else dispatched_dialer(dispatcher, config.tag),
                per_lookup=not doh.local,
                client_ip=client_ip,
            )
        elif (doq := server.doq) is not None:
            from v2py.app.dns.doq import DoqNameServer

            name_server = DoqNameServer(doq, client_ip=client_ip)
        else:

            def channel(host: str, port: int, on_answer: Callable[[bytes], None]) -> PacketChannel:
                found = dispatcher() if dispatcher is not None else None
                if found is None:
                    return DirectChannel(host, port, on_answer)
                return DispatchedChannel(
                    host, port, on_answer, dispatcher=found, inbound_tag=config.tag
                )

            name_server = UdpNameServer(
                server.address, server.effective_port, channel=_late(channel), client_ip=client_ip
            )
        domain_sets: list[DomainSet] = []
        literals: list[DomainRule] = []
        for entry in server.domains:
            if isinstance(entry, GeoSiteRef):
                domain_sets.append(geo.domain_set(entry, f"{path}.{entry.key}"))
            else:
                literals.append(entry)
        if server.address == "localhost":
            literals.extend(LOCAL_NAMES)
        sets = [DomainSet(literals), *domain_sets] if literals else domain_sets
        expect = build_ip_matcher(server.expect_ips, geo, path) if server.expect_ips else None
        servers.append(_Server(name_server, sets, expect))
    return DnsClient(hosts=hosts, servers=servers, tag=config.tag)


def _late(
    make: Callable[[str, int, Callable[[bytes], None]], PacketChannel],
) -> Callable[[str, int, Callable[[bytes], None]], PacketChannel]:
    """A channel factory whose channel is made on first use (the dispatcher exists by then)."""

    def factory(host: str, port: int, on_answer: Callable[[bytes], None]) -> PacketChannel:
        return _LateChannel(lambda: make(host, port, on_answer))

    return factory


class _LateChannel:
    def __init__(self, make: Callable[[], PacketChannel]) -> None:
        self._make = make
        self._inner: PacketChannel | None = None

    def send(self, data: bytes) -> None:
        if self._inner is None:
            self._inner = self._make()
        self._inner.send(data)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
