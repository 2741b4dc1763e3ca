"""QUIC receive flow control on loopback, v2py to v2py: a stream whose reader stops
reading stops getting credit, so its sender stalls and what the receiver holds stays
within the window while other streams of the connection go on; once reading resumes
every byte arrives. And the server's stream credit is 4.34's: 32 bidirectional streams,
no unidirectional ones."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from v2py.config.transport_extra import QuicConfig
from v2py.protocol.quic_flow import (
    CONNECTION_WINDOW_BYTES,
    MAX_CONNECTION_WINDOW_BYTES,
    MAX_STREAM_WINDOW_BYTES,
    STREAM_WINDOW_BYTES,
)
from v2py.transport.quic import MAX_STREAMS_PER_CONNECTION, QuicListener, QuicStream, QuicTransport
from v2py.transport.stream import Stream

SETTINGS = {"security": "aes-128-gcm", "key": "flow"}
#: What the sender pushes into the stream nobody reads for a while (32 windows; 64 MiB
#: passes too, in about four times as long).
PUSH_BYTES = 16 << 20
BLOCK_BYTES = 64 << 10


def quic() -> QuicConfig:
    return QuicConfig.model_validate(SETTINGS, context={})


def held(stream: QuicStream) -> int:
    """Bytes received on ``stream`` and not read yet."""
    return sum(map(len, stream._chunks))


@contextlib.asynccontextmanager
async def serving(transport: QuicTransport, handler: Any) -> AsyncIterator[QuicListener]:
    listener = await transport.listen("127.0.0.1", 0, handler)
    try:
        yield listener
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


class Server:
    """The first stream is handed to the test (nobody reads it until the test does);
    the others echo."""

    def __init__(self) -> None:
        self.first: asyncio.Future[QuicStream] = asyncio.get_running_loop().create_future()
        self.done = asyncio.Event()

    async def __call__(self, stream: Stream) -> None:
        if not self.first.done():
            assert isinstance(stream, QuicStream)
            self.first.set_result(stream)
            await self.done.wait()
            return
        while data := await stream.read():
            stream.write(data)
            await stream.drain()
        stream.write_eof()


async def push(stream: Stream, blocks: int) -> str:
    """Write ``blocks`` random blocks (drained), then FIN; the SHA-256 of it all."""
    digest = hashlib.sha256()
    block = os.urandom(BLOCK_BYTES)
    for index in range(blocks):
        data = index.to_bytes(4, "big") + block[4:]
        digest.update(data)
        stream.write(data)
        await stream.drain()
    stream.write_eof()
    return digest.hexdigest()


async def wait_held(stream: QuicStream, size: int) -> None:
    """Until ``size`` bytes are held unread (woken by each arrival, no polling)."""
    while held(stream) < size:
        stream._readable.clear()
        await stream._readable.wait()


async def echo_once(client: QuicTransport, port: int) -> None:
    stream = await client.dial("127.0.0.1", port, timeout=5)
    try:
        stream.write(b"ping" * 1000)
        stream.write_eof()
        got = b""
        while data := await stream.read():
            got += data
        assert got == b"ping" * 1000
    finally:
        stream.close()


async def test_unread_stream_stalls_its_sender_and_resumes_intact() -> None:
    server, client = QuicTransport(quic(), None), QuicTransport(quic(), None)
    handler = Server()
    async with serving(server, handler) as listener:
        sender = await client.dial("127.0.0.1", listener.port, timeout=5)
        assert isinstance(sender, QuicStream)
        writing = asyncio.create_task(push(sender, PUSH_BYTES // BLOCK_BYTES))
        try:
            async with asyncio.timeout(20):
                receiver = await handler.first
                # Nothing read: the peer may fill the first window, and no more.
                await wait_held(receiver, STREAM_WINDOW_BYTES)
                # Other streams of the connection still run (the connection's window
                # is larger than one stream's), and round trips give the stalled
                # sender every chance to overshoot.
                for _ in range(3):
                    await echo_once(client, listener.port)
            assert held(receiver) == STREAM_WINDOW_BYTES
            assert not writing.done()
            conn = sender._owner
            aioquic_sender = conn.quic._streams[sender.stream_id]
            assert aioquic_sender.sender.highest_offset == STREAM_WINDOW_BYTES
            assert aioquic_sender.max_stream_data_remote == STREAM_WINDOW_BYTES
            # What the sender still has to send stays near its drain mark.
            assert sender._unsent() < 2 * (512 << 10) + BLOCK_BYTES

            # Reading resumes: everything arrives, the holding stays bounded.
            digest = hashlib.sha256()
            total = most_held = 0
            server_quic = receiver._owner.quic
            async with asyncio.timeout(120):
                while data := await receiver.read():
                    digest.update(data)
                    total += len(data)
                    most_held = max(most_held, held(receiver))
                    assert held(receiver) <= receiver._window.size <= MAX_STREAM_WINDOW_BYTES
                    assert server_quic.v2py_held <= server_quic.v2py_window.size
                sent_digest = await writing
        finally:
            handler.done.set()
            writing.cancel()
            with contextlib.suppress(BaseException):
                await writing
        assert total == PUSH_BYTES
        assert digest.hexdigest() == sent_digest
        assert server_quic.v2py_window.size <= MAX_CONNECTION_WINDOW_BYTES
        assert most_held <= MAX_STREAM_WINDOW_BYTES
    await client.aclose()


async def test_server_transport_parameters_are_4_34s() -> None:
    """What Debian's 4.34 server advertised to aioquic: initial_max_data 786432,
    initial_max_stream_data 524288, initial_max_streams_bidi 32, _uni 0; and one more
    bidirectional stream for each one done both ways."""
    server, client = QuicTransport(quic(), None), QuicTransport(quic(), None)
    handler = Server()
    async with serving(server, handler) as listener:
        first = await client.dial("127.0.0.1", listener.port, timeout=5)
        assert isinstance(first, QuicStream)
        first.write(b"x")
        quic_conn = first._owner.quic
        assert quic_conn._remote_max_streams_bidi == MAX_STREAMS_PER_CONNECTION
        assert quic_conn._remote_max_streams_uni == 0
        assert quic_conn._remote_max_data == CONNECTION_WINDOW_BYTES == 786432
        assert quic_conn._remote_max_stream_data_bidi_remote == STREAM_WINDOW_BYTES == 524288
        async with asyncio.timeout(20):
            await handler.first
            # 31 more streams, done both ways: the server gives one more for each.
            await asyncio.gather(*(echo_once(client, listener.port) for _ in range(31)))
            while quic_conn._remote_max_streams_bidi <= MAX_STREAMS_PER_CONNECTION:
                await asyncio.sleep(0.005)  # waiting for the MAX_STREAMS frame
        assert quic_conn._remote_max_streams_bidi > MAX_STREAMS_PER_CONNECTION
        handler.done.set()
        first.close()
    await client.aclose()
