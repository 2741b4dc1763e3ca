"""A UDP datagram transport that sends runs of datagrams in one system call (Linux UDP
GSO, ``UDP_SEGMENT``) and takes coalesced ones apart on receipt (``UDP_GRO``).

QUIC sends its data as many datagrams of one size; one ``sendto`` per datagram costs
the kernel's whole send path (and on loopback the receiver's too) per datagram. With
GSO the kernel cuts one buffer into datagrams of the given size: what goes on the wire
is unchanged, every datagram a datagram of its own. With GRO on the receiving socket,
the kernel hands over runs of datagrams from one sender in one buffer, with their size
in a control message. Where the kernel refuses either, this transport sends and
receives one datagram per call, as asyncio's own does.

The protocol gets the usual ``datagram_received(data, addr)`` per datagram; a sender
that has many datagrams at once calls :meth:`BatchDatagramTransport.send_many`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import socket
import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["BatchDatagramTransport", "open_batch_endpoint"]

_SOL_UDP = 17
_UDP_SEGMENT = 103
_UDP_GRO = 104
#: The kernel's limit on segments per GSO send (``UDP_MAX_SEGMENTS``, 64 before 5.x).
_MAX_SEGMENTS = 64
#: Bytes per GSO send: one IP packet's worth, with room for the headers.
_MAX_GSO_BYTES = 65000
_RECV_BYTES = 65535
_GRO_CMSG = socket.CMSG_SPACE(4)
#: Reads per readiness callback before other work gets a turn (uvloop reads 32).
_READS_PER_TURN = 32
#: Datagrams held while the socket's send buffer is full; more are dropped (UDP may lose).
_QUEUE_LIMIT = 4096
_U16 = struct.Struct("=H")
_I32 = struct.Struct("=i")

Address = Any


class BatchDatagramTransport(asyncio.DatagramTransport):
    """A datagram transport over the non-blocking UDP socket ``sock`` (see module doc)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._closing = False
        self._queue: collections.deque[tuple[bytes, Address]] = collections.deque()
        self._gso = True
        self._gro = False
        with contextlib.suppress(OSError):
            sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
            self._gro = True
        self._extra = {
            "socket": sock,
            "sockname": sock.getsockname(),
            "peername": None,
        }
        loop.add_reader(sock.fileno(), self._read_ready)
        loop.call_soon(protocol.connection_made, self)

    # -- asyncio.BaseTransport -------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        if self._queue:
            self._loop.remove_writer(self._sock.fileno())
            self._queue.clear()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    # -- receiving --------------------------------------------------------------
    def _read_ready(self) -> None:
        sock = self._sock
        protocol = self._protocol
        for _ in range(_READS_PER_TURN):
            if self._closing:
                return
            try:
                if self._gro:
                    data, ancillary, _, addr = sock.recvmsg(_RECV_BYTES, _GRO_CMSG)
                else:
                    data, addr = sock.recvfrom(_RECV_BYTES)
                    ancillary = []
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            size = 0
            for level, kind, value in ancillary:
                if level == _SOL_UDP and kind == _UDP_GRO and len(value) >= 4:
                    size = _I32.unpack_from(value)[0]
            if 0 < size < len(data):
                view = memoryview(data)
                for start in range(0, len(data), size):
                    protocol.datagram_received(bytes(view[start : start + size]), addr)
            else:
                protocol.datagram_received(data, addr)

    # -- sending ---------------------------------------------------------------
    def sendto(self, data: bytes | bytearray | memoryview, addr: Address = None) -> None:
        if self._closing:
            return
        if self._queue:
            self._hold(bytes(data), addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._hold(bytes(data), addr)
        except OSError as exc:
            self._protocol.error_received(exc)

    def send_many(self, datagrams: Sequence[bytes], addr: Address) -> None:
        """Send ``datagrams`` to ``addr`` in order: each run of equal-size ones (and a
        shorter one closing the run) in one GSO call."""
        if self._closing:
            return
        count = len(datagrams)
        if not self._gso or self._queue or count == 1:
            for data in datagrams:
                self.sendto(data, addr)
            return
        i = 0
        while i < count:
            size = len(datagrams[i])
            j = i + 1
            total = size
            limit = min(count, i + _MAX_SEGMENTS)
            while j < limit and len(datagrams[j]) == size and total + size <= _MAX_GSO_BYTES:
                total += size
                j += 1
            last = len(datagrams[j]) if j < limit else size
            if last < size and total + last <= _MAX_GSO_BYTES:
                j += 1  # a shorter datagram may close a run
            if j - i == 1:
                self.sendto(datagrams[i], addr)
            elif not self._send_run(datagrams, i, j, size, addr):
                for data in datagrams[i:]:
                    self.sendto(data, addr)
                return
            i = j

    def _send_run(
        self, datagrams: Sequence[bytes], i: int, j: int, size: int, addr: Address
    ) -> bool:
        """One GSO send of ``datagrams[i:j]``; False when the rest must go one by one
        (the socket is full, or the kernel refuses GSO: then never again here)."""
        try:
            self._sock.sendmsg(
                [b"".join(datagrams[i:j])], [(_SOL_UDP, _UDP_SEGMENT, _U16.pack(size))], 0, addr
            )
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                self._gso = False
                return False
            self._protocol.error_received(exc)
        return True

    def _hold(self, data: bytes, addr: Address) -> None:
        if len(self._queue) >= _QUEUE_LIMIT:
            return  # dropped, as a full socket buffer drops
        if not self._queue:
            self._loop.add_writer(self._sock.fileno(), self._write_ready)
        self._queue.append((data, addr))

    def _write_ready(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
            queue.popleft()
        self._loop.remove_writer(self._sock.fileno())


async def open_batch_endpoint(
    protocol: asyncio.DatagramProtocol, sock: socket.socket
) -> BatchDatagramTransport:
    """Serve the bound UDP socket ``sock`` to ``protocol`` (``connection_made`` runs on
    the next loop turn, as with ``create_datagram_endpoint``)."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport = BatchDatagramTransport(loop, sock, protocol)
    await asyncio.sleep(0)  # let connection_made run, as create_datagram_endpoint does
    return transport
