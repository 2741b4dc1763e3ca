"""The ``http`` outbound: an HTTP CONNECT tunnel through an upstream proxy, as
v2ray-core 4.34 ``proxy/http/client.go`` does it.

* TCP only: a UDP session fails at once ("UDP is not supported by HTTP outbound").
* The client's first payload is read before anything is dialled (4.34 waits for it,
  so a protocol whose server speaks first waits too) and written right after the
  proxy's ``200``.
* Up to 5 attempts, waiting 0/100/200/300/400 ms before them; each picks the next
  server (round robin) and a user of it, dials through the outbound's transport and
  sends the CONNECT request Go writes (``protocol/http_proxy.py``
  ``encode_connect_request``; ``Proxy-Authorization: Basic`` with a user). Any answer
  but exactly 200 fails the attempt.
* The policy is level 0's, or the picked user's level.

* HTTP/2: when TLS right under the HTTP client (tcp without a header, mKCP, a domain
  socket, or a ``proxySettings`` chain; not ws, h2 or QUIC, whose TLS the client does
  not see) negotiates ``h2``, the tunnel is an HTTP/2 CONNECT stream with Go's
  headers (``:authority``, ``:method``, ``proxy-authorization``, ``accept-encoding:
  gzip``, ``user-agent: Go-http-client/2.0``), the first payload sent with it before
  the answer, and later tunnels to the same server go on that connection while it
  takes new streams (4.34's per-server cache; a non-200 answer closes the connection,
  as 4.34 does). Any other negotiated protocol fails the attempt.

Differences from 4.34: the CONNECT handshake is bounded by the level's handshake
timeout (4.34 sets no deadline and waits for a silent proxy forever); bytes the proxy
sends right behind its 200 are relayed (4.34 loses them in a dropped read buffer).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.relay import relay
from v2py.app.session import Session, session_logger
from v2py.app.stats import negotiated_alpn
from v2py.common.net import Network
from v2py.errors import LocalProtocolError, ProtocolError
from v2py.protocol.http_proxy import HttpConnectClient, TunnelEstablished, connect_target
from v2py.proxy.socks_outbound import (
    DIAL_DELAYS_S,
    DIAL_TIMEOUT_S,
    ServerPicker,
    UpstreamServer,
    UpstreamUser,
)
from v2py.transport import Transport
from v2py.transport.stream import PrefixedStream, Stream

if TYPE_CHECKING:
    from v2py.transport.h2 import _H2Connection

__all__ = ["HttpOutbound"]

log = logging.getLogger(__name__)

_HANDSHAKE_READ_BYTES = 4096
#: Request headers Go's HTTP/2 transport adds to a CONNECT (checked against 4.34).
_H2_TRAILING_HEADERS = [(b"accept-encoding", b"gzip"), (b"user-agent", b"Go-http-client/2.0")]


class HttpOutbound:
    """The ``http`` outbound handler; ``dial_delays`` and ``rng`` exist for tests."""

    def __init__(
        self,
        *,
        tag: str,
        servers: Sequence[UpstreamServer],
        policy: PolicyTable,
        transport: Transport,
        dial_delays: Sequence[float] = DIAL_DELAYS_S,
        dial_timeout: float = DIAL_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        self.tag = tag
        self.picker = ServerPicker(servers, rng)
        self.policy = policy
        self.transport = transport
        self._dial_delays = tuple(dial_delays)
        self._dial_timeout = dial_timeout
        #: The HTTP/2 connection per server that new tunnels go on (4.34 cachedH2Conns).
        self._h2: dict[tuple[str, int], _H2Connection] = {}
        self._h2_tasks: set[asyncio.Task[None]] = set()

    async def _tunnel(
        self, server: UpstreamServer, user: UpstreamUser | None, target: str, payload: bytes
    ) -> tuple[Stream, bytes]:
        """Dial ``server``, CONNECT to ``target``, then write ``payload``; returns the
        stream and what the proxy sent behind its answer. Closes the stream on failure."""
        timeouts = self.policy.for_level(user.level if user is not None else 0)
        key = (server.address, server.port)
        cached = self._h2.get(key)
        if cached is not None and cached.can_open():
            return await self._h2_tunnel(cached, user, target, payload, timeouts), b""
        stream = await self.transport.dial(server.address, server.port, timeout=self._dial_timeout)
        alpn = negotiated_alpn(stream)
        if alpn == "h2":
            from v2py.transport.h2 import _H2Connection

            conn = _H2Connection(stream, client=True)
            conn.start()
            task = asyncio.create_task(conn.run_client())
            self._h2_tasks.add(task)
            task.add_done_callback(self._h2_tasks.discard)
            tunnel = await self._h2_tunnel(conn, user, target, payload, timeouts)
            self._h2[key] = conn
            return tunnel, b""
        if alpn not in (None, "", "http/1.1"):
            stream.close()
            raise ConnectionRefusedError(
                f"negotiated unsupported application layer protocol: {alpn}"
            )
        try:
            credentials = (user.user, user.password) if user is not None else None
            core = HttpConnectClient(target, credentials)
            async with asyncio.timeout(timeouts.handshake):
                stream.write(core.data_to_send())
                await stream.drain()
                while not isinstance(core.next_event(), TunnelEstablished):
                    core.receive_data(await stream.read(_HANDSHAKE_READ_BYTES))
            if payload:
                stream.write(payload)
                await stream.drain()
        except BaseException:
            stream.close()
            raise
        return stream, core.trailing_data

    async def _h2_tunnel(
        self,
        conn: _H2Connection,
        user: UpstreamUser | None,
        target: str,
        payload: bytes,
        timeouts: Timeouts,
    ) -> Stream:
        """An HTTP/2 CONNECT stream to ``target`` on ``conn``; a failure closes ``conn``
        (as 4.34 closes the raw connection, cached or not)."""
        headers = [(b":authority", target.encode()), (b":method", b"CONNECT")]
        if user is not None:
            auth = base64.b64encode(f"{user.user}:{user.password}".encode()).decode()
            headers.append((b"proxy-authorization", f"Basic {auth}".encode()))
        headers += _H2_TRAILING_HEADERS
        try:
            async with asyncio.timeout(timeouts.handshake):
                stream, status = await conn.open_request(headers, payload)
        except BaseException:
            conn.terminate(ConnectionResetError("HTTP/2 CONNECT failed"))
            conn.below.close()
            raise
        if status != 200:
            stream.close()
            conn.terminate(ConnectionResetError(f"HTTP/2 CONNECT answered {status}"))
            conn.below.close()
            raise ConnectionRefusedError(f"Proxy responded with non 200 code: {status}")
        return stream

    async def handle(self, session: Session, stream: Stream) -> None:
        """Open a tunnel to the destination and relay; raises ConnectionError when no
        attempt succeeds. Never closes ``stream``."""
        dest = session.destination
        if dest is None:
            raise LocalProtocolError("http: session has no destination")
        slog = session_logger(log, session)
        target = connect_target(dest.address, dest.port)
        payload = await stream.read()
        last: BaseException | None = None
        for delay in self._dial_delays:
            if delay:
                await asyncio.sleep(delay)
            server = self.picker.pick()
            user = self.picker.user(server.users)
            try:
                remote, trailing = await self._tunnel(server, user, target, payload)
            except (OSError, TimeoutError, ProtocolError) as exc:  # incl. a non-200 answer
                last = exc
            else:
                break
            slog.info("http: failed via %s:%d: %s", server.address, server.port, last)
        else:
            raise ConnectionError(f"http: failed to find an available destination: {last}")
        slog.info("http: tunneling request to %s via %s:%d", dest, server.address, server.port)
        # The inbound's own timer (its level) runs too, as in 4.34: the shorter one wins.
        timeouts: Timeouts = self.policy.for_levels(
            session.level, user.level if user is not None else 0
        )
        try:
            await relay(stream, PrefixedStream(trailing, remote) if trailing else remote, timeouts)
        finally:
            remote.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """4.34 refuses UDP here: the session ends at once."""
        dest = session.destination
        assert dest is None or dest.network is Network.UDP
        session_logger(log, session).info("http: UDP is not supported by HTTP outbound")
