"""The ``dns`` outbound (v2ray-core 4.34 ``proxy/dns/dns.go``): DNS queries routed to it
are answered by the built-in DNS (the ``dns`` object; the system resolver without one).

Typical use: a dokodemo-door on port 53 (or a transparent proxy's port-53 rule)
routed to ``{"protocol": "dns"}``, so that clients' lookups go through the same
``hosts``, name servers and ``domains`` rules as v2py's own.

As in 4.34:

* messages are length-prefixed on a TCP session and one per datagram on UDP
  (``protocol/dns_proxy.py``);
* an A or AAAA question is looked up with the built-in DNS and answered at once
  (each in its own task, so answers may come out of order). The answer carries the
  addresses with TTL 600; a name without addresses of that family is an empty
  NOERROR answer; a server's error code is answered with that code; any other
  failure (a timeout, a refused system lookup) gets no answer;
* every other message (other types, unparseable ones) is forwarded unchanged to
  the session's destination — or to ``settings.network`` / ``address`` / ``port``
  where given — over one connection dialled on the first such message, and what
  comes back is relayed to the client. The connection is dialled as freedom would
  dial it (``streamSettings``, ``sockopt``, ``sendThrough``, ``proxySettings``);
  its bytes are the outbound's traffic counters;
* queries that the built-in DNS itself sends (sessions from inbound tag
  ``dns.tag``, 4.34's ``IsOwnLink``) are all forwarded: answering them here would loop.

Differences (4.34 has no bound; v2py must not let one client take all memory): at
most :data:`MAX_PENDING_LOOKUPS` lookups of one session wait at a time, further IP
questions are dropped (clients retry). When the forwarded connection has ended, the
next forwarded message dials a new one (4.34 reports a write error and ends the
session); a failed dial is logged and its message dropped, as in 4.34.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from v2py.app.chain import PipeStream, stream_pair
from v2py.app.dns import DnsClient, DnsLookupError
from v2py.app.handler import Outbound
from v2py.app.packet import PacketLink
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, Network
from v2py.errors import LocalProtocolError, RemoteProtocolError
from v2py.protocol.dns_proxy import (
    TYPE_A,
    IpQuery,
    TcpMessages,
    answer,
    frame_tcp,
    parse_ip_query,
)
from v2py.transport.multiplex import cancel_and_wait
from v2py.transport.stream import Stream

__all__ = ["MAX_PENDING_LOOKUPS", "DnsOutbound"]

log = logging.getLogger(__name__)

#: Lookups of one session that may wait at once; more IP questions are dropped.
MAX_PENDING_LOOKUPS = 256
#: How long closing waits for the forwarded connection's task after cancelling it.
CLOSE_WAIT_S = 2.0


class DnsOutbound:
    """Answers A/AAAA questions with ``client``; forwards the rest through ``forward``
    (a freedom outbound with this outbound's dialing settings). ``network``,
    ``address`` and ``port`` (None: keep) replace the forwarded destination's parts."""

    def __init__(
        self,
        *,
        tag: str,
        client: DnsClient,
        forward: Outbound,
        network: Network | None = None,
        address: str | None = None,
        port: int | None = None,
    ) -> None:
        self.tag = tag
        self._client = client
        self._forward = forward
        self._network = network
        self._address = address
        self._port = port

    def target(self, destination: Destination) -> Destination:
        """Where forwarded messages of a session to ``destination`` go."""
        return Destination(
            self._network or destination.network,
            self._address or destination.address,
            self._port or destination.port,
        )

    def own_link(self, session: Session) -> bool:
        """A session of the built-in DNS's own queries (4.34 ``IsOwnLink``: its
        inbound tag is ``dns.tag``, a random one when the config gives none)."""
        tag = self._client.tag
        return session.inbound_tag == tag and (bool(tag) or session.internal)

    async def handle(self, session: Session, stream: Stream) -> None:
        """A TCP session: length-prefixed messages both ways until the client ends."""
        if session.destination is None:
            raise LocalProtocolError("dns: session has no destination")
        talk = _Conversation(self, session, lambda message: stream.write(frame_tcp(message)))
        messages = TcpMessages()
        try:
            while data := await stream.read():
                try:
                    batch = messages.feed(data)
                except ValueError as exc:
                    raise RemoteProtocolError(f"dns: {exc}") from None
                for message in batch:
                    await talk.on_message(message)
            await stream.drain()
        finally:
            await talk.aclose()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """A UDP session: one message per datagram until the link closes."""
        if session.destination is None:
            raise LocalProtocolError("dns: session has no destination")
        talk = _Conversation(self, session, link.send)
        try:
            while (message := await link.recv()) is not None:
                await talk.on_message(message)
        finally:
            await talk.aclose()

    async def lookup(self, query: IpQuery) -> bytes | None:
        """The answer message to ``query``, or None when 4.34 would not answer."""
        ipv4 = query.qtype == TYPE_A
        try:
            ips = await self._client.lookup_ip(query.domain, ipv4=ipv4, ipv6=not ipv4)
        except DnsLookupError as exc:
            if exc.rcode is not None:
                return answer(query, exc.rcode, ())
            if exc.empty:
                return answer(query, 0, ())
            log.info("dns: ip query for %s failed: %s", query.domain, exc)
            return None
        if not ips:
            return None
        return answer(query, 0, ips)


class _Conversation:
    """One session's messages: lookups in flight and the forwarded connection."""

    def __init__(
        self, outbound: DnsOutbound, session: Session, write: Callable[[bytes], None]
    ) -> None:
        self._outbound = outbound
        self._session = session
        self._write = write
        self._own = outbound.own_link(session)
        self._lookups: set[asyncio.Task[None]] = set()
        self._upstream: _Upstream | None = None
        self._closed = False
        self._log = session_logger(log, session)

    async def on_message(self, message: bytes) -> None:
        if not self._own:
            query = parse_ip_query(message)
            if query is not None:
                if len(self._lookups) >= MAX_PENDING_LOOKUPS:
                    self._log.debug("dns: too many lookups waiting; %s dropped", query.domain)
                    return
                task = asyncio.create_task(self._answer(query))
                self._lookups.add(task)
                task.add_done_callback(self._lookups.discard)
                return
        upstream = self._upstream
        if upstream is None or upstream.ended:
            if upstream is not None:
                await upstream.aclose()
            assert self._session.destination is not None
            target = self._outbound.target(self._session.destination)
            self._log.debug("dns: handling DNS traffic to %s", target)
            upstream = self._upstream = _Upstream(
                self._outbound._forward, self._session, target, self._deliver
            )
        await upstream.send(message)

    async def _answer(self, query: IpQuery) -> None:
        try:
            reply = await self._outbound.lookup(query)
        except Exception:  # a lookup bug must not end the session or reach the loop
            self._log.exception("dns: ip query for %s failed", query.domain)
            return
        if reply is not None:
            self._deliver(reply)

    def _deliver(self, message: bytes) -> None:
        if not self._closed and message:
            self._write(message)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._lookups):
            task.cancel()
        if self._upstream is not None:
            await self._upstream.aclose()


