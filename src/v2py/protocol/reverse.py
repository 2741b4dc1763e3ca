"""The reverse proxy's control message and worker rules, sans I/O (v2ray-core 4.34
``app/reverse/{config.proto,config.go,bridge.go,portal.go}``; ``docs/reverse.md``).

A portal opens one Mux.Cool session per bridge connection to the UDP destination
``reverse.internal.v2ray.com:0`` and sends a :class:`Control` message on it (one
datagram each) at once and then every 2 s. The message is protobuf
``v2ray.core.app.reverse.Control``::

    message Control {
      enum State { ACTIVE = 0; DRAIN = 1; }
      State state = 1;
      bytes random = 99;
    }

``random`` holds 0-63 random bytes (4.34 ``FillInRandom``: ``dice.Roll(64)``). proto3
leaves ``state`` out when it is ACTIVE and ``random`` out when it is empty, so the
usual message is ``9a 06 <len> <random>``; an ACTIVE message without random bytes is
empty and 4.34 then writes nothing at all.

After a connection has had more than 256 sessions the portal sends DRAIN once and
ends the control session; the bridge then stops counting that connection as a worker
(its sessions run to their end) and opens a new one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "BRIDGE_MONITOR_INTERVAL_S",
    "DRAIN_AFTER_SESSIONS",
    "HEARTBEAT_INTERVAL_S",
    "INTERNAL_DOMAIN",
    "MAX_RANDOM_BYTES",
    "SESSIONS_PER_BRIDGE_WORKER",
    "Control",
    "ControlError",
    "ControlState",
    "bridge_needs_worker",
    "decode_control",
    "encode_control",
    "new_control",
    "pick_worker",
]

#: The destination of a portal's control session (4.34 ``internalDomain``).
INTERNAL_DOMAIN = "reverse.internal.v2ray.com"
#: A portal sends a control message per bridge connection this often (``PortalWorker``).
HEARTBEAT_INTERVAL_S = 2.0
#: A bridge checks its connections this often (``Bridge.monitorTask``).
BRIDGE_MONITOR_INTERVAL_S = 2.0
#: A bridge opens another connection when its active ones average more sessions.
SESSIONS_PER_BRIDGE_WORKER = 16
#: A portal drains a connection that has had more sessions than this.
DRAIN_AFTER_SESSIONS = 256
#: ``random`` is 0 to this minus one bytes long.
MAX_RANDOM_BYTES = 64

_STATE_FIELD = 1
_RANDOM_FIELD = 99
_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5
_VARINT_MAX_BYTES = 10
_STATE_KEY = bytes((_STATE_FIELD << 3 | _WIRE_VARINT,))
_RANDOM_KEY = bytes((0x9A, 0x06))  # varint of 99 << 3 | 2
_INT32_MASK = 0xFFFFFFFF


class ControlError(ValueError):
    """A control message that protobuf cannot parse."""


class ControlState(enum.IntEnum):
    """``Control.State``: the portal's word on one bridge connection."""

    ACTIVE = 0
    DRAIN = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    """One control message. ``state`` is an int when it is no known State value
    (proto3 keeps unknown enum values)."""

    state: ControlState | int = ControlState.ACTIVE
    random: bytes = b""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_control(control: Control) -> bytes:
    """Serialize ``control`` as Go's ``proto.Marshal`` does (fields in number order,
    zero values left out). Raises ValueError for a state outside int32."""
    state = int(control.state)
    if not -(2**31) <= state < 2**31:
        raise ValueError(f"control state out of int32 range: {state}")
    out = b""
    if state:
        # negative enum values are sign-extended to 64 bits, as protobuf does
        out += _STATE_KEY + _varint(state & 0xFFFFFFFFFFFFFFFF)
    if control.random:
        out += _RANDOM_KEY + _varint(len(control.random)) + control.random
    return out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 7 * _VARINT_MAX_BYTES, 7):
        if pos >= len(data):
            raise ControlError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise ControlError("varint too long")


def decode_control(data: bytes | bytearray | memoryview) -> Control:
    """Parse one control message as protobuf does: the last ``state`` and ``random``
    win; unknown fields, and known ones with another wire type, are skipped (kept as
    unknown, as Go's protobuf does). Raises :class:`ControlError` on bad framing."""
    data = bytes(data)
    state: ControlState | int = ControlState.ACTIVE
    random = b""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ControlError("field number 0")
        if wire == _WIRE_VARINT:
            value, pos = _read_varint(data, pos)
            if number == _STATE_FIELD:
                value &= _INT32_MASK
                if value >= 2**31:
                    value -= 2**32
                state = ControlState(value) if value in (0, 1) else value
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(data, pos)
            if length > end - pos:
                raise ControlError("field runs past the end")
            if number == _RANDOM_FIELD:
                random = data[pos : pos + length]
            pos += length
        elif wire in (_WIRE_I64, _WIRE_I32):
            pos += 8 if wire == _WIRE_I64 else 4
            if pos > end:
                raise ControlError("field runs past the end")
        else:
            raise ControlError(f"unsupported wire type {wire}")
    return Control(state=state, random=random)


def new_control(state: ControlState, rng: Callable[[int], bytes]) -> Control:
    """A control message with 0-63 random bytes from ``rng`` (4.34 ``FillInRandom``)."""
    length = rng(1)[0] % MAX_RANDOM_BYTES
    return Control(state=state, random=rng(length) if length else b"")


def bridge_needs_worker(active_sessions: Sequence[int]) -> bool:
    """Whether a bridge opens another connection, given the session counts of its
    active connections (4.34 ``Bridge.monitor``: none, or more than 16 on average;
    the average is an integer division, as in Go)."""
    if not active_sessions:
        return True
    return sum(active_sessions) // len(active_sessions) > SESSIONS_PER_BRIDGE_WORKER


def pick_worker(workers: Sequence[tuple[bool, int]]) -> int | None:
    """The index of the connection a portal opens a session on, given each one's
    ``(draining, active sessions)``: the least busy one not draining, else the least
    busy one (4.34 ``StaticMuxPicker.PickAvailable``; its workers are never full),
    else None. Ties go to the first."""
    best: int | None = None
    for index, (draining, active) in enumerate(workers):
        if not draining and (best is None or active < workers[best][1]):
            best = index
    if best is not None:
        return best
    for index, (_, active) in enumerate(workers):
        if best is None or active < workers[best][1]:
            best = index
    return best
