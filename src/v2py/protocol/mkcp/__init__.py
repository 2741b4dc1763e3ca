"""mKCP (V2Ray 4.34) as pure sans-I/O code; see docs/spec/mkcp.md."""

from __future__ import annotations

from v2py.protocol.mkcp.connection import KcpConnection, KcpState, KcpStatistics
from v2py.protocol.mkcp.events import ConnectionTerminated, DataReceived, KcpEvent, StreamEnded
from v2py.protocol.mkcp.packet import PacketCodec
from v2py.protocol.mkcp.settings import KcpSettings

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "KcpConnection",
    "KcpEvent",
    "KcpSettings",
    "KcpState",
    "KcpStatistics",
    "PacketCodec",
    "StreamEnded",
]
