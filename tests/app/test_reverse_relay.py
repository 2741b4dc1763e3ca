"""The portal relay between workers (``app/reverse_relay.py``): header codec, framed
datagrams, and a relay server's answers, over real Unix sockets in one process."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.app.policy import PolicyTable
from v2py.app.reverse_relay import (
    NONE,
    FramedDatagrams,
    PortalRelayServer,
    decode_header,
    encode_header,
    forward_stream,
    portal_socket,
)
from v2py.common.net import Destination, tcp, udp
from v2py.transport.ds import dial_unix_address


class Chunks:
    """A read-only stream handing out the given chunks, then EOF."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks[0]
        taken, rest = chunk[:max_bytes], chunk[max_bytes:]
        if rest:
            self._chunks[0] = rest
        else:
            del self._chunks[0]
        return taken


@pytest.mark.parametrize(
    ("tag", "level", "destination"),
    [
        ("portal", 0, tcp("127.0.0.1", 80)),
        ("p" * 255, 0xFFFF_FFFF, udp("2001:db8::1", 65535)),
        ("ü", 3, tcp("example.com", 1)),
    ],
)
async def test_header_round_trip_byte_at_a_time(
    tag: str, level: int, destination: Destination
) -> None:
    raw = encode_header(tag, level, destination) + b"after"
    stream = Chunks(*(raw[i : i + 1] for i in range(len(raw))))
    got = await decode_header(stream)  # type: ignore[arg-type]
    assert got == (tag, level, destination)
    assert await stream.read() == b"a"  # nothing past the header was taken


async def test_a_broken_header_is_refused() -> None:
    with pytest.raises(ValueError):
        await decode_header(Chunks(b"X\x00\x01p"))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await decode_header(Chunks(b"T\x00\x00\x00\x00\x05po"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_header("t" * 256, 0, tcp("a", 1))


class Sink:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data


async def test_framed_datagrams_round_trip() -> None:
    sink = Sink()
    framed_out = FramedDatagrams(sink)  # type: ignore[arg-type]
    sent = [b"", b"a", bytes(1400), b"\xff" * 65535]
    for data in sent:
        framed_out.write_datagram(data)
    framed_out.write_datagram(bytes(65536))  # too big for a frame: dropped
    raw = bytes(sink.written)
    framed_in = FramedDatagrams(Chunks(*(raw[i : i + 7] for i in range(0, len(raw), 7))))  # type: ignore[arg-type]
    got = []
    while (data := await framed_in.read_datagram()) is not None:
        got.append(data)
    assert got == sent


async def _ask(path: str, header: bytes) -> bytes:
    stream = await dial_unix_address(path)
    try:
        stream.write(header)
        return await stream.read(1)
    finally:
        stream.close()


async def test_a_relay_server_answers_none_without_a_bridge_connection(tmp_path: Path) -> None:
    opened: list[Destination] = []

    def no_bridge(destination: Destination) -> Any:
        opened.append(destination)
        raise ConnectionRefusedError("no bridge connection")

    async def never(*args: Any) -> None:
        raise AssertionError("not served")

    path = portal_socket(str(tmp_path), 1)
    server = PortalRelayServer(path, {"portal": (no_bridge, never, never)})
    await server.start()
    try:
        async with asyncio.timeout(10):
            assert await _ask(path, encode_header("portal", 0, tcp("127.0.0.1", 9))) == NONE
            assert await _ask(path, encode_header("other", 0, tcp("127.0.0.1", 9))) == NONE
            assert await _ask(path, b"garbage") == b""  # closed, nothing answered
            with pytest.raises(ConnectionRefusedError):
                await forward_stream(
                    [path, str(tmp_path / "missing.sock")],
                    "portal",
                    0,
                    tcp("127.0.0.1", 9),
                    Chunks(),  # type: ignore[arg-type]
                    PolicyTable().for_level(0),
                )
    finally:
        server.close()
    assert opened == [tcp("127.0.0.1", 9)] * 2


@given(
    tag=st.text(min_size=0, max_size=60).filter(lambda t: len(t.encode()) <= 255),
    level=st.integers(0, 0xFFFF_FFFF),
    address=st.from_regex(r"[a-z0-9.:-]{1,80}", fullmatch=True),
    port=st.integers(0, 65535),
    udp_network=st.booleans(),
    cuts=st.lists(st.integers(1, 9), max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_any_header_survives_any_chunking(
    tag: str, level: int, address: str, port: int, udp_network: bool, cuts: list[int]
) -> None:
    destination = (udp if udp_network else tcp)(address, port)
    raw = encode_header(tag, level, destination)
    chunks = []
    rest = raw
    for cut in cuts:
        if not rest:
            break
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        chunks.append(rest)
    got = asyncio.run(decode_header(Chunks(*chunks)))  # type: ignore[arg-type]
    assert got == (tag, level, destination)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_break_the_header_reader(data: bytes) -> None:
    with contextlib.suppress(ValueError, ConnectionError):  # (UnicodeDecodeError too)
        asyncio.run(decode_header(Chunks(data)))  # type: ignore[arg-type]
