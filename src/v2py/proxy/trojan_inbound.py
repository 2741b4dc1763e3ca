"""The ``trojan`` inbound (v2ray-core 4.34 ``proxy/trojan/server.go``);
the wire format is ``protocol/trojan.py``.

As 4.34 [checked against the binary]: the header must arrive within the level-0
handshake timeout, and its first read decides: too short or no CR at byte 56 ("not
trojan protocol") and an unknown key ("not a valid user") close the connection at once
(no drain, no byte sent) with a ``rejected`` access line, as does a header that is bad
or cut short later (its 4.34 reason: "failed to read address and port > ..."); a client
silent until the timeout or its end is closed without a line. The session carries the
user's email and level (policy, stats, routing ``user``); the destination
v1.mux.cool is Mux.Cool (the dispatcher handed to inbounds serves it). Command 3 is UDP:
each packet names its destination, one packet session per destination (closed after
4 s of silence, as 4.34's ``udp.Dispatcher``) and all of them end with the connection;
answers go back framed with the address they came from.

Fallbacks (``app/fallback.py``): after the first read's "not trojan protocol" or "not a
valid user" (logged as rejected), by request path; never by ALPN, as in 4.34 (its check
for a TLS connection looks for Go's type, not v2ray's wrapper: checked against the
binary).

Deliberate difference: a UDP packet is dispatched as one datagram. 4.34 cuts its payload
into 2048-byte buffers and sends each to the target as a datagram of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from v2py.app.accounts import KeyedAccounts
from v2py.app.fallback import serve_fallback
from v2py.app.handler import Dispatch
from v2py.app.idle import IdleTimer
from v2py.app.log import ACCESS_REJECTED, AccessMessage, go_read_timeout, log_access
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.app.udp_flows import UDP_FLOW_IDLE_S
from v2py.common.net import Destination, Network, udp
from v2py.errors import ProtocolError
from v2py.protocol.fallback import FallbackTable
from v2py.protocol.trojan import (
    COMMAND_UDP,
    PacketReader,
    RequestDecoder,
    TrojanRequest,
    encode_packet,
)
from v2py.proxy.trojan_outbound import TrojanLayer, TrojanUser
from v2py.transport.stream import READ_CHUNK_BYTES, PrefixedStream, PushTarget, Stream

__all__ = ["TrojanInbound", "TrojanServerStream"]

log = logging.getLogger(__name__)

#: The first read's verdicts after which 4.34 hands the connection to a fallback.
_FALLBACK_REASONS = frozenset({"not trojan protocol", "not a valid user"})
#: How 4.34 prefixes the server's reasons in its access log.
_REASON_PREFIX = "v2ray.com/core/proxy/trojan: "


class TrojanServerStream(TrojanLayer, PrefixedStream):
    """The client connection after the request header: reads start with the bytes that
    came with the header; writes are raw (Trojan has no response header)."""

    def __init__(self, below: Stream, first: bytes) -> None:
        super().__init__(first, below)
        self._push: PushTarget | None = None


def parse_trojan_account(account: bytes, level: int, email: str) -> TrojanUser:
    """The user of a ``v2ray.core.proxy.trojan.Account`` (AlterInbound's AddUser)."""
    from v2py.app.commander.proto.trojan_pb2 import Account

    message = Account()
    try:
        message.ParseFromString(account)
    except Exception:  # noqa: BLE001 - any decode failure of peer bytes
        raise ValueError("proto: cannot parse invalid wire-format data") from None
    return TrojanUser(message.password, level, email)


class TrojanInbound:
    """The ``trojan`` inbound handler over its users (by their 56-byte key)."""

    def __init__(
        self,
        *,
        tag: str,
        users: Iterable[TrojanUser],
        policy: PolicyTable,
        udp_flow_idle: float = UDP_FLOW_IDLE_S,
        fallbacks: FallbackTable | None = None,
    ) -> None:
        self.tag = tag
        self.fallbacks = fallbacks or None
        self.accounts = KeyedAccounts(
            users,
            key=lambda user: user.key,
            parse=parse_trojan_account,
            account_type="v2ray.core.proxy.trojan.Account",
            error_prefix=_REASON_PREFIX,
        )
        self.policy = policy
        self.udp_flow_idle = udp_flow_idle

    async def start(self, dispatcher: Dispatch) -> None:
        return None

    def close(self) -> None:
        return None

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        slog = session_logger(log, session)
        decoder = RequestDecoder(self.accounts.by_key.get)
        request: TrojanRequest | None = None
        reason: str | None = None
        first: bytes | None = None
        fall_back = False
        try:
            async with asyncio.timeout(self.policy.for_level(0).handshake):
                while request is None:
                    data = await stream.read(READ_CHUNK_BYTES)
                    if not data:
                        reason = decoder.end_reason()
                        break
                    if first is None:
                        first = data
                    request = decoder.feed(data)
        except ValueError as exc:
            reason = str(exc)
            # 4.34 falls back on its first read's verdicts only.
            fall_back = self.fallbacks is not None and reason in _FALLBACK_REASONS
        except TimeoutError:  # (an OSError: before the next clause)
            slog.info("trojan: handshake timed out from %s", session.source_text())
            # Go's read error once the deadline passed, as 4.34 logs it.
            reason = decoder.timeout_reason(go_read_timeout(stream))
        except OSError as exc:
            slog.info("trojan: reading the request failed: %s", exc)
            return
        if request is None:
            if reason is not None:
                slog.info("trojan: invalid request from %s: %s", session.source_text(), reason)
                log_access(
                    session.source_text(), ACCESS_REJECTED, reason=f"{_REASON_PREFIX}{reason}"
                )
            if fall_back and self.fallbacks is not None:
                timeouts = self.policy.for_level(0)
                # 4.34's Trojan looks for Go's own *tls.Conn, never its TLS wrapper: it
                # never sees the ALPN, so an "alpn" entry only shapes the table.
                await serve_fallback(
                    stream, first or b"", self.fallbacks, timeouts, slog, by_alpn=False
                )
            return
        user = request.user
        assert isinstance(user, TrojanUser)
        session.user_email = user.email
        session.level = user.level
        tstream = TrojanServerStream(stream, request.rest)
        try:
            if request.command == COMMAND_UDP:
                await self._serve_udp(session, tstream, dispatcher)
            else:
                session.destination = Destination(Network.TCP, request.address, request.port)
                await dispatcher.dispatch(session, tstream)
        except (OSError, ProtocolError) as exc:
            slog.info("trojan: connection ends: %s", exc)

    async def _serve_udp(
        self, outer: Session, stream: TrojanServerStream, dispatcher: Dispatch
    ) -> None:
        """4.34 ``handleUDPPayload``: packets until the end (or a bad one), one packet
        session per destination, every one of them ended with the connection."""
        slog = session_logger(log, outer)
        loop = asyncio.get_running_loop()
        reader = PacketReader()
        flows: dict[Destination, tuple[PacketLink, IdleTimer]] = {}

        def close_flow(dest: Destination) -> None:
            flow = flows.pop(dest, None)
            if flow is not None:
                flow[1].cancel()
                flow[0].close()

        def open_flow(dest: Destination) -> tuple[PacketLink, IdleTimer]:
            def send_back(payload: bytes) -> None:
                timer.touch()
                with contextlib.suppress(ConnectionError):
                    stream.write(encode_packet(dest.address, dest.port, payload))

            link = PacketLink(send_back)
            timer = IdleTimer(loop, self.udp_flow_idle, lambda: close_flow(dest))
            session = Session(
                inbound_tag=outer.inbound_tag,
                source=outer.source,
                destination=dest,
                user_email=outer.user_email,
                level=outer.level,
                sniffing=SniffingSettings(),  # UDP is never sniffed
            )
            # 4.34 names the inbound's source as a destination here (tcp:...).
            session.access = AccessMessage(
                f"tcp:{outer.source_text()}", str(dest), outer.user_email
            )
            task = group.create_task(run_flow(session, link, dest))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return link, timer

        async def run_flow(session: Session, link: PacketLink, dest: Destination) -> None:
            try:
                await dispatcher.dispatch_packets(session, link)
            except (OSError, ProtocolError) as exc:
                session_logger(log, session).info("trojan: udp flow to %s ends: %s", dest, exc)
            finally:
                flow = flows.get(dest)
                if flow is not None and flow[0] is link:
                    close_flow(dest)

        tasks: set[asyncio.Task[None]] = set()
        async with asyncio.TaskGroup() as group:
            try:
                while True:
                    try:
                        data = await stream.read()
                        if not data:
                            return
                        packets = reader.feed(data)
                    except (OSError, ValueError) as exc:
                        # 4.34 ends the connection (and so every flow) on either.
                        slog.info("trojan: udp request ends: %s", exc)
                        return
                    for packet in packets:
                        if not packet.payload:
                            continue
                        dest = udp(packet.address, packet.port)
                        flow = flows.get(dest) or open_flow(dest)
                        flows[dest] = flow
                        flow[1].touch()
                        flow[0].push(packet.payload)
            finally:
                # The connection's end ends every flow at once (4.34 cancels the context).
                for dest in list(flows):
                    close_flow(dest)
                for task in tasks:
                    task.cancel()
