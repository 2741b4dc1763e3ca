"""Reverse portals with ``v2py run --workers N``: a portal on a worker without a bridge
connection hands its connections to a sibling worker that has one.

A bridge's connections land on whichever worker the kernel picks (SO_REUSEPORT), and so
do the public connections routed to the portal. A portal that has no bridge connection
of its own passes such a connection to its siblings in turn, over a Unix socket per
worker (``portal-<index>.sock`` in the workers' private mode-0700 directory, the one of
``app/commander/fanout.py``): a header names the portal tag, the user level, the
network and the destination; the sibling answers one byte (``OK``: it opened a session
on one of its bridge connections, and relays; ``NONE``: it has no bridge connection
either), then the bytes (TCP) or 2-byte length-prefixed datagrams (UDP) flow as
through that sibling's own portal. Only when no worker has a bridge connection does the
connection fail, as it fails in one process.

Header: network (``T`` or ``U``), level (4 bytes), tag length (1) and tag, address
length (1) and address, port (2); numbers big-endian.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from v2py.app.packet import PacketLink, relay_datagrams
from v2py.app.relay import relay
from v2py.common.net import Destination, Network
from v2py.transport.ds import DsListener, dial_unix_address, listen_unix_path
from v2py.transport.stream import Stream

if TYPE_CHECKING:
    from v2py.app.mux_endpoint import MuxSubStream
    from v2py.app.policy import Timeouts

log = logging.getLogger(__name__)

__all__ = [
    "FramedDatagrams",
    "PortalRelayServer",
    "decode_header",
    "encode_header",
    "forward_packets",
    "forward_stream",
    "portal_socket",
]

#: How long the header exchange with a sibling may take.
EXCHANGE_TIMEOUT_S = 5.0
OK, NONE = b"\x00", b"\x01"
_TCP, _UDP = b"T", b"U"
_U16 = struct.Struct(">H")
_LEVEL = struct.Struct(">I")
#: Largest datagram a frame carries (the 2-byte length).
MAX_DATAGRAM_BYTES = 0xFFFF


def portal_socket(directory: str, index: int) -> str:
    return os.path.join(directory, f"portal-{index}.sock")


def encode_header(tag: str, level: int, destination: Destination) -> bytes:
    """Raises ValueError for a tag or address over 255 bytes or a level outside uint32."""
    raw_tag = tag.encode()
    raw_address = destination.address.encode()
    if len(raw_tag) > 255 or len(raw_address) > 255 or not 0 <= level <= 0xFFFF_FFFF:
        raise ValueError("reverse relay: tag, address or level out of range")
    network = _UDP if destination.network is Network.UDP else _TCP
    return b"".join(
        (
            network,
            _LEVEL.pack(level),
            bytes((len(raw_tag),)),
            raw_tag,
            bytes((len(raw_address),)),
            raw_address,
            _U16.pack(destination.port),
        )
    )


async def _read_exactly(stream: Stream, count: int) -> bytes:
    """``count`` bytes, reading no further (what follows stays in ``stream``)."""
    data = b""
    while len(data) < count:
        chunk = await stream.read(count - len(data))
        if not chunk:
            raise ConnectionError("reverse relay: closed inside a header")
        data += chunk
    return data


async def decode_header(stream: Stream) -> tuple[str, int, Destination]:
    """(tag, level, destination) of a relayed connection; nothing past the header is
    read. Raises ConnectionError (closed early) or ValueError (not a header)."""
    (network_byte,) = await _read_exactly(stream, 1)
    if network_byte not in (_TCP[0], _UDP[0]):
        raise ValueError("reverse relay: unknown network")
    (level,) = _LEVEL.unpack(await _read_exactly(stream, _LEVEL.size))
    (tag_length,) = await _read_exactly(stream, 1)
    tag = (await _read_exactly(stream, tag_length)).decode()
    (address_length,) = await _read_exactly(stream, 1)
    address = (await _read_exactly(stream, address_length)).decode()
    (port,) = _U16.unpack(await _read_exactly(stream, 2))
    network = Network.UDP if network_byte == _UDP[0] else Network.TCP
    return tag, level, Destination(network, address, port)


class FramedDatagrams:
    """Datagrams as 2-byte length-prefixed frames on a stream (a ``DatagramStream``)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def write_datagram(self, data: bytes) -> None:
        if len(data) > MAX_DATAGRAM_BYTES:
            return  # cannot be framed; UDP may drop
        self._stream.write(_U16.pack(len(data)) + data)

    async def drain(self) -> None:
        await self._stream.drain()

    def write_eof(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.write_eof()

    async def read_datagram(self) -> bytes | None:
        buffer = self._buffer
        while True:
            if len(buffer) >= 2:
                (size,) = _U16.unpack_from(buffer)
                if len(buffer) >= 2 + size:
                    data = bytes(buffer[2 : 2 + size])
                    del buffer[: 2 + size]
                    return data
            chunk = await self._stream.read()
            if not chunk:
                return None
            buffer += chunk


async def _ask(path: str, header: bytes) -> Stream | None:
    """The sibling at ``path``'s relay stream once it answered OK, else None."""
    try:
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            stream = await dial_unix_address(path)
            try:
                stream.write(header)
                answer = await stream.read(1)
            except BaseException:
                stream.close()
                raise
    except (OSError, TimeoutError) as exc:
        log.info("reverse: sibling worker %s did not answer: %s", path, exc)
        return None
    if answer[:1] != OK:
        stream.close()
        return None
    return stream


async def _first_willing(siblings: Sequence[str], header: bytes) -> Stream:
    """The relay stream of the first sibling that has a bridge connection. Raises
    ConnectionRefusedError when none has one."""
    for path in siblings:
        stream = await _ask(path, header)
        if stream is not None:
            return stream
    raise ConnectionRefusedError("reverse portal: no bridge connection on any worker")


@contextlib.asynccontextmanager
async def _passed_on(
    siblings: Sequence[str], tag: str, level: int, destination: Destination
) -> AsyncIterator[Stream]:
    """The relay stream of the first sibling with a bridge connection, closed at the
    end. Raises ConnectionRefusedError when none has one."""
    relayed = await _first_willing(siblings, encode_header(tag, level, destination))
    log.info("reverse: portal %r: %s passed on to a sibling worker", tag, destination)
    try:
        yield relayed
    finally:
        relayed.close()


async def forward_stream(
    siblings: Sequence[str],
    tag: str,
    level: int,
    destination: Destination,
    stream: Stream,
    timeouts: Timeouts,
) -> None:
    """Relay ``stream`` through the portal ``tag`` of the first sibling with a bridge
    connection. Raises ConnectionRefusedError when none has one."""
    async with _passed_on(siblings, tag, level, destination) as relayed:
        await relay(stream, relayed, timeouts)


async def forward_packets(
    siblings: Sequence[str],
    tag: str,
    level: int,
    destination: Destination,
    link: PacketLink,
    timeouts: Timeouts,
) -> None:
    """Relay ``link``'s datagrams through the portal ``tag`` of the first sibling with a
    bridge connection. Raises ConnectionRefusedError when none has one."""
    async with _passed_on(siblings, tag, level, destination) as relayed:
        await relay_datagrams(link, FramedDatagrams(relayed), timeouts.downlink_only)


#: A portal's side: open a session towards the destination on one of this worker's
#: bridge connections (raises ConnectionRefusedError when it has none).
Opener = Callable[[Destination], "MuxSubStream"]
#: Then relay the sibling's stream (or its framed datagrams) over it, at a user level.
Serve = Callable[[Stream, "MuxSubStream", int], Awaitable[None]]


class PortalRelayServer:
    """This worker's end: serves its portals to siblings whose portals have no bridge
    connection. ``portals`` maps a tag to (open, serve a stream, serve datagrams)."""

    def __init__(self, path: str, portals: Mapping[str, tuple[Opener, Serve, Serve]]) -> None:
        self.path = path
        self._portals = portals
        self._listener: DsListener | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._listener = await listen_unix_path(self.path, self._serve)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    async def _serve(self, stream: Stream) -> None:
        try:
            async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
                tag, level, destination = await decode_header(stream)
            portal = self._portals.get(tag)
            if portal is None:
                stream.write(NONE)
                return
            opener, serve_stream, serve_packets = portal
            try:
                sub = opener(destination)
            except ConnectionRefusedError:
                stream.write(NONE)
                return
            stream.write(OK)
            serve = serve_packets if destination.network is Network.UDP else serve_stream
            await serve(stream, sub, level)
        except (OSError, ValueError, UnicodeDecodeError, TimeoutError) as exc:
            log.info("reverse: a sibling worker's connection failed: %s", exc)
