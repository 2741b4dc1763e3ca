"""SOCKS4/4a/5 inbound: the shell around ``Socks5ServerConnection`` (spec
socks-sniffing-freedom.md section 1; v2ray-core 4.34 ``proxy/socks/server.go``).

TCP: the core runs only for the handshake (bounded by the level's handshake
timeout); afterwards the raw stream, plus any bytes the client pipelined behind its
request, goes to the dispatcher, so the data path never touches the core.

UDP (``udp: true``): one datagram socket on the inbound's own port. Flows are keyed
by (client source, requested destination); each flow is one ``PacketLink`` handed to
``dispatch_packets`` and is torn down after 4 s without traffic; a client source
silent for 8 s loses all its flows (spec section 1.4). Replies carry the
destination the client asked for, not the responder's address.

Like 4.34, the UDP socket serves any source, with or without an ASSOCIATE and
whatever ``auth`` says. ``strict_udp`` (the ``V2PY_SOCKS_STRICT_UDP`` environment
switch, see ``build.py``) serves only sources whose IP holds a live ASSOCIATE
control connection (authenticated when ``auth`` is "password"), and ends that IP's
flows when its last one closes (RFC 1928 section 7). It is an environment switch, not
a JSON key, because 4.34 would ignore an unknown key and run the same file wide open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from v2py.app.handler import Dispatch
from v2py.app.log import ACCESS_REJECTED, AccessMessage, log_access
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.app.udp_flows import (
    UDP_FLOW_IDLE_S,
    UDP_SOURCE_IDLE_S,
    UdpFlowServer,
    UdpRelayStatistics,
    open_udp_flow_server,
)
from v2py.common.net import Destination, canonical_ip, is_ip, tcp, udp
from v2py.errors import ProtocolError
from v2py.protocol.socks5 import (
    AuthMethod,
    DataReceived,
    RequestReceived,
    Socks5Command,
    Socks5ServerConnection,
    StreamEnded,
    decode_udp_datagram,
    encode_udp_datagram,
    udp_associate_reply_host,
)
from v2py.transport.sockopt import SocketOptions
from v2py.transport.stream import READ_CHUNK_BYTES, PrefixedStream, PushStream, Stream

__all__ = ["SocksInbound"]

log = logging.getLogger(__name__)

#: Largest datagram read from the UDP listener.
UDP_READ_MAX_BYTES = 64 * 1024

Address = tuple[str, int]

_V4_MAPPED_PREFIX = "::ffff:"


def _host_key(host: str) -> str:
    """One spelling per IP (an IPv4-mapped IPv6 source is its IPv4 address), so the
    TCP peer of an ASSOCIATE and a UDP source compare equal on a dual-stack socket."""
    text = canonical_ip(host) or host
    if text.startswith(_V4_MAPPED_PREFIX) and "." in text:
        return text[len(_V4_MAPPED_PREFIX) :]
    return text


#: v2py's handshake errors in 4.34's words (proxy/socks/protocol.go), for the
#: access log's rejected lines that log watchers (fail2ban) match.
_SOCKS_REASONS = (
    ("connection closed during the handshake", "insufficient header > EOF"),
    ("client offered no acceptable auth method", "no matching auth method"),
    ("wrong username or password", "invalid username or password"),
    (
        "SOCKS4 is not allowed when auth is required",
        "socks 4 is not allowed when auth is required.",
    ),
    ("unknown SOCKS version ", "unknown Socks version: "),
    ("unsupported SOCKS4 command ", "unsupported command: "),
    ("unsupported SOCKS5 command 2", "TCP bind is not supported."),
    ("unsupported SOCKS5 command 3", "UDP is not enabled."),
    ("unsupported SOCKS5 command ", "unknown command "),
)
_SOCKS_ERROR_PREFIX = "v2ray.com/core/proxy/socks: "


def socks_rejection_reason(message: str) -> str:
    """The reason 4.34 gives in a socks ``rejected`` access line for ``message``."""
    for ours, theirs in _SOCKS_REASONS:
        if message.startswith(ours):
            rest = message[len(ours) :] if theirs.endswith(" ") else ""
            return _SOCKS_ERROR_PREFIX + theirs + rest
    return _SOCKS_ERROR_PREFIX + message


def _log_rejected(session: Session, reason: str) -> None:
    """``tcp:IP:PORT rejected  REASON``, as 4.34's socks server records a failed handshake."""
    log_access(f"tcp:{session.source_text()}", ACCESS_REJECTED, reason=reason)


