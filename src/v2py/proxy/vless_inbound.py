"""The ``vless`` inbound (v2ray-core 4.34 ``proxy/vless/inbound``) without fallbacks; the
wire format is ``protocol/vless.py``.

As 4.34: the request header must arrive within the level-0 handshake timeout; a bad
version, an unknown id or a bad address ends the connection at once (no drain) with a
``rejected`` access line; the session carries the user's email and level (policy,
stats, routing); command 3 is Mux.Cool (dispatched as ``v1.mux.cool``), command 2 UDP
with length-prefixed datagrams both ways. The response header goes out with the first
response bytes; a response that ends before any data closes the connection without it.
No half-close (a VLESS stream has no end marker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from v2py.app.accounts import KeyedAccounts
from v2py.app.fallback import serve_fallback
from v2py.app.handler import Dispatch
from v2py.app.log import ACCESS_REJECTED, log_access
from v2py.app.packet import dispatch_datagram_stream
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, Network
from v2py.errors import ProtocolError
from v2py.protocol.fallback import FallbackTable
from v2py.protocol.vless import (
    COMMAND_UDP,
    RequestDecoder,
    VlessRequest,
    encode_response,
)
from v2py.proxy.vless_outbound import VlessLayer, VlessUser
from v2py.transport.stream import READ_CHUNK_BYTES, PrefixedStream, Stream

__all__ = ["VlessInbound", "VlessServerStream"]

log = logging.getLogger(__name__)

#: How 4.34 prefixes the decoder's reasons in its access log.
_REASON_PREFIX = "v2ray.com/core/proxy/vless/encoding: "
#: With fallbacks: 4.34's first read (one ``buf.Size`` buffer), the length below which
#: it falls back at once, and the decoder's reasons that fall back.
_FIRST_READ_BYTES = 2048
_FALLBACK_MIN_BYTES = 18
_FALLBACK_REASONS = frozenset({"invalid request version", "invalid request user id"})
#: How 4.34 prefixes its VLESS validator's and account's errors.
_VLESS = "v2ray.com/core/proxy/vless: "


class VlessServerStream(VlessLayer, PrefixedStream):
    """The client connection after the request header: reads start with the bytes that
    came with the header; the response header goes with the first write."""

    def __init__(self, below: Stream, first: bytes) -> None:
        super().__init__(first, below)
        self._header_sent = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._header_sent:
            self._header_sent = True
            self._below.write(encode_response() + bytes(data))
            return
        self._below.write(data)


def parse_vless_account(account: bytes, level: int, email: str) -> VlessUser:
    """The user of a ``v2ray.core.proxy.vless.Account`` (AlterInbound's AddUser)."""
    from v2py.app.commander.proto.vless_pb2 import Account
    from v2py.protocol.vmess.account import parse_uuid

    message = Account()
    try:
        message.ParseFromString(account)
    except Exception:  # noqa: BLE001 - any decode failure of peer bytes
        raise ValueError("proto: cannot parse invalid wire-format data") from None
    try:
        uid = parse_uuid(message.id)
    except ValueError:
        raise ValueError(f"{_VLESS}failed to parse ID > invalid UUID: {message.id}") from None
    return VlessUser(uid, level, email)


class VlessInbound:
    """The ``vless`` inbound handler over its users."""

    def __init__(
        self,
        *,
        tag: str,
        users: Iterable[VlessUser],
        policy: PolicyTable,
        fallbacks: FallbackTable | None = None,
    ) -> None:
        self.tag = tag
        self.fallbacks = fallbacks or None
        self.accounts = KeyedAccounts(
            users,
            key=lambda user: user.id,
            parse=parse_vless_account,
            account_type="v2ray.core.proxy.vless.Account",
            error_prefix=_VLESS,
        )
        self.policy = policy

    async def start(self, dispatcher: Dispatch) -> None:
        return None

    @staticmethod
    async def _first_read(stream: Stream, decoder: RequestDecoder) -> bytes | VlessRequest | None:
        """With fallbacks, 4.34 decides on one read (of at most 2048 bytes): shorter than
        18 bytes, another version or an unknown id falls back (the bytes read are
        returned); else the header is read on as without fallbacks (the request, or
        None while the decoder needs more)."""
        first = await stream.read(_FIRST_READ_BYTES)
        if len(first) < _FALLBACK_MIN_BYTES:
            return first
        try:
            return decoder.feed(first)
        except ValueError as exc:
            if str(exc) in _FALLBACK_REASONS:
                return first
            raise

    def close(self) -> None:
        return None

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        slog = session_logger(log, session)
        decoder = RequestDecoder(self.accounts.by_key.get)
        request: VlessRequest | None = None
        fallbacks = self.fallbacks
        first: bytes | None = None
        first_read = False  # (with fallbacks: the first read has decided)
        try:
            async with asyncio.timeout(self.policy.for_level(0).handshake):
                if fallbacks is not None:
                    decided = await self._first_read(stream, decoder)
                    first_read = True
                    if isinstance(decided, bytes):
                        first = decided
                    else:
                        request = decided
                while request is None and first is None:
                    data = await stream.read(READ_CHUNK_BYTES)
                    if not data:
                        return  # 4.34 logs no rejection for a bare EOF
                    request = decoder.feed(data)
        except TimeoutError:
            if fallbacks is None or first_read:
                slog.info("vless: handshake timed out from %s", session.source_text())
                return
            # 4.34 ignores the first read's error: a client silent until the handshake
            # timeout falls back (one that passed the first read does not).
            first = b""
        except ValueError as exc:
            slog.info("vless: invalid request from %s: %s", session.source_text(), exc)
            log_access(session.source_text(), ACCESS_REJECTED, reason=f"{_REASON_PREFIX}{exc}")
            return
        if first is not None:
            assert fallbacks is not None
            await serve_fallback(stream, first, fallbacks, self.policy.for_level(0), slog)
            return
        assert request is not None
        user = request.user
        assert isinstance(user, VlessUser)
        session.user_email = user.email
        session.level = user.level
        network = Network.UDP if request.command == COMMAND_UDP else Network.TCP
        session.destination = Destination(network, request.address, request.port)
        vstream = VlessServerStream(stream, request.rest)
        try:
            if network is Network.UDP:
                await dispatch_datagram_stream(session, vstream, dispatcher)
            else:
                await dispatcher.dispatch(session, vstream)
        except (OSError, ProtocolError) as exc:
            slog.info("vless: connection ends: %s", exc)
