"""The ``shadowsocks`` outbound (v2ray-core 4.34 ``proxy/shadowsocks/client.go``); the
wire format is ``protocol/shadowsocks.py``.

As 4.34: a server is picked round robin and dialled through the outbound's transport
(up to 5 attempts, VMess's delays); the salt and the sealed destination leave at once,
before any payload; the response's salt is read before its first chunk. The
destination v1.mux.cool:9527 carries Mux.Cool like any other. No end marker: the
connection closes when the relay ends (no half-close). UDP sessions use a UDP socket
to the server (``sendThrough``, ``sockopt``; under ``proxySettings`` the chained
outbound's packet link), one sealed datagram per payload; an answer that does not
decode ends the session, as 4.34's ``UDPReader`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from v2py.app.dial_guard import dial_watching
from v2py.app.entropy import urandom
from v2py.app.packet import PacketLink, relay_datagrams
from v2py.app.policy import PolicyTable
from v2py.app.relay import relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, Network
from v2py.errors import ProtocolError, RemoteProtocolError
from v2py.protocol.shadowsocks import (
    ChunkOpener,
    ChunkSealer,
    Cipher,
    encode_request_header,
    open_datagram,
    seal_datagram,
)
from v2py.proxy.socks_outbound import (
    PacketChannel,
    PacketOpener,
    ServerPicker,
    dial_with_retries,
    open_udp_channel,
)
from v2py.proxy.vmess_outbound import DIAL_DELAYS_S, DIAL_TIMEOUT_S
from v2py.transport import Transport
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream, UnendedPullLayer

__all__ = ["ShadowsocksLayer", "ShadowsocksOutbound", "ShadowsocksServer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShadowsocksServer:
    """One ``servers`` entry: where, the cipher and key of its one user, and the user."""

    address: str
    port: int
    cipher: Cipher
    key: bytes
    level: int = 0
    email: str = ""


class ShadowsocksLayer(UnendedPullLayer):
    """A Shadowsocks stream over the transport stream ``_below``: writes are sealed,
    reads opened after the peer's salt. No end marker (the relay never half-closes
    it), pull mode only. ``opener`` is given when the salt was already read (the
    server side) or the cipher is ``none``; ``rest`` is plaintext already opened."""

    def __init__(
        self,
        below: Stream,
        cipher: Cipher,
        key: bytes,
        sealer: ChunkSealer | None,
        *,
        opener: ChunkOpener | None = None,
        rest: bytes = b"",
        prefix: bytes = b"",
    ) -> None:
        self._below = below
        self._push: PushTarget | None = None
        self._cipher = cipher
        self._key = key
        self._sealer = sealer
        self._opener = opener
        self._salt = bytearray() if opener is None and cipher.is_aead else None
        self._pending = rest
        self._prefix = prefix  # bytes to send before the first sealed ones (a salt)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        sealed = self._sealer.seal(data) if self._sealer is not None else bytes(data)
        if self._prefix:
            sealed, self._prefix = self._prefix + sealed, b""
        self._below.write(sealed)

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        while not self._pending:
            below: Stream = self._below
            data = await below.read(max(max_bytes, READ_CHUNK_BYTES))
            if not data:
                return b""
            self._pending = self._open(data)
            if self._opener is not None and self._opener.ended and not self._pending:
                return b""
        data = self._pending
        if len(data) > max_bytes:
            data, self._pending = data[:max_bytes], data[max_bytes:]
        else:
            self._pending = b""
        return data

    def _open(self, data: bytes) -> bytes:
        salt = self._salt
        if salt is not None:
            need = self._cipher.salt_size - len(salt)
            salt += data[:need]
            data = data[need:]
            if len(salt) < self._cipher.salt_size:
                return b""
            self._opener = self._cipher.opener(self._key, bytes(salt))
            self._salt = None
        opener = self._opener
        if opener is None:
            return data
        try:
            return opener.feed(data)
        except ValueError as exc:
            raise RemoteProtocolError(f"shadowsocks: {exc}") from None


class _DatagramChannel:
    """A session's datagrams over a UDP channel to the server, sealed both ways."""

    def __init__(self, channel: PacketChannel, server: ShadowsocksServer, dest: Destination):
        self._channel = channel
        self._server = server
        self._dest = dest

    def write_datagram(self, data: bytes) -> None:
        server = self._server
        packet = seal_datagram(
            server.cipher, server.key, self._dest.address, self._dest.port, data, urandom
        )
        if packet is not None:
            self._channel.send(packet)

    async def drain(self) -> None:
        return None

    def write_eof(self) -> None:
        return None

    async def read_datagram(self) -> bytes | None:
        data = await self._channel.recv()
        if data is None:
            return None
        try:
            _, _, payload = open_datagram(self._server.cipher, self._server.key, data)
        except ValueError as exc:
            raise RemoteProtocolError(f"shadowsocks: {exc}") from None
        return payload


class ShadowsocksOutbound:
    """The ``shadowsocks`` outbound handler."""

    def __init__(
        self,
        *,
        tag: str,
        servers: Sequence[ShadowsocksServer],
        policy: PolicyTable,
        transport: Transport,
        open_packets: PacketOpener = open_udp_channel,
    ) -> None:
        self.tag = tag
        self.picker = ServerPicker(servers)
        self.policy = policy
        self.transport = transport
        self._open_packets = open_packets

    async def _open(self, session: Session) -> tuple[ShadowsocksLayer, int]:
        """The Shadowsocks stream and the picked server user's level."""
        dest = session.destination
        assert dest is not None
        slog = session_logger(log, session)
        below, server = await dial_with_retries(
            self.transport, self.picker, DIAL_DELAYS_S, DIAL_TIMEOUT_S, slog, "shadowsocks"
        )
        try:
            header, sealer = encode_request_header(
                server.cipher, server.key, dest.address, dest.port, urandom
            )
        except ValueError:
            below.close()
            raise
        if log.isEnabledFor(logging.INFO):
            slog.info(
                "shadowsocks: tunneling request to %s via %s:%d", dest, server.address, server.port
            )
        below.write(header)  # 4.34 flushes salt and address before any payload
        return ShadowsocksLayer(below, server.cipher, server.key, sealer), server.level

    async def handle(self, session: Session, stream: Stream) -> None:
        (sstream, level), stream = await dial_watching(
            stream,
            lambda: self._open(session),
            self.policy.for_level(session.level),
            discard=lambda opened: opened[0].close(),
        )
        try:
            # 4.34 times the outbound at the picked user's level, the inbound at its own.
            await relay(stream, sstream, self.policy.for_levels(session.level, level))
        finally:
            sstream.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        dest = session.destination
        assert dest is not None and dest.network is Network.UDP
        server = self.picker.pick()
        channel = await self._open_packets(server.address, server.port)
        timeouts = self.policy.for_levels(session.level, server.level)
        if log.isEnabledFor(logging.INFO):
            session_logger(log, session).info(
                "shadowsocks: tunneling request to %s via %s:%d", dest, server.address, server.port
            )
        try:
            channel_stream = _DatagramChannel(channel, server, dest)
            await relay_datagrams(link, channel_stream, timeouts.downlink_only)
        except* (OSError, ProtocolError) as errors:
            session_logger(log, session).info(
                "shadowsocks: udp relay ended: %s", errors.exceptions[0]
            )
        finally:
            channel.close()
