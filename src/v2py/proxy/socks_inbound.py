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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from v2py.app.dispatcher import PrefixedStream
from v2py.app.handler import Dispatch
from v2py.app.log import ACCESS_REJECTED, AccessMessage, log_access
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.common.net import Destination, is_ip, tcp, udp
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
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

__all__ = ["SocksInbound", "UdpFlowServer", "UdpRelayStatistics", "open_udp_flow_server"]

log = logging.getLogger(__name__)

#: A UDP client source silent this long loses its flows (4.34 udp worker: > 8 s).
UDP_SOURCE_IDLE_S = 8.0
#: A (source, destination) flow silent this long is torn down (4.34 udp dispatcher).
UDP_FLOW_IDLE_S = 4.0
#: Largest datagram read from the UDP listener.
UDP_READ_MAX_BYTES = 64 * 1024

Address = tuple[str, int]

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


class _IdleClock:
    """Calls ``on_idle`` once ``idle`` seconds pass without ``touch()``.

    One ``call_at`` handle, re-armed lazily: traffic only stamps a float.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, idle: float, on_idle: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._idle = idle
        self._on_idle = on_idle
        self._last = loop.time()
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._last + idle, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        deadline = self._last + self._idle
        if self._loop.time() >= deadline - 1e-3:
            self._handle = None
            self._on_idle()
        else:
            self._handle = self._loop.call_at(deadline, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _Flow:
    def __init__(self, link: PacketLink, clock: _IdleClock, source: _Source) -> None:
        self.link = link
        self.clock = clock
        self.source = source
        self.task: asyncio.Task[None] | None = None


class _Source:
    def __init__(self) -> None:
        self.flows: dict[Destination, _Flow] = {}
        self.clock: _IdleClock | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpRelayStatistics:
    """Snapshot of a :class:`UdpFlowServer`: live sources/flows, flows ever opened,
    datagrams dropped as malformed."""

    sources: int
    flows: int
    flows_opened: int
    dropped: int


class UdpFlowServer(asyncio.DatagramProtocol):
    """A UDP listener that demultiplexes datagrams into per-(source, destination) flows.

    Parameters:
        make_session: builds the Session for a new flow from (source, destination).
        dispatcher: receives each flow as ``dispatch_packets(session, link)``.
        decode: datagram -> (destination, payload), or None to drop it.
        encode: (flow destination, response payload) -> datagram for the client.
        flow_idle / source_idle: idle teardown, seconds.

    Shared by the SOCKS and dokodemo-door inbounds.
    """

    def __init__(
        self,
        *,
        make_session: Callable[[Address, Destination], Session],
        dispatcher: Dispatch,
        decode: Callable[[bytes], tuple[Destination, bytes] | None],
        encode: Callable[[Destination, bytes], bytes],
        flow_idle: float = UDP_FLOW_IDLE_S,
        source_idle: float = UDP_SOURCE_IDLE_S,
    ) -> None:
        self._make_session = make_session
        self._dispatcher = dispatcher
        self._decode = decode
        self._encode = encode
        self._flow_idle = flow_idle
        self._source_idle = source_idle
        self._transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._sources: dict[Address, _Source] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropped = 0
        self._flows_opened = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython 3.11's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source: Address = (str(addr[0]), int(addr[1]))
        decoded = self._decode(data)
        if decoded is None:
            self._dropped += 1
            return
        dest, payload = decoded
        if not payload:
            return
        entry = self._sources.get(source)
        if entry is None:
            entry = self._sources[source] = _Source()
            entry.clock = _IdleClock(
                self._loop, self._source_idle, lambda: self._drop_source(source)
            )
        flow = entry.flows.get(dest)
        if flow is None:
            flow = self._open_flow(source, dest, entry)
        assert entry.clock is not None
        entry.clock.touch()
        flow.clock.touch()
        flow.link.push(payload)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp listener error: %s", exc)

    def _open_flow(self, source: Address, dest: Destination, entry: _Source) -> _Flow:
        def send_back(payload: bytes) -> None:
            transport = self._transport
            if transport is None or transport.is_closing():
                return
            flow.clock.touch()
            if entry.clock is not None:
                entry.clock.touch()
            transport.sendto(self._encode(dest, payload), source)

        link = PacketLink(send_back)
        self._flows_opened += 1
        clock = _IdleClock(self._loop, self._flow_idle, lambda: self._close_flow(source, dest))
        flow = _Flow(link, clock, entry)
        entry.flows[dest] = flow
        session = self._make_session(source, dest)
        task = self._loop.create_task(self._run_flow(session, flow, source, dest))
        flow.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flow

    async def _run_flow(
        self, session: Session, flow: _Flow, source: Address, dest: Destination
    ) -> None:
        slog = session_logger(log, session)
        try:
            await self._dispatcher.dispatch_packets(session, flow.link)
        except asyncio.CancelledError:
            raise
        except (ProtocolError, OSError) as exc:
            slog.info("udp flow to %s failed: %s", dest, exc)
        except Exception:  # one bad flow never stops the listener
            slog.exception("udp flow to %s crashed", dest)
        finally:
            self._close_flow(source, dest, flow)

    def _close_flow(self, source: Address, dest: Destination, only: _Flow | None = None) -> None:
        entry = self._sources.get(source)
        if entry is None:
            return
        flow = entry.flows.get(dest)
        if flow is None or (only is not None and flow is not only):
            return
        del entry.flows[dest]
        flow.clock.cancel()
        flow.link.close()

    def _drop_source(self, source: Address) -> None:
        entry = self._sources.pop(source, None)
        if entry is None:
            return
        for flow in entry.flows.values():
            flow.clock.cancel()
            flow.link.close()
        entry.flows.clear()

    def statistics(self) -> UdpRelayStatistics:
        """Counters of this listener."""
        return UdpRelayStatistics(
            sources=len(self._sources),
            flows=sum(len(s.flows) for s in self._sources.values()),
            flows_opened=self._flows_opened,
            dropped=self._dropped,
        )

    def close(self) -> None:
        """Stop listening, close every flow and cancel their tasks."""
        for source in list(self._sources):
            entry = self._sources[source]
            if entry.clock is not None:
                entry.clock.cancel()
            self._drop_source(source)
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()


async def open_udp_flow_server(
    host: str, port: int, *, reuse_port: bool = False, **kwargs: object
) -> tuple[UdpFlowServer, int]:
    """Bind a :class:`UdpFlowServer` on ``host:port``; return it and the bound port.

    ``reuse_port`` sets SO_REUSEPORT (worker processes sharing the port).
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpFlowServer(**kwargs),  # type: ignore[arg-type]
        local_addr=(host, port),
        reuse_port=reuse_port or None,
    )
    sockname = transport.get_extra_info("sockname")
    return protocol, int(sockname[1])


