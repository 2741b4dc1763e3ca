"""mKCP segment codec (docs/spec/mkcp.md section 4; v2ray-core
``transport/internet/kcp/segment.go``).

Three shapes share a 4-byte prefix ``conv u16 | cmd u8 | option u8``: DATA,
ACK and command-only (TERMINATE, PING and any unknown command). All integers
are big-endian. Pure module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ACK_MAX_NUMBERS",
    "AckSegment",
    "CommandSegment",
    "DataSegment",
    "KcpCommand",
    "OPTION_CLOSE",
    "Segment",
    "decode_segment",
    "decode_segments",
    "encode_segment",
]

#: Option bit: the sender has closed (V2Ray ``SegmentOptionClose``).
OPTION_CLOSE = 0x01
#: An ACK segment carries at most this many numbers.
ACK_MAX_NUMBERS = 128
UINT32_MASK = 0xFFFFFFFF

_PREFIX = struct.Struct(">HBB")
_DATA = struct.Struct(">HBBIIIH")
_ACK = struct.Struct(">HBBIIIB")
_CMD = struct.Struct(">HBBIII")
# V2Ray's parser wants this many bytes after the prefix before it reads a header
# (segment.go: DATA needs 15 although its header is 14, ACK 13, command-only 12).
_DATA_MIN_REST = 15
_ACK_MIN_REST = 13
_CMD_MIN_REST = 12


class KcpCommand(IntEnum):
    """Segment command byte (spec section 4.1)."""

    ACK = 0
    DATA = 1
    TERMINATE = 2
    PING = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSegment:
    """A DATA segment (spec section 4.2)."""

    conv: int
    option: int = 0
    timestamp: int
    number: int
    sending_next: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AckSegment:
    """An ACK segment (spec section 4.3); ``receiving_window`` is absolute."""

    conv: int
    option: int = 0
    receiving_window: int
    receiving_next: int
    timestamp: int
    numbers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSegment:
    """A command-only segment (spec section 4.4): TERMINATE, PING or unknown ``command``."""

    conv: int
    command: int
    option: int = 0
    sending_next: int
    receiving_next: int
    peer_rto: int


Segment = DataSegment | AckSegment | CommandSegment


def encode_segment(seg: Segment) -> bytes:
    """Serialize one segment.

    Raises ``ValueError`` for an ACK with more than 128 numbers or a payload over 65535 bytes.
    """
    if isinstance(seg, DataSegment):
        if len(seg.payload) > 0xFFFF:
            raise ValueError("DATA payload longer than 65535 bytes")
        return (
            _DATA.pack(
                seg.conv,
                KcpCommand.DATA,
                seg.option,
                seg.timestamp & UINT32_MASK,
                seg.number & UINT32_MASK,
                seg.sending_next & UINT32_MASK,
                len(seg.payload),
            )
            + seg.payload
        )
    if isinstance(seg, AckSegment):
        count = len(seg.numbers)
        if count > ACK_MAX_NUMBERS:
            raise ValueError(f"ACK carries at most {ACK_MAX_NUMBERS} numbers, got {count}")
        head = _ACK.pack(
            seg.conv,
            KcpCommand.ACK,
            seg.option,
            seg.receiving_window & UINT32_MASK,
            seg.receiving_next & UINT32_MASK,
            seg.timestamp & UINT32_MASK,
            count,
        )
        return head + struct.pack(f">{count}I", *(n & UINT32_MASK for n in seg.numbers))
    return _CMD.pack(
        seg.conv,
        seg.command,
        seg.option,
        seg.sending_next & UINT32_MASK,
        seg.receiving_next & UINT32_MASK,
        seg.peer_rto & UINT32_MASK,
    )


def decode_segment(buf: bytes | memoryview, offset: int = 0) -> tuple[Segment, int] | None:
    """Parse the segment at ``offset``; return it and the next offset, or ``None`` if malformed."""
    end = len(buf)
    if end - offset < _PREFIX.size:
        return None
    conv, cmd, option = _PREFIX.unpack_from(buf, offset)
    rest = end - offset - _PREFIX.size
    if cmd == KcpCommand.DATA:
        if rest < _DATA_MIN_REST:
            return None
        _, _, _, ts, number, snext, length = _DATA.unpack_from(buf, offset)
        start = offset + _DATA.size
        if end - start < length:
            return None
        payload = bytes(buf[start : start + length])
        data = DataSegment(
            conv=conv,
            option=option,
            timestamp=ts,
            number=number,
            sending_next=snext,
            payload=payload,
        )
        return data, start + length
    if cmd == KcpCommand.ACK:
        if rest < _ACK_MIN_REST:
            return None
        _, _, _, wnd, rnext, ts, count = _ACK.unpack_from(buf, offset)
        start = offset + _ACK.size
        if end - start < 4 * count:
            return None
        numbers = struct.unpack_from(f">{count}I", buf, start)
        ack = AckSegment(
            conv=conv,
            option=option,
            receiving_window=wnd,
            receiving_next=rnext,
            timestamp=ts,
            numbers=numbers,
        )
        return ack, start + 4 * count
    if rest < _CMD_MIN_REST:
        return None
    _, _, _, snext, rnext, rto = _CMD.unpack_from(buf, offset)
    cmd_seg = CommandSegment(
        conv=conv,
        command=cmd,
        option=option,
        sending_next=snext,
        receiving_next=rnext,
        peer_rto=rto,
    )
    return cmd_seg, offset + _CMD.size


def decode_segments(buf: bytes | memoryview) -> tuple[list[Segment], bool]:
    """Parse concatenated segments.

    Returns the segments parsed and whether the whole buffer was consumed cleanly
    (``False`` means a malformed tail was ignored, as V2Ray stops at the first
    segment it cannot read).
    """
    out: list[Segment] = []
    offset = 0
    end = len(buf)
    while offset < end:
        parsed = decode_segment(buf, offset)
        if parsed is None:
            return out, False
        seg, offset = parsed
        out.append(seg)
    return out, True
