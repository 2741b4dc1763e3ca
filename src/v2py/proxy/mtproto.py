"""The ``mtproto`` inbound and outbound (v2ray-core 4.34 ``proxy/mtproto``): a Telegram
proxy. The wire format is ``protocol/mtproto.py``.

Inbound: the 64-byte header must arrive within the (first) user's handshake timeout and
name a connection type and datacenter 4.34 serves, else the connection closes without
a byte; the session goes to datacenter N's address on port 443 (4.34 configs route it
to an ``mtproto`` outbound), carrying the user's email and level, and the connection
type and datacenter for that outbound. Outbound: dials the destination through its
transport and speaks to it as a Telegram client would to a datacenter (no secret),
with the session's connection type. Both directions are AES-256-CTR streams; nothing
half-closes (4.34's copies only end).
"""

from __future__ import annotations

import asyncio
import logging

from cryptography.hazmat.primitives.ciphers import CipherContext

from v2py.app.dial_guard import dial_watching
from v2py.app.entropy import urandom
from v2py.app.handler import Dispatch
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable
from v2py.app.relay import relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Network, tcp
from v2py.errors import LocalProtocolError, ProtocolError
from v2py.protocol.mtproto import (
    ABRIDGED,
    DATACENTER_PORT,
    DATACENTERS,
    HEADER_BYTES,
    client_handshake,
    server_handshake,
)
from v2py.proxy.vmess_outbound import DIAL_TIMEOUT_S
from v2py.transport import Transport
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream, UnendedPullLayer

__all__ = ["MtprotoInbound", "MtprotoOutbound", "MtprotoStream"]

log = logging.getLogger(__name__)


class MtprotoStream(UnendedPullLayer):
    """A stream whose bytes are XORed with one AES-CTR keystream each way (pull mode;
    no end marker, so the relay never half-closes it)."""

    def __init__(
        self, below: Stream, decrypt: CipherContext, encrypt: CipherContext, rest: bytes = b""
    ) -> None:
        self._below = below
        self._push: PushTarget | None = None
        self._decrypt = decrypt
        self._encrypt = encrypt
        self._pending = decrypt.update(rest) if rest else b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._below.write(self._encrypt.update(bytes(data)))

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        below: Stream = self._below
        data = await below.read(max_bytes)
        return self._decrypt.update(data) if data else b""


class MtprotoInbound:
    """The ``mtproto`` inbound: 4.34 serves the first configured user only."""

    def __init__(
        self, *, tag: str, secret: bytes, level: int, email: str, policy: PolicyTable
    ) -> None:
        self.tag = tag
        self.secret = secret
        self.level = level
        self.email = email
        self.policy = policy

    async def start(self, dispatcher: Dispatch) -> None:
        return None

    def close(self) -> None:
        return None

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        slog = session_logger(log, session)
        header = b""
        try:
            async with asyncio.timeout(self.policy.for_level(self.level).handshake):
                while len(header) < HEADER_BYTES:
                    data = await stream.read(HEADER_BYTES - len(header))
                    if not data:
                        break
                    header += data
            handshake = server_handshake(header, self.secret)
        except (ValueError, TimeoutError) as exc:
            slog.info("mtproto: connection ends: %s", exc or "handshake timed out")
            return
        session.user_email = self.email
        session.level = self.level
        session.mtproto = (handshake.connection_type, handshake.datacenter)
        session.destination = tcp(DATACENTERS[handshake.datacenter], DATACENTER_PORT)
        wrapped = MtprotoStream(stream, handshake.decrypt, handshake.encrypt)
        try:
            await dispatcher.dispatch(session, wrapped)
        except (OSError, ProtocolError) as exc:
            slog.info("mtproto: connection ends: %s", exc)


class MtprotoOutbound:
    """The ``mtproto`` outbound (no settings)."""

    def __init__(self, *, tag: str, policy: PolicyTable, transport: Transport) -> None:
        self.tag = tag
        self.policy = policy
        self.transport = transport

    async def _open(self, session: Session) -> MtprotoStream:
        dest = session.destination
        assert dest is not None
        below = await self.transport.dial(dest.address, dest.port, timeout=DIAL_TIMEOUT_S)
        kind = session.mtproto[0] if session.mtproto is not None else ABRIDGED
        handshake = client_handshake(kind, urandom)
        below.write(handshake.header)
        return MtprotoStream(below, handshake.decrypt, handshake.encrypt)

    async def handle(self, session: Session, stream: Stream) -> None:
        dest = session.destination
        if dest is None or dest.network is not Network.TCP:
            raise LocalProtocolError(f"mtproto: not TCP traffic {dest}")
        timeouts = self.policy.for_level(session.level)
        mstream, stream = await dial_watching(
            stream, lambda: self._open(session), timeouts, discard=MtprotoStream.close
        )
        try:
            await relay(stream, mstream, timeouts)
        finally:
            mstream.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """4.34 refuses UDP here ("not TCP traffic"): the session ends at once."""
        session_logger(log, session).info("mtproto: not TCP traffic %s", session.destination)
