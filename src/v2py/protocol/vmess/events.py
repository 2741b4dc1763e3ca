"""Events produced by the VMess connection cores (docs/spec/vmess.md sections 3, 6, 8).

STYLE section 4: frozen dataclasses named for what happened, one base class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.commands import SwitchAccount
from v2py.protocol.vmess.header import RequestHeader

if TYPE_CHECKING:
    from v2py.protocol.vmess.body import BodyReader

__all__ = [
    "VmessEvent",
    "RequestReceived",
    "ResponseReceived",
    "DataReceived",
    "DatagramReceived",
    "StreamEnded",
    "feed_body_events",
]


@dataclass(frozen=True, slots=True)
class VmessEvent:
    """Base class of VMess events."""


@dataclass(frozen=True, slots=True)
class RequestReceived(VmessEvent):
    """Server: a request header was authenticated and decoded (``aead``: header format)."""

    header: RequestHeader
    user: VmessUser
    aead: bool


@dataclass(frozen=True, slots=True)
class ResponseReceived(VmessEvent):
    """Client: the response header arrived; ``command`` is a SwitchAccount or None."""

    command: SwitchAccount | None


@dataclass(frozen=True, slots=True)
class DataReceived(VmessEvent):
    """Stream mode: all body plaintext decoded from one receive_data call."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DatagramReceived(VmessEvent):
    """Packet mode (UDP): one datagram, i.e. one chunk (spec 8.9)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded(VmessEvent):
    """The peer sent its end marker (spec 8.8) or closed a raw stream (EOF)."""


def feed_body_events(
    reader: BodyReader,
    data: bytes | bytearray | memoryview,
    *,
    packet: bool,
    events: list[VmessEvent],
) -> bool:
    """Decode body bytes into ``events`` (one DataReceived per call, or one
    DatagramReceived per UDP chunk); True when this call reached the end marker.

    Shared by the client and server cores. Raises VmessError on a bad chunk.
    """
    was_ended = reader.ended
    if packet:
        for dgram in reader.feed_packets(data):
            events.append(DatagramReceived(data=dgram))
    else:
        plain = reader.feed(data)
        if plain:
            # A fresh bytearray nobody else holds: bytes-like enough for every
            # consumer, and converting would copy each read once more.
            events.append(DataReceived(data=cast(bytes, plain)))
    return reader.ended and not was_ended
