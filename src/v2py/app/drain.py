"""Reading a failed connection out before closing it (v2ray-core 4.34 ``drainConnection``
of VMess and ``DrainConnN`` of Shadowsocks): an active prober sees the same bytes,
timing and FIN/RST as against 4.34."""

from __future__ import annotations

import asyncio
import contextlib

from v2py.transport.stream import READ_CHUNK_BYTES, Stream

__all__ = ["drain_stream"]


async def drain_stream(stream: Stream, remaining: int, deadline: float) -> bool:
    """Read and discard ``remaining`` more bytes, until the loop time ``deadline`` or
    the peer's end; True if all of them were read.

    When the peer sent more than that, 4.34 stops reading and closes with those bytes
    unread, so its kernel answers RST, not FIN: the stream is reset the same way, or
    one probe would tell the two apart.
    """
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout_at(deadline):
            while remaining > 0:
                data = await stream.read(READ_CHUNK_BYTES)
                if not data:
                    return False  # the peer closed first: io.CopyN ends at EOF in 4.34 too
                remaining -= len(data)
    if remaining < 0:
        reset = getattr(stream, "reset", None)
        if reset is not None:
            reset()
    return remaining <= 0
