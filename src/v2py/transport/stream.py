"""The byte-stream interface every transport and stream-wrapping proxy layer offers.

TCP (``transport/tcp.py``), mKCP (``transport/mkcp.py``) and the VMess body layer
all present this same shape, so proxies compose without knowing what is below
(v2ray-core ``transport/internet`` hands proxies a ``net.Conn`` the same way).
"""

from __future__ import annotations

from typing import Protocol

#: Largest single read the relay asks for.
READ_CHUNK_BYTES = 64 * 1024


class Stream(Protocol):
    """A reliable, ordered, bidirectional byte stream with half-close.

    * ``await read(n)`` returns 1..n bytes, or ``b""`` once the peer finished writing.
    * ``write(data)`` queues bytes without blocking; ``await drain()`` waits until the
      queue is below the high-water mark (backpressure).
    * ``write_eof()`` half-closes our sending side (a no-op where unsupported).
    * ``close()`` releases everything at once; ``await wait_closed()`` waits for that.
    """

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes: ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    async def drain(self) -> None: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...

    @property
    def peer(self) -> tuple[str, int] | None: ...

    @property
    def local(self) -> tuple[str, int] | None: ...