class SocksInbound:
    """The ``socks`` inbound (SOCKS4, 4a and 5, RFC 1929 passwords, UDP ASSOCIATE).

    Parameters mirror the JSON settings: ``auth`` "password" (case-sensitive, as in
    4.34) or anything else for noauth; ``accounts`` user -> password; ``udp`` enables
    UDP ASSOCIATE and the UDP listener; ``ip`` is announced in UDP ASSOCIATE replies.
    ``udp_flow_idle`` / ``udp_source_idle`` exist for tests. ``reuse_port`` binds
    the UDP socket with SO_REUSEPORT (``--workers``). ``strict_udp`` serves UDP only
    from the IP of a live ASSOCIATE (see the module docstring; 4.34 has no such mode).
    """

    def __init__(
        self,
        *,
        tag: str,
        listen: str,
        port: int,
        auth: str = "noauth",
        accounts: dict[str, str] | None = None,
        udp: bool = False,
        ip: str | None = None,
        user_level: int = 0,
        policy: PolicyTable,
        sniffing: SniffingSettings,
        udp_flow_idle: float = UDP_FLOW_IDLE_S,
        udp_source_idle: float = UDP_SOURCE_IDLE_S,
        reuse_port: bool = False,
        strict_udp: bool = False,
        socket_options: SocketOptions | None = None,
    ) -> None:
        self.tag = tag
        #: ``sockopt`` of the UDP relay socket (the TCP listener's are the transport's).
        self._options = socket_options
        self._strict_udp = strict_udp
        # strict_udp: IP (see _host_key) -> live ASSOCIATE control connections from it
        self._associations: dict[str, int] = {}
        self._reuse_port = reuse_port
        self._listen = listen
        self._listen_is_ip = bool(listen) and is_ip(listen)
        self._port = port
        self._auth = AuthMethod.PASSWORD if auth == "password" else AuthMethod.NO_AUTH
        self._accounts = dict(accounts or {})
        self._udp = udp
        self._ip = ip
        self._user_level = user_level
        self._policy = policy
        self._sniffing = sniffing
        self._udp_flow_idle = udp_flow_idle
        self._udp_source_idle = udp_source_idle
        self._udp_server: UdpFlowServer | None = None
        self._udp_port = 0

    @property
    def udp_port(self) -> int | None:
        """Bound UDP port once started with ``udp`` (equals ``port`` unless that was 0)."""
        return self._udp_port if self._udp_server is not None else None

    def udp_statistics(self) -> UdpRelayStatistics | None:
        """The UDP listener's counters, or None when it is not running."""
        return self._udp_server.statistics() if self._udp_server is not None else None

    async def start(self, dispatcher: Dispatch) -> None:
        """Open the UDP relay socket on listen:port when ``udp`` is enabled."""
        if not self._udp or self._udp_server is not None:
            return

        def make_session(source: Address, dest: Destination) -> Session:
            session = Session(
                inbound_tag=self.tag,
                source=source,
                destination=dest,
                level=self._user_level,
                sniffing=SniffingSettings(),  # UDP is never sniffed
            )
            session.access = AccessMessage(f"udp:{session.source_text()}", str(dest))
            return session

        def decode(data: bytes) -> tuple[Destination, bytes] | None:
            datagram = decode_udp_datagram(data)
            if datagram is None:
                return None
            return udp(datagram.address, datagram.port), datagram.payload

        def encode(dest: Destination, payload: bytes) -> bytes:
            return encode_udp_datagram(dest.address, dest.port, payload)

        def admit(source: Address) -> bool:
            return _host_key(source[0]) in self._associations

        self._udp_server, self._udp_port = await open_udp_flow_server(
            self._listen or "0.0.0.0",
            self._port,
            reuse_port=self._reuse_port,
            options=self._options,
            make_session=make_session,
            dispatcher=dispatcher,
            decode=decode,
            encode=encode,
            flow_idle=self._udp_flow_idle,
            source_idle=self._udp_source_idle,
            admit=admit if self._strict_udp else None,
        )

    def close(self) -> None:
        """Close the UDP listener and its flows (TCP connections belong to the caller)."""
        if self._udp_server is not None:
            self._udp_server.close()
            self._udp_server = None

    def _reply_address(self, stream: Stream) -> tuple[str, int]:
        local = stream.local
        host = self._listen if self._listen_is_ip else None
        if host is None:
            host = local[0] if local else "0.0.0.0"
        port = self._port or (local[1] if local else 0)
        return host, port

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        """Serve one accepted TCP connection: handshake, then dispatch or UDP drain.

        Never raises ProtocolError/OSError (logged with the session id); always
        closes ``stream``.
        """
        slog = session_logger(log, session)
        timeouts = self._policy.for_level(self._user_level)
        core = Socks5ServerConnection(
            auth_method=self._auth, accounts=self._accounts, udp_enabled=self._udp
        )
        try:
            try:
                async with asyncio.timeout(timeouts.handshake):
                    request, pending, ended = await self._handshake(stream, core)
            except TimeoutError:
                slog.info("socks handshake timed out")
                _log_rejected(session, "insufficient header > i/o timeout")
                return
            except ProtocolError as exc:
                _log_rejected(session, socks_rejection_reason(str(exc)))
                raise
            if request is None:
                slog.debug("client closed before a request")
                return
            if request.command is Socks5Command.UDP_ASSOCIATE:
                await self._serve_udp_associate(stream, session, core, ended)
                return
            session.destination = tcp(request.address, request.port)
            # 4.34's socks access line: the source with its network, no email.
            session.access = AccessMessage(f"tcp:{session.source_text()}", str(session.destination))
            session.level = self._user_level
            session.user_email = request.username
            session.sniffing = self._sniffing
            if pending or ended:
                stream = PrefixedStream(pending, stream, eof=ended)
            await dispatcher.dispatch(session, stream)
        except ProtocolError as exc:
            slog.info("socks: %s", exc)
        except OSError as exc:
            slog.info("socks connection ended: %s", exc)
        finally:
            stream.close()

    async def _handshake(
        self, stream: Stream, core: Socks5ServerConnection
    ) -> tuple[RequestReceived | None, bytes, bool]:
        """Read up to the request and answer it unless it is UDP ASSOCIATE: (request,
        payload pipelined behind it, whether the client's side has ended)."""
        bound = self._reply_address(stream)
        if getattr(stream, "can_push", False):
            return await _pushed_handshake(cast(PushStream, stream), core, bound)
        request: RequestReceived | None = None
        pending: list[bytes] = []
        ended = False
        while request is None:
            data = await stream.read(READ_CHUNK_BYTES)
            core.receive_data(data)
            try:
                request, ended = _take_events(core, request, pending, ended)
                _answer_connect(core, request, bound)
            finally:
                out = core.data_to_send()
                if out:
                    stream.write(out)
        return request, b"".join(pending), ended

    async def _serve_udp_associate(
        self, stream: Stream, session: Session, core: Socks5ServerConnection, ended: bool
    ) -> None:
        peer = stream.peer or session.source
        listen_host = self._reply_address(stream)[0]
        host = udp_associate_reply_host(
            configured_ip=self._ip, client_host=peer[0] if peer else "", listen_host=listen_host
        )
        port = self._udp_port if self._udp_server is not None else self._reply_address(stream)[1]
        key = _host_key(peer[0]) if peer else ""
        if self._strict_udp:
            self._associations[key] = self._associations.get(key, 0) + 1
        try:
            core.accept(host, port)
            stream.write(core.data_to_send())
            await stream.drain()
            # The TCP side only keeps the association visible; 4.34 reads and discards
            # until the client closes, and closing does not tear UDP state down (strict
            # mode: the last association of an IP ends its flows).
            while not ended:
                if not await stream.read(READ_CHUNK_BYTES):
                    break
        finally:
            if self._strict_udp:
                self._end_association(key)

    def _end_association(self, key: str) -> None:
        left = self._associations.get(key, 0) - 1
        if left > 0:
            self._associations[key] = left
            return
        self._associations.pop(key, None)
        if self._udp_server is not None:
            self._udp_server.drop_sources(lambda source: _host_key(source[0]) == key)


