"""The ``vless`` outbound (v2ray-core 4.34 ``proxy/vless/outbound``); the wire format is
``protocol/vless.py``.

As 4.34: a server is picked round robin and dialled through the outbound's transport
(up to 5 attempts, VMess's delays), a user of it at random; the request header leaves
with the first payload, or alone after 100 ms; the destination v1.mux.cool is command 3
(Mux.Cool over VLESS), UDP sessions are command 2 with length-prefixed datagrams. The
response header is checked (version) and stripped. No end marker exists: the connection
closes when the relay ends (as for every transport, no half-close).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from v2py.app.dial_guard import dial_watching
from v2py.app.packet import PacketLink, relay_datagrams
from v2py.app.policy import PolicyTable
from v2py.app.relay import relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Network
from v2py.errors import ProtocolError, RemoteProtocolError
from v2py.protocol.vless import (
    COMMAND_MUX,
    COMMAND_TCP,
    COMMAND_UDP,
    PacketReader,
    ResponseHeader,
    encode_request,
    frame_packet,
)
from v2py.protocol.vmess.header import MUX_COOL_HOST
from v2py.proxy.socks_outbound import ServerPicker, dial_with_retries
from v2py.proxy.vmess_outbound import DIAL_DELAYS_S, DIAL_TIMEOUT_S, FIRST_PAYLOAD_WAIT_S
from v2py.transport import Transport
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream, UnendedPullLayer

__all__ = ["VlessLayer", "VlessOutbound", "VlessServer", "VlessStream", "VlessUser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VlessUser:
    id: bytes
    level: int = 0
    email: str = ""


@dataclass(frozen=True, slots=True)
class VlessServer:
    address: str
    port: int
    users: tuple[VlessUser, ...]


class VlessLayer(UnendedPullLayer):
    """What both VLESS streams share over the transport stream ``_below``: no end marker
    (the relay never half-closes one; 4.34 calls no ``CloseWrite``), pull mode only (a
    header is stripped or added by ``read`` / ``write``), and the UDP framing
    (``write_datagram`` / ``read_datagram``) on top of them."""

    _packets: PacketReader | None = None
    _datagrams: list[bytes]

    if TYPE_CHECKING:  # each stream has its own (a stub here would shadow a base's)

        async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes: ...

    def write_datagram(self, data: bytes) -> None:
        packet = frame_packet(data)
        if packet is not None:
            self.write(packet)

    async def read_datagram(self) -> bytes | None:
        if self._packets is None:
            self._packets = PacketReader()
            self._datagrams = []
        while not self._datagrams:
            data = await self.read()
            if not data:
                return None
            self._datagrams.extend(p for p in self._packets.feed(data) if p)
        return self._datagrams.pop(0)


class VlessStream(VlessLayer):
    """The client side: the request header goes with the first write (or alone after
    ``hold`` seconds), the response header is stripped before the first read returns
    data."""

    def __init__(self, below: Stream, header: bytes, *, hold: float) -> None:
        self._below = below
        self._push: PushTarget | None = None
        self._header: bytes | None = header
        self._response = ResponseHeader()
        self._pending = b""
        self._timer = asyncio.get_running_loop().call_later(hold, self._flush_header)

    def _flush_header(self) -> None:
        if self._header is not None:
            header, self._header = self._header, None
            self._below.write(header)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._header is not None:
            self._timer.cancel()
            header, self._header = self._header, None
            self._below.write(header + bytes(data))
            return
        self._below.write(data)

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        below: Stream = self._below
        while True:
            data = await below.read(max_bytes)
            if not data:
                if not self._response.done:
                    raise RemoteProtocolError("vless: connection ended before the response")
                return b""
            if self._response.done:
                return data
            try:
                rest = self._response.feed(data)
            except ValueError as exc:
                raise RemoteProtocolError(f"vless: {exc}") from None
            if rest:
                data, self._pending = rest[:max_bytes], rest[max_bytes:]
                return data

    def close(self) -> None:
        self._timer.cancel()
        self._below.close()


class VlessOutbound:
    """The ``vless`` outbound handler; ``rng`` exists for tests."""

    def __init__(
        self,
        *,
        tag: str,
        servers: Sequence[VlessServer],
        policy: PolicyTable,
        transport: Transport,
        rng: random.Random | None = None,
    ) -> None:
        if not servers or any(not s.users for s in servers):
            raise ValueError("vless: every server needs a user")
        self.tag = tag
        self.picker = ServerPicker(servers, rng)
        self.policy = policy
        self.transport = transport

    async def _open(self, session: Session, command: int) -> tuple[VlessStream, int]:
        """The VLESS stream and the picked user's level."""
        dest = session.destination
        assert dest is not None
        slog = session_logger(log, session)
        below, server = await dial_with_retries(
            self.transport, self.picker, DIAL_DELAYS_S, DIAL_TIMEOUT_S, slog, "vless"
        )
        user = self.picker.user(server.users)
        assert user is not None
        try:
            header = encode_request(user.id, command, dest.address, dest.port)
        except ValueError:
            below.close()
            raise
        if log.isEnabledFor(logging.INFO):
            slog.info("vless: tunneling request to %s via %s:%d", dest, server.address, server.port)
        return VlessStream(below, header, hold=FIRST_PAYLOAD_WAIT_S), user.level

    async def handle(self, session: Session, stream: Stream) -> None:
        dest = session.destination
        command = COMMAND_MUX if dest is not None and dest.address == MUX_COOL_HOST else COMMAND_TCP
        (vstream, level), stream = await dial_watching(
            stream,
            lambda: self._open(session, command),
            self.policy.for_level(session.level),
            discard=lambda opened: opened[0].close(),
        )
        try:
            # 4.34 times the outbound at the picked user's level, the inbound at its own.
            await relay(stream, vstream, self.policy.for_levels(session.level, level))
        finally:
            vstream.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        dest = session.destination
        assert dest is not None and dest.network is Network.UDP
        vstream, level = await self._open(session, COMMAND_UDP)
        timeouts = self.policy.for_levels(session.level, level)
        try:
            await relay_datagrams(link, vstream, timeouts.downlink_only)
        except* (OSError, ProtocolError) as errors:
            session_logger(log, session).info("vless: udp relay ended: %s", errors.exceptions[0])
        finally:
            vstream.close()