class _Upstream:
    """The forwarded messages' connection: the freedom-like ``forward`` outbound's
    session to ``target``, fed through a pipe (TCP) or a packet link (UDP)."""

    def __init__(
        self,
        forward: Outbound,
        session: Session,
        target: Destination,
        deliver: Callable[[bytes], None],
    ) -> None:
        inner = Session(
            inbound_tag=session.inbound_tag,
            source=session.source,
            destination=target,
            user_email=session.user_email,
            level=session.level,
        )
        self._deliver = deliver
        self._reader: asyncio.Task[None] | None = None
        self._pipe: PipeStream | None = None
        self._link: PacketLink | None = None
        if target.network is Network.TCP:
            near, far = stream_pair()
            self._pipe = near
            self._task = asyncio.create_task(self._run(forward.handle(inner, far), target))
            self._reader = asyncio.create_task(self._read(near))
        else:
            self._link = PacketLink(deliver)
            self._task = asyncio.create_task(
                self._run(forward.handle_packets(inner, self._link), target)
            )

    @property
    def ended(self) -> bool:
        return self._task.done()

    @staticmethod
    async def _run(work: Awaitable[None], target: Destination) -> None:
        try:
            await work
        except (OSError, RemoteProtocolError, LocalProtocolError) as exc:
            log.warning("dns: failed to dial outbound connection to %s: %s", target, exc)

    async def _read(self, near: Stream) -> None:
        messages = TcpMessages()
        try:
            while data := await near.read():
                for message in messages.feed(data):
                    self._deliver(message)
        except (OSError, ValueError) as exc:
            log.info("dns: forwarded connection failed: %s", exc)
        finally:
            near.close()

    async def send(self, message: bytes) -> None:
        if self._pipe is not None:
            self._pipe.write(frame_tcp(message))
            await self._pipe.drain()
        elif self._link is not None and message:
            self._link.push(message)

    async def aclose(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
        if self._link is not None:
            self._link.close()
        await cancel_and_wait(
            [t for t in (self._task, self._reader) if t is not None and not t.done()],
            CLOSE_WAIT_S,
        )
