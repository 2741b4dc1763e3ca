"""VMess body layer as a :class:`~v2py.transport.stream.Stream` over a transport stream.

One ``read`` of the transport (up to 256 KiB, what uvloop hands over at once) is fed
to the core in one call and all plaintext it completes comes back as one buffer;
one ``write`` seals as many chunks as needed into one transport write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from v2py.errors import VmessError
from v2py.protocol.vmess.commands import SwitchAccount
from v2py.protocol.vmess.events import (
    DatagramReceived,
    DataReceived,
    ResponseReceived,
    StreamEnded,
)
from v2py.transport.stream import READ_CHUNK_BYTES, PushLayer, PushTarget, Stream

#: Largest transport read: a whole uvloop read buffer (256,000 bytes) in one piece.
TRANSPORT_READ_BYTES = 256 * 1024


class EndedBeforeData(ConnectionAbortedError):
    """A direction ended before its first data where 4.34 ends the whole connection."""


class VmessStream(PushLayer):
    """Wraps a VMess connection core (client or server) and the transport below it.

    ``initial`` is plaintext the core already produced while the shell drove the
    handshake. ``on_command`` receives a client's SwitchAccount.
    """

    def __init__(
        self,
        transport: Stream,
        core: Any,
        *,
        on_command: Callable[[SwitchAccount], None] | None = None,
        is_client: bool = False,
    ) -> None:
        self._transport = transport
        self._core = core
        self._ended = False
        self._on_command = on_command
        self._is_client = is_client
        self._response_seen = not is_client
        self._eof_sent = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self.datagrams: list[bytes] = []
        self._push: PushTarget | None = None
        self._below = transport
        # Body bytes the core decoded together with the request header; the core's
        # pending output (a client's request header) is left for hold_output / write.
        self._pending = self._collect_events()

    def hold_output(self, delay: float) -> None:
        """Keep the core's pending output (a request header) until the first write, or
        until ``delay`` seconds pass, so the header and the first payload share one
        segment (4.34 ``CopyOnceTimeout(..., 100ms)`` before unbuffering)."""
        loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_later(delay, self._flush_held)

    def _flush_held(self) -> None:
        self._flush_handle = None
        out = self._core.data_to_send()
        if out:
            with contextlib.suppress(ConnectionError):
                self._transport.write(out)

    def _release_hold(self) -> None:
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()

    def _process_events(self) -> bytes:
        """Take the core's events (plaintext returned) and flush its output."""
        data = self._collect_events()
        out = self._core.data_to_send()
        if out:
            self._transport.write(out)
        return data

    def _feed(self, raw: bytes | bytearray) -> bytes:
        """Give the core what the transport read (``b""``: the transport's end) and
        return the plaintext it completed. At the end, a client that never got the
        response header raises VmessError; otherwise the stream has ended."""
        self._core.receive_data(raw)
        plain = self._process_events()
        if not raw:
            if not self._response_seen:
                raise VmessError("server closed the connection without a response")
            self._ended = True
        return plain

    def _collect_events(self) -> bytes:
        parts: list[bytes] = []
        next_event = self._core.next_event
        while (event := next_event()) is not None:
            if isinstance(event, DataReceived):
                parts.append(event.data)
            elif isinstance(event, DatagramReceived):
                self.datagrams.append(event.data)
            elif isinstance(event, ResponseReceived):
                self._response_seen = True
                if event.command is not None and self._on_command is not None:
                    self._on_command(event.command)
            elif isinstance(event, StreamEnded):
                self._ended = True
        return b"".join(parts) if len(parts) != 1 else parts[0]

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        # ``max_bytes`` bounds transport reads; decoded plaintext may be slightly larger
        # than one read, which the relay accepts.
        while True:
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            if self._ended:
                return b""
            self._pending = self._feed(await self._transport.read(TRANSPORT_READ_BYTES))

    async def read_datagram(self) -> bytes | None:
        """Packet mode: next datagram, or None at the end of the stream."""
        while True:
            if self.datagrams:
                return self.datagrams.pop(0)
            if self._ended:
                return None
            self._feed(await self._transport.read(TRANSPORT_READ_BYTES))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._flush_handle is not None:
            self._release_hold()
        core = self._core
        core.send_data(data)
        self._transport.write(core.data_to_send())

    def write_datagram(self, data: bytes) -> None:
        if self._flush_handle is not None:
            self._release_hold()
        self._core.send_datagram(data)
        self._transport.write(self._core.data_to_send())

    async def drain(self) -> None:
        await self._transport.drain()

    def write_eof(self) -> None:
        """Our direction ended: the end chunk, as 4.34. Two ends 4.34 treats as errors
        raise :class:`EndedBeforeData` so the relay ends at once and the connection is
        closed: a client's request that ends while its header still waits for the first
        payload (``CopyOnceTimeout`` fails: nothing is sent), and a server's response
        that ends before any data (the bare header is sent, no end chunk)."""
        if self._eof_sent:
            return
        self._eof_sent = True
        core = self._core
        if self._is_client:
            if self._flush_handle is not None:
                self._release_hold()
                raise EndedBeforeData("vmess: failed to write first payload > EOF")
        elif not core.response_started:
            core.end_before_data()
            with contextlib.suppress(ConnectionError):
                self._transport.write(core.data_to_send())
            raise EndedBeforeData("vmess: the response ended before any data > EOF")
        core.send_eof()
        out = core.data_to_send()
        if not out:
            # Raw stream (no ChunkStream option): no end marker, and 4.34 never
            # half-closes the connection; the relay's timers end it.
            return
        try:
            self._transport.write(out)
        except ConnectionError:
            return
        # VMess has its own end marker; keep the TCP connection open until the other
        # direction finishes, as 4.34 does (docs/spec/vmess.md 8.8).

    def close(self) -> None:
        self._release_hold()
        self._transport.close()

    # -- push mode (PushLayer over a push-capable transport) ------------------------
    def _take_held(self) -> bytes:
        held, self._pending = self._pending, b""
        return held

    def _held_end(self) -> bool:
        return self._ended

    def _below_target(self, target: PushTarget) -> PushTarget:
        return self  # raw body bytes come here; plaintext goes on to ``target``

    # The transport pushes raw body bytes here; plaintext goes on to our target.
    def pushed_data(self, data: bytes | bytearray) -> None:
        target = self._push
        if target is None:
            return
        try:
            plain = self._feed(data)
        except Exception as exc:  # a bad chunk (VmessError) or a failed write
            self.stop_push()
            target.pushed_error(exc)
            return
        if plain:
            target.pushed_data(plain)
        if self._ended and self._push is target:
            self.stop_push()
            target.pushed_eof()

    def pushed_eof(self) -> None:
        target = self._push
        if target is None:
            return
        self._push = None
        try:
            plain = self._feed(b"")
        except Exception as exc:
            target.pushed_error(exc)
            return
        if plain:
            target.pushed_data(plain)
        target.pushed_eof()

    def pushed_error(self, exc: BaseException) -> None:
        target = self._push
        self._push = None
        if target is not None:
            target.pushed_error(exc)

    async def wait_closed(self) -> None:
        await self._transport.wait_closed()

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._transport.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._transport.local
