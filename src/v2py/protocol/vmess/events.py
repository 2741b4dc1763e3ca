"""Events produced by the VMess connection cores (spec vmess.md sections 3, 6, 8).

STYLE section 4: frozen dataclasses named for what happened, one base class.
"""

from __future__ import annotations

from dataclasses import dataclass

from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.commands import SwitchAccount
from v2py.protocol.vmess.header import RequestHeader

__all__ = [
    "VmessEvent",
    "RequestReceived",
    "ResponseReceived",
    "DataReceived",
    "DatagramReceived",
    "StreamEnded",
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