def _take_events(
    core: Socks5ServerConnection,
    request: RequestReceived | None,
    pending: list[bytes],
    ended: bool,
) -> tuple[RequestReceived | None, bool]:
    """Drain ``core``'s events: the request, payload pipelined behind it (appended to
    ``pending``), the end. Raises the core's Socks5Error."""
    while (event := core.next_event()) is not None:
        if isinstance(event, RequestReceived):
            request = event
        elif isinstance(event, DataReceived):
            pending.append(event.data)
        elif isinstance(event, StreamEnded):
            ended = True
    return request, ended


def _answer_connect(
    core: Socks5ServerConnection, request: RequestReceived | None, bound: tuple[str, int]
) -> None:
    """Accept a request other than UDP ASSOCIATE, announcing ``bound``: 4.34 answers
    before it dispatches, so the client's first payload can be on its way meanwhile.
    (UDP ASSOCIATE is answered once its relay is set up.)"""
    if request is not None and request.command is not Socks5Command.UDP_ASSOCIATE:
        core.accept(*bound)


class _HandshakeTarget:
    """Runs the handshake in the stream's receive callbacks (push mode): the greeting
    (and RFC 1929) replies leave as the bytes arrive, and the serving task wakes once,
    for the request, instead of once per read. The reply to the request leaves from
    here too (:func:`_answer_connect`)."""

    __slots__ = ("_stream", "_core", "_done", "_bound", "request", "pending", "ended")

    def __init__(
        self,
        stream: PushStream,
        core: Socks5ServerConnection,
        done: asyncio.Future[None],
        bound: tuple[str, int],
    ) -> None:
        self._stream = stream
        self._core = core
        self._done = done
        self._bound = bound  # the address a CONNECT reply announces
        self.request: RequestReceived | None = None
        self.pending: list[bytes] = []
        self.ended = False

    def pushed_data(self, data: bytes | bytearray) -> None:
        self._feed(data)

    def pushed_eof(self) -> None:
        self._feed(b"")

    def pushed_error(self, exc: BaseException) -> None:
        self._finish(exc)

    def _feed(self, data: bytes | bytearray) -> None:
        if self._done.done():
            return
        core = self._core
        try:
            core.receive_data(data)
            try:
                self.request, self.ended = _take_events(
                    core, self.request, self.pending, self.ended
                )
                _answer_connect(core, self.request, self._bound)
            finally:
                out = core.data_to_send()
                if out:
                    self._stream.write(out)
        except Exception as exc:  # the core's refusal or a failed write: the task's
            self._finish(exc)
            return
        if self.request is not None:
            self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        self._stream.stop_push()  # what follows stays in the stream for the relay
        if not self._done.done():
            if exc is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc)


async def _pushed_handshake(
    stream: PushStream, core: Socks5ServerConnection, bound: tuple[str, int]
) -> tuple[RequestReceived | None, bytes, bool]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    target = _HandshakeTarget(stream, core, done, bound)
    stream.start_push(target)
    try:
        await done
    finally:
        stream.stop_push()  # (already stopped unless cancelled: the handshake timeout)
    return target.request, b"".join(target.pending), target.ended
