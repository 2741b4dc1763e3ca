"""The ``trojan`` outbound (v2ray-core 4.34 ``proxy/trojan/client.go``); the wire format
is ``protocol/trojan.py``.

As 4.34: a server is picked round robin and dialled through the outbound's transport
(up to 5 attempts, VMess's delays; TLS or WebSocket are the transport's layers); the
request header leaves with the first payload and never alone (4.34's ``ConnWriter``:
a client that sends nothing sends no header, so a target that speaks first is not
reached until the client speaks); the relay is timed at the server user's level and
the inbound's, the shorter of each (4.34's two timers). The
destination v1.mux.cool:9527 is an ordinary TCP request (Mux.Cool over Trojan, served
by the other side's mux server). UDP sessions are command 3 with the session's
destination in every packet; the addresses of response packets are not read. No end
marker exists: the connection closes when the relay ends (no half-close).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from v2py.app.dial_guard import dial_watching
from v2py.app.packet import PacketLink, relay_datagrams
from v2py.app.policy import PolicyTable
from v2py.app.relay import relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, Network
from v2py.errors import ProtocolError, RemoteProtocolError
from v2py.protocol.trojan import (
    COMMAND_TCP,
    COMMAND_UDP,
    PacketReader,
    encode_packet,
    encode_request,
    password_key,
)
from v2py.proxy.socks_outbound import ServerPicker, dial_with_retries
from v2py.proxy.vmess_outbound import DIAL_DELAYS_S, DIAL_TIMEOUT_S
from v2py.transport import Transport
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream, UnendedLayer

__all__ = ["TrojanLayer", "TrojanOutbound", "TrojanServer", "TrojanStream", "TrojanUser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrojanUser:
    """A Trojan user: the password, its key (``protocol.trojan.password_key``), level
    and email."""

    password: str
    level: int = 0
    email: str = ""
    key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", password_key(self.password))


@dataclass(frozen=True, slots=True)
class TrojanServer:
    address: str
    port: int
    user: TrojanUser


class TrojanLayer(UnendedLayer):
    """What both Trojan streams share over the transport stream ``_below``: no end
    marker (4.34 calls no ``CloseWrite``), and the UDP framing on top of ``read`` and
    ``write`` (``write_datagram`` to ``_target``, ``read_datagram``)."""

    _packets: PacketReader | None = None
    _datagrams: list[bytes]
    _target: Destination | None = None

    if TYPE_CHECKING:  # each stream has its own (a stub here would shadow a base's)

        async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes: ...

    def write_datagram(self, data: bytes) -> None:
        target = self._target
        if target is None:
            raise RuntimeError("trojan: no UDP destination")
        packet = encode_packet(target.address, target.port, data)
        if packet:
            self.write(packet)

    async def read_datagram(self) -> bytes | None:
        """The next non-empty payload (as 4.34's readers, which pass on no empty
        buffer); None at the end. Raises RemoteProtocolError for a broken stream."""
        if self._packets is None:
            self._packets = PacketReader()
            self._datagrams = []
        while not self._datagrams:
            data = await self.read()
            if not data:
                if self._packets.pending:
                    raise RemoteProtocolError("trojan: unexpected EOF")
                return None
            try:
                packets = self._packets.feed(data)
            except ValueError as exc:
                raise RemoteProtocolError(f"trojan: {exc}") from None
            self._datagrams.extend(p.payload for p in packets if p.payload)
        return self._datagrams.pop(0)


class TrojanStream(TrojanLayer):
    """The client side: the request header goes with the first (non-empty) write."""

    def __init__(self, below: Stream, header: bytes, *, level: int, target: Destination) -> None:
        self._below = below
        self._push: PushTarget | None = None
        self._header: bytes | None = header
        self._target = target
        self.level = level

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        header = self._header
        if header is not None:
            self._header = None
            self._below.write(header + bytes(data))
            return
        self._below.write(data)

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        below: Stream = self._below
        return await below.read(max_bytes)


class TrojanOutbound:
    """The ``trojan`` outbound handler (one user per server, as 4.34's config)."""

    def __init__(
        self,
        *,
        tag: str,
        servers: Sequence[TrojanServer],
        policy: PolicyTable,
        transport: Transport,
        rng: random.Random | None = None,
    ) -> None:
        self.tag = tag
        self.picker = ServerPicker(servers, rng)
        self.policy = policy
        self.transport = transport

    async def _open(self, session: Session, command: int) -> TrojanStream:
        dest = session.destination
        assert dest is not None
        slog = session_logger(log, session)
        below, server = await dial_with_retries(
            self.transport, self.picker, DIAL_DELAYS_S, DIAL_TIMEOUT_S, slog, "trojan"
        )
        user = server.user
        try:
            header = encode_request(user.key, command, dest.address, dest.port)
        except ValueError:
            below.close()
            raise
        if log.isEnabledFor(logging.INFO):
            slog.info(
                "trojan: tunneling request to %s via %s:%d", dest, server.address, server.port
            )
        return TrojanStream(below, header, level=user.level, target=dest)

    async def handle(self, session: Session, stream: Stream) -> None:
        tstream, stream = await dial_watching(
            stream,
            lambda: self._open(session, COMMAND_TCP),
            self.policy.for_level(session.level),
            discard=TrojanStream.close,
        )
        try:
            await relay(stream, tstream, self.policy.for_levels(session.level, tstream.level))
        finally:
            tstream.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        dest = session.destination
        assert dest is not None and dest.network is Network.UDP
        tstream = await self._open(session, COMMAND_UDP)
        timeouts = self.policy.for_levels(session.level, tstream.level)
        try:
            await relay_datagrams(link, tstream, timeouts.downlink_only)
        except* (OSError, ProtocolError) as errors:
            session_logger(log, session).info("trojan: udp relay ended: %s", errors.exceptions[0])
        finally:
            tstream.close()
