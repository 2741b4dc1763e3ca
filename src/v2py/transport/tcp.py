"""TCP as a :class:`~v2py.transport.stream.Stream`, on ``asyncio.Protocol`` (not streams).

Reads hand out the kernel's chunks without copying them into a shared buffer;
reading pauses above a high-water mark, so a slow consumer exerts backpressure on
the peer, and ``drain`` waits on the transport's own write-buffer limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from v2py.transport.hosts import static_addresses
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget

if TYPE_CHECKING:
    from v2py.transport.sockopt import SocketOptions

log = logging.getLogger(__name__)

#: Pause reading from the socket when this much is buffered and unread.
READ_HIGH_WATER_BYTES = 512 * 1024
#: Write-buffer limits of the transport (drain blocks above the high mark).
WRITE_HIGH_WATER_BYTES = 512 * 1024
WRITE_LOW_WATER_BYTES = 128 * 1024
#: struct linger {l_onoff = 1, l_linger = 0}: close() sends RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


class TcpStream(asyncio.Protocol):
    """One TCP connection; also the protocol object asyncio drives."""

    #: A transport connection: the relay never half-closes it (app/relay.py).
    relays_end = False

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        # A list, not a deque: a deque's first block costs ~600 B on every idle connection.
        self._chunks: list[bytes | memoryview] = []
        self._buffered = 0
        self._eof = False
        self._lost: BaseException | None = None
        self._closed = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._closed_fut: asyncio.Future[None] = self._loop.create_future()
        self._peer: tuple[str, int] | None | bool = False  # False: not looked up yet
        self._local: tuple[str, int] | None | bool = False
        # Push mode (PushStream): arrivals go straight to the target.
        self._push: PushTarget | None = None
        self._push_paused = False
        self._writable_cb: Callable[[BaseException | None], None] | None = None

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER_BYTES, WRITE_LOW_WATER_BYTES)
        # TCP_NODELAY: both asyncio (3.7+) and uvloop set it on every TCP transport.
        # Addresses are looked up on first use: dialled streams rarely need them.

    def data_received(self, data: bytes) -> None:
        push = self._push
        if push is not None and not self._push_paused:
            push.pushed_data(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER_BYTES:
            self._set_reading(False)
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._end_push()
        self._wake_reader()
        return True  # keep our sending side open (half-close)

    def _end_push(self) -> None:
        """Push the end (once) if pushing and nothing is held back."""
        push = self._push
        if push is not None and not self._push_paused and not self._chunks:
            self._push = None
            push.pushed_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("connection closed")
        self._eof = True
        self._closed = True
        self._wake_reader()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        self._drain_waiter = None
        callback = self._writable_cb
        self._writable_cb = None
        if callback is not None:
            callback(ConnectionResetError("connection lost"))
        self._end_push()  # what read() would see: the end
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        self._drain_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        callback = self._writable_cb
        if callback is not None:
            self._writable_cb = None
            callback(None)

    # -- push mode (PushStream) ---------------------------------------------
    @property
    def can_push(self) -> bool:
        return True

    def start_push(self, target: PushTarget) -> None:
        self._push = target
        self._push_paused = False
        self._flush_to_push()

    def _flush_to_push(self) -> None:
        """Hand buffered input (then the end, if seen) to the push target."""
        target = self._push
        if target is None or self._push_paused:
            return
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if isinstance(data, memoryview):
                data = bytes(data)
            chunks.clear()
            self._buffered = 0
            self._set_reading(True)
            target.pushed_data(data)
        if self._eof:
            self._end_push()

    def stop_push(self) -> None:
        self._push = None
        self._writable_cb = None
        if self._push_paused:
            self._push_paused = False
            self._set_reading(self._buffered <= READ_HIGH_WATER_BYTES)

    def pause_push(self) -> None:
        if self._push is not None and not self._push_paused:
            self._push_paused = True
            self._set_reading(False)

    def resume_push(self) -> None:
        if self._push_paused:
            self._push_paused = False
            self._set_reading(True)
            self._flush_to_push()

    def _set_reading(self, on: bool) -> None:
        transport = self._transport
        if transport is None or self._closed or on is not self._read_paused:
            return  # already in that state (``_read_paused`` is "not reading")
        self._read_paused = not on
        with contextlib.suppress(RuntimeError, AttributeError):
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None:
        if self._closed:
            callback(ConnectionResetError("connection lost"))
        elif not self._write_paused:
            callback(None)
        else:
            self._writable_cb = callback

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- Stream -----------------------------------------------------------
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            self._read_waiter = self._loop.create_future()
            await self._read_waiter
        chunk = chunks[0]
        if len(chunk) <= max_bytes:
            if len(chunks) > 2 and len(chunk) < max_bytes:
                # Coalesce small kernel reads so the layers above get big batches.
                total = len(chunk)
                n = 1
                while n < len(chunks) and total + len(chunks[n]) <= max_bytes:
                    total += len(chunks[n])
                    n += 1
                chunk = b"".join(chunks[:n])
                del chunks[:n]
            else:
                del chunks[0]
        else:
            # Hand out the front only; the rest stays a view (no copy of the tail).
            view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
            self._chunks[0] = view[max_bytes:]
            chunk = bytes(view[:max_bytes])
            self._buffered -= len(chunk)
            self._maybe_resume()
            return chunk
        if isinstance(chunk, memoryview):
            chunk = bytes(chunk)
        self._buffered -= len(chunk)
        self._maybe_resume()
        return chunk

    def _maybe_resume(self) -> None:
        if self._buffered <= READ_HIGH_WATER_BYTES // 2:
            self._set_reading(True)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._transport is None or self._closed or self._transport.is_closing():
            raise ConnectionResetError("write on a closed connection")
        self._transport.write(data)

    async def drain(self) -> None:
        if self._closed:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        if self._drain_waiter is None:
            self._drain_waiter = self._loop.create_future()
        await self._drain_waiter

    def write_eof(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent data (RST where the kernel has unread input)."""
        if self._transport is not None:
            self._transport.abort()

    def reset(self) -> None:
        """Close at once with an RST whatever is buffered (SO_LINGER 0), as a kernel does
        when a socket is closed with input unread; see the VMess inbound's drain."""
        transport = self._transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed_fut)

    def raw_socket(self) -> socket.socket | None:
        """The connection's socket (for getsockopt / getsockname), None once detached."""
        transport = self._transport
        if transport is None:
            return None
        return cast("socket.socket | None", transport.get_extra_info("socket"))

    def _address(self, key: str) -> tuple[str, int] | None:
        transport = self._transport
        if transport is None:
            return None
        try:
            addr = transport.get_extra_info(key)
        except (OSError, RuntimeError, AttributeError):
            return None
        return (addr[0], addr[1]) if isinstance(addr, tuple) else None

    @property
    def peer(self) -> tuple[str, int] | None:
        if self._peer is False:
            self._peer = self._address("peername")
        return self._peer  # type: ignore[return-value]

    @property
    def local(self) -> tuple[str, int] | None:
        if self._local is False:
            self._local = self._address("sockname")
        return self._local  # type: ignore[return-value]

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks


async def dial_tcp(
    host: str,
    port: int,
    *,
    timeout: float | None = None,
    options: SocketOptions | None = None,
    source: str | None = None,
) -> TcpStream:
    """Connect to ``host:port`` and return the stream. Raises OSError / TimeoutError.

    ``options`` (``sockopt``) are set and ``source`` (an outbound's ``sendThrough``
    IP) is bound before connecting, as 4.34's system dialer does.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        if options is None and source is None:
            # A name in /etc/hosts is dialled at its addresses (transport/hosts.py), as
            # Go's resolver answers it, without a resolver thread.
            static = static_addresses(host)
            if not static:
                _, proto = await loop.create_connection(lambda: TcpStream(loop), host, port)
                return proto
            last: OSError | None = None
            for address in static:
                try:
                    _, proto = await loop.create_connection(lambda: TcpStream(loop), address, port)
                except OSError as exc:
                    last = exc
                    continue
                return proto
            assert last is not None
            raise last
        sock = await _connect_with(host, port, options, source)
        try:
            _, proto = await loop.create_connection(lambda: TcpStream(loop), sock=sock)
        except BaseException:
            sock.close()
            raise
    return proto


async def _connect_with(
    host: str, port: int, options: SocketOptions | None, source: str | None
) -> socket.socket:
    """A socket with ``options`` set, bound to ``source``, connected to ``host:port``
    (each resolved address in turn; with a source, only those of its family, as Go's
    dialer filters them)."""
    from v2py.transport.sockopt import apply_outbound_options

    loop = asyncio.get_running_loop()
    static = static_addresses(host)
    if static:
        infos = [
            info
            for address in static
            for info in await loop.getaddrinfo(address, port, type=socket.SOCK_STREAM)
        ]
    else:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    source_family = None
    if source is not None:
        source_family = socket.AF_INET6 if ":" in source else socket.AF_INET
        infos = [info for info in infos if info[0] == source_family]
        if not infos:
            raise OSError(f"no {host} address of the family of sendThrough {source}")
    last: OSError | None = None
    for family, _, proto, _, address in infos:
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        try:
            sock.setblocking(False)
            if options is not None:
                apply_outbound_options(sock, options)
            if source is not None:
                sock.bind((source, 0))
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert last is not None  # getaddrinfo returns at least one address or raises
    raise last


class TcpListener:
    """A listening socket whose accepted connections each run ``handler(stream)`` in a task.

    Handler exceptions are logged, never propagated to the listener; ``close()``
    stops accepting and cancels every running handler.
    """

    def __init__(self, handler: Callable[[TcpStream], Awaitable[None]]) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        options: SocketOptions | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        if options is not None:
            sock = _listening_socket(host, port, reuse_port, options)
            try:
                self._server = await loop.create_server(
                    lambda: _AcceptingStream(self, loop), sock=sock, backlog=1024
                )
            except BaseException:
                sock.close()
                raise
            return
        self._server = await loop.create_server(
            lambda: _AcceptingStream(self, loop),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=1024,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (for getsockopt / getsockname)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    def _spawn(self, stream: TcpStream) -> None:
        task = stream._loop.create_task(self._run(stream))  # 3.11: get_running_loop() = getpid()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, stream: TcpStream) -> None:
        try:
            await self._handler(stream)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad connection never stops a listener
            log.exception("connection handler failed")
        finally:
            stream.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    def stop_accepting(self) -> None:
        """Close the listening socket but let established connections run on."""
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class _AcceptingStream(TcpStream):
    def __init__(self, listener: TcpListener, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._listener._spawn(self)


def _listening_socket(
    host: str, port: int, reuse_port: bool, options: SocketOptions
) -> socket.socket:
    """A bound socket with ``options`` set before binding (4.34 sets them in the
    listener's Control hook), otherwise as asyncio's ``create_server`` makes it."""
    from v2py.transport.sockopt import apply_inbound_options

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        apply_inbound_options(sock, options)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def listen_tcp(
    host: str,
    port: int,
    handler: Callable[[TcpStream], Awaitable[None]],
    *,
    reuse_port: bool = False,
    options: SocketOptions | None = None,
) -> TcpListener:
    """Listen on ``host:port``; every accepted connection runs ``handler(stream)``.

    ``reuse_port`` sets SO_REUSEPORT (worker processes sharing the port);
    ``options`` (``sockopt``) are set on the listening socket before it is bound.
    """
    listener = TcpListener(handler)
    await listener.start(host, port, reuse_port=reuse_port, options=options)
    return listener
