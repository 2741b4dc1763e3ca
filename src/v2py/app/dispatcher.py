"""Links an inbound session to an outbound (v2ray-core app/dispatcher/default.go).

Sniffing happens here: up to two waits of 100 ms for the client's first bytes,
then HTTP Host / TLS SNI may replace the destination address (port kept). Then
the router names an outbound tag (no router, no match or an unknown tag: the
default outbound, as 4.34's ``routedDispatch``), the stats hook may wrap the
link in counters, and the outbound from the outbound manager carries it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from v2py.app.handler import Outbound
from v2py.app.log import ACCESS_ACCEPTED, AccessMessage, access_enabled, log_access
from v2py.app.packet import PacketLink
from v2py.app.proxyman import OutboundManager
from v2py.app.session import Session
from v2py.common.net import Destination, Network
from v2py.protocol.sniff import SniffStatus, sniff
from v2py.transport.stream import PrefixedStream, Stream

log = logging.getLogger(__name__)


SNIFF_ATTEMPTS = 2
SNIFF_WAIT_S = 0.1
SNIFF_MAX_BYTES = 2048


async def sniff_stream(session: Session, stream: Stream) -> Stream:
    """Read the client's first bytes, maybe override ``session.destination``; return a
    stream that replays those bytes."""
    buf = b""
    eof = False
    for _ in range(SNIFF_ATTEMPTS):
        try:
            async with asyncio.timeout(SNIFF_WAIT_S):
                while True:
                    data = await stream.read(SNIFF_MAX_BYTES)
                    if not data:
                        eof = True
                        break
                    buf += data
                    result = sniff(buf[:SNIFF_MAX_BYTES])
                    if result.status is not SniffStatus.NEED_MORE or len(buf) >= SNIFF_MAX_BYTES:
                        break
        except TimeoutError:
            pass
        if eof or buf:
            break
    if buf:
        result = sniff(buf[:SNIFF_MAX_BYTES])
        if result.status is SniffStatus.FOUND:
            session.sniffed_protocol = result.protocol
            dest = session.destination
            if (
                result.domain
                and dest is not None
                and any(result.protocol.startswith(p) for p in session.sniffing.dest_override)
            ):
                session.destination = dest.with_address(result.domain)
                log.info("[%d] sniffed domain: %s", session.id, result.domain)
    return PrefixedStream(buf, stream, eof=eof)


class Router(Protocol):
    """What the dispatcher asks for a route (``features/routing.Router``)."""

    async def pick_route(self, session: Session) -> str | None:
        """The outbound tag for ``session``; None when no rule matches (default route)."""
        ...


class LinkStats(Protocol):
    """Traffic counters around a dispatched link (``app/dispatcher`` ``getLink``)."""

    def wrap_stream(self, session: Session, stream: Stream) -> Stream:
        """``stream`` itself, or a stream counting what passes through it."""
        ...

    def wrap_packets(self, session: Session, link: PacketLink) -> PacketLink:
        """``link`` itself, or a link counting what passes through it."""
        ...


class Dispatcher:
    """Sniffs, routes and hands each session to an outbound (``DefaultDispatcher``).

    ``router`` None routes everything to the default outbound; ``stats`` None
    counts nothing.
    """

    def __init__(
        self,
        outbounds: OutboundManager,
        *,
        router: Router | None = None,
        stats: LinkStats | None = None,
    ) -> None:
        self.outbounds = outbounds
        self.router = router
        self.stats = stats

    async def pick(self, session: Session) -> Outbound | None:
        """The outbound for ``session``: the routed tag if it exists, else the default."""
        if self.router is not None:
            tag = await self.router.pick_route(session)
            if tag is not None:
                handler = self.outbounds.get(tag)
                if handler is not None:
                    log.debug(
                        "[%d] taking detour [%s] for [%s]", session.id, tag, session.destination
                    )
                    return handler
                log.warning("[%d] non existing tag: %r", session.id, tag)
        return self.outbounds.default

    def _log_access(
        self, session: Session, outbound: Outbound, destination: Destination | None
    ) -> None:
        """4.34's access line: ``FROM accepted TO [OUTBOUND TAG] email: E`` with the
        destination the inbound received (before sniffing). None for the core's own
        (``internal``) sessions: 4.34 logs only what an inbound accepted."""
        if session.internal or not access_enabled():
            return
        msg = session.access or AccessMessage(
            session.source_text(), str(destination or ""), session.user_email
        )
        log_access(
            msg.source, ACCESS_ACCEPTED, msg.destination, detour=outbound.tag, email=msg.email
        )

    async def dispatch(self, session: Session, stream: Stream) -> None:
        """Sniff if enabled, route, then hand the stream to the chosen outbound."""
        dest = session.destination
        if dest is not None and dest.network is Network.TCP and session.sniffing.enabled:
            stream = await sniff_stream(session, stream)
        outbound = await self.pick(session)
        if outbound is None:
            log.warning("[%d] default outbound handler not exist", session.id)
            return
        self._log_access(session, outbound, dest)
        if self.stats is not None:
            stream = self.stats.wrap_stream(session, stream)
        await outbound.handle(session, stream)

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None:
        """UDP is never sniffed; route and hand the link to the chosen outbound."""
        outbound = await self.pick(session)
        if outbound is None:
            log.warning("[%d] default outbound handler not exist", session.id)
            return
        self._log_access(session, outbound, session.destination)
        if self.stats is not None:
            link = self.stats.wrap_packets(session, link)
        await outbound.handle_packets(session, link)
