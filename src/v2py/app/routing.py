"""The router shell: the dispatcher's ``Router`` hook over the pure
:class:`~v2py.app.router.Router` (v2ray-core 4.34 ``app/router/router.go``
``PickRoute``, ``features/routing/session/context.go``, ``features/routing/dns``).

It turns a :class:`~v2py.app.session.Session` into a routing context, asks
the core, and when the core answers :class:`~v2py.app.router.NeedIps`
resolves the domain with the built-in DNS (A and AAAA; a failed lookup means
no IPs, as 4.34) and asks again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from v2py.app.dns import DnsClient, DnsLookupError, build_dns_client
from v2py.app.router import GeoSource, NeedIps, Router, RoutingContext, build_router, normalize_ip
from v2py.app.session import Session
from v2py.common.net import pack_ip

if TYPE_CHECKING:
    from v2py.app.handler import Dispatch, Outbound
    from v2py.config.model import Config

__all__ = ["Routing", "SessionRouter", "build_routing", "routing_context"]

log = logging.getLogger(__name__)


def routing_context(session: Session) -> RoutingContext:
    """What the router sees of ``session`` (after sniffing)."""
    dest = session.destination
    target_ip: bytes | None = None
    domain = ""
    port = 0
    network = "tcp"
    if dest is not None:
        port = dest.port
        network = dest.network.value
        packed = pack_ip(dest.address)
        if packed is not None:
            target_ip = normalize_ip(packed)
        else:
            domain = dest.address
    source_ip: bytes | None = None
    source_port = 0
    if session.source is not None:
        host, source_port = session.source
        packed = pack_ip(host.partition("%")[0])
        source_ip = normalize_ip(packed) if packed is not None else None
    return RoutingContext(
        inbound_tag=session.inbound_tag,
        network=network,
        target_domain=domain,
        target_ip=target_ip,
        target_port=port,
        source_ip=source_ip,
        source_port=source_port,
        user=session.user_email,
        protocol=session.sniffed_protocol,
        attributes=session.attributes,
    )


class SessionRouter:
    """Implements the dispatcher's ``Router`` protocol.

    ``outbound_tags`` lists the tags of the outbounds that exist now (balancer
    candidates, so outbounds added later join); ``rng`` defaults to os.urandom.
    """

    def __init__(
        self,
        router: Router,
        dns: DnsClient,
        outbound_tags: Callable[[], Iterable[str]],
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.router = router
        self.dns = dns
        self._outbound_tags = outbound_tags
        self._balancers = router.has_balancers
        self._rng = rng

    async def pick_route(self, session: Session) -> str | None:
        """The outbound tag for ``session``, or None for the default outbound."""
        ctx = routing_context(session)
        tags = list(self._outbound_tags()) if self._balancers else []
        result = self.router.route(ctx, outbound_tags=tags, rng=self._rng)
        if isinstance(result, NeedIps):
            try:
                resolved = tuple(normalize_ip(ip) for ip in await self.dns.lookup_ip(result.domain))
            except DnsLookupError as exc:
                log.info("[%d] resolve ip for %s: %s", session.id, result.domain, exc)
                resolved = ()
            result = self.router.route(ctx, outbound_tags=tags, rng=self._rng, resolved=resolved)
            if isinstance(result, NeedIps):  # the core asks once per route; never twice
                return None
        if result.balancer is not None and result.tag is None:
            log.info("[%d] balancer %s has no outbound: default route", session.id, result.balancer)
        return result.tag


class Routing:
    """The compiled ``routing`` (None without rules) and ``dns`` (None without a
    ``dns`` object: the system resolver answers, as in 4.34) of one config."""

    def __init__(self, router: Router | None, dns: DnsClient | None) -> None:
        self.router = router
        self.dns = dns

    def session_router(self, outbounds: Iterable[Outbound]) -> SessionRouter | None:
        """The dispatcher's hook over ``outbounds`` (the live manager: balancers see
        outbounds added later); None routes everything to the default outbound."""
        if self.router is None:
            return None
        dns = self.dns if self.dns is not None else DnsClient.system()
        return SessionRouter(self.router, dns, lambda: (o.tag for o in outbounds))


def build_routing(
    config: Config, geo: GeoSource, dispatcher: Callable[[], Dispatch | None]
) -> Routing:
    """Compile ``config.routing`` then ``config.dns`` (4.34's order, so the same entry
    is blamed first). DNS queries go through ``dispatcher()`` once it exists.

    Raises ConfigError for a missing or broken geo list.
    """
    routing = config.routing
    router = build_router(routing, geo, routing.path) if routing.all_rules else None
    dns = (
        build_dns_client(config.dns, geo, dispatcher=dispatcher) if config.dns is not None else None
    )
    return Routing(router, dns)