class SocksInbound:
    """The ``socks`` inbound (SOCKS4, 4a and 5, RFC 1929 passwords, UDP ASSOCIATE).

    Parameters mirror the JSON settings: ``auth`` "password" (case-sensitive, as in
    4.34) or anything else for noauth; ``accounts`` user -> password; ``udp`` enables
    UDP ASSOCIATE and the UDP listener; ``ip`` is announced in UDP ASSOCIATE replies.
    ``udp_flow_idle`` / ``udp_source_idle`` exist for tests. ``reuse_port`` binds
    the UDP socket with SO_REUSEPORT (``--workers``).
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
    ) -> None:
        self.tag = tag
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

        self._udp_server, self._udp_port = await open_udp_flow_server(
            self._listen or "0.0.0.0",
            self._port,
            reuse_port=self._reuse_port,
            make_session=make_session,
            dispatcher=dispatcher,
            decode=decode,
            encode=encode,
            flow_idle=self._udp_flow_idle,
            source_idle=self._udp_source_idle,
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
            host, port = self._reply_address(stream)
            core.accept(host, port)
            stream.write(core.data_to_send())
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
        request: RequestReceived | None = None
        pending: list[bytes] = []
        ended = False
        while request is None:
            data = await stream.read(READ_CHUNK_BYTES)
            core.receive_data(data)
            try:
                while (event := core.next_event()) is not None:
                    if isinstance(event, RequestReceived):
                        request = event
                    elif isinstance(event, DataReceived):
                        pending.append(event.data)
                    elif isinstance(event, StreamEnded):
                        ended = True
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
        core.accept(host, port)
        stream.write(core.data_to_send())
        await stream.drain()
        # The TCP side only keeps the association visible; 4.34 reads and discards until
        # the client closes, and closing does not tear UDP state down.
        while not ended:
            if not await stream.read(READ_CHUNK_BYTES):
                break
