"""Messages framed by a 2-byte big-endian length (DNS over TCP, VLESS UDP), pure."""

from __future__ import annotations

import struct

__all__ = ["LengthPrefixed"]

_LENGTH = struct.Struct("!H")


class LengthPrefixed:
    """Splits a byte stream into its length-prefixed messages (partial input is kept for
    the next feed). With ``max_size``, :meth:`feed` raises ValueError for a longer
    message ("message size too large: N")."""

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_size: int | None = None) -> None:
        self._buffer = bytearray()
        self._max = max_size

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        start = 0
        while len(buffer) - start >= 2:
            (size,) = _LENGTH.unpack_from(buffer, start)
            if self._max is not None and size > self._max:
                raise ValueError(f"message size too large: {size}")
            if len(buffer) - start - 2 < size:
                break
            messages.append(bytes(buffer[start + 2 : start + 2 + size]))
            start += 2 + size
        del buffer[:start]
        return messages
