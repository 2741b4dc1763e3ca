"""Events a KcpConnection reports (docs/spec/mkcp.md section 11)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionTerminated", "DataReceived", "KcpEvent", "StreamEnded"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KcpEvent:
    """Base class of mKCP events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(KcpEvent):
    """In-order application bytes from the peer."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(KcpEvent):
    """The peer finished sending and everything it sent has been delivered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTerminated(KcpEvent):
    """The connection reached the Terminated state; ``reason`` says why."""

    reason: str
