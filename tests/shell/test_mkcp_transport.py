"""mKCP shell over loopback: dial_kcp <-> listen_kcp, a lossy relay, and a garbage flood."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import socket
import time

import pytest

from tests.support.lossy import LossyUdpRelay
from v2py.protocol.mkcp.connection import KcpState
from v2py.protocol.mkcp.packet import PacketCodec
from v2py.protocol.mkcp.segment import (
    CommandSegment,
    DataSegment,
    KcpCommand,
    decode_segments,
    encode_segment,
)
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport.mkcp import KcpDialer, KcpStream, dial_kcp, listen_kcp

MIB = 1024 * 1024
log = logging.getLogger(__name__)


async def _echo(stream: KcpStream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()


async def _exchange(stream: KcpStream, payload: bytes) -> bytes:
    """Write ``payload`` while reading the same amount back."""

    async def writer() -> None:
        view = memoryview(payload)
        for i in range(0, len(payload), 64 * 1024):
            stream.write(view[i : i + 64 * 1024])
            await stream.drain()

    got = bytearray()

    async def reader() -> None:
        while len(got) < len(payload):
            chunk = await stream.read()
            assert chunk, "unexpected EOF"
            got.extend(chunk)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(writer())
        tg.create_task(reader())
    return bytes(got)


async def _round_trip(port: int, settings: KcpSettings, size: int) -> float:
    payload = random.Random(size).randbytes(size)
    stream = await dial_kcp("127.0.0.1", port, settings)
    start = time.perf_counter()
    got = await _exchange(stream, payload)
    elapsed = time.perf_counter() - start
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    stream.close()
    await stream.wait_closed()
    assert stream.connection.terminated
    return elapsed


async def test_loopback_4mib_both_ways() -> None:
    settings = KcpSettings()
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo)
    try:
        async with asyncio.timeout(30):
            elapsed = await _round_trip(listener.address[1], settings, 4 * MIB)
            log.warning("mKCP v2py<->v2py 0%% loss: 4 MiB each way in %.2fs", elapsed)
            # The handler ends at our close and its session leaves the table.
            async with asyncio.timeout(5):
                while listener.session_count:
                    await asyncio.sleep(0.01)
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


@pytest.mark.parametrize("header", ["srtp", "dtls"])
async def test_loopback_with_header_and_seed(header: str) -> None:
    settings = KcpSettings(header_type=header, seed="s3cret")
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo)
    try:
        async with asyncio.timeout(30):
            await _round_trip(listener.address[1], settings, MIB // 2)
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_lossy_relay_five_percent() -> None:
    settings = KcpSettings()
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo)
    relay = await LossyUdpRelay(listener.address, loss=0.05, delay=0.02, seed=5).start()
    try:
        async with asyncio.timeout(60):
            elapsed = await _round_trip(relay.port, settings, 2 * MIB)
        log.warning("mKCP v2py<->v2py 5%% loss 20 ms: 2 MiB each way in %.2fs", elapsed)
        assert relay.dropped > 0
    finally:
        relay.close()
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_garbage_flood_keeps_table_bounded() -> None:
    settings = KcpSettings()
    max_sessions = 32
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo, max_sessions=max_sessions)
    port = listener.address[1]
    rng = random.Random(99)
    codec = PacketCodec(settings, rng.randbytes)
    valid = codec.seal(
        encode_segment(DataSegment(conv=7, timestamp=0, number=0, sending_next=0, payload=b"hi"))
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    stop = asyncio.Event()
    peak = 0

    async def flood() -> int:
        nonlocal peak
        sent = 0
        # Small batches: asyncio reads one datagram per socket per loop iteration, so
        # bigger bursts would mostly be dropped by the kernel, not by the listener.
        for batch in range(10_000):
            for i in range(batch % 10 * 10, batch % 10 * 10 + 10):
                kind = i % 100
                if kind < 60:
                    data = rng.randbytes(rng.randrange(1, 200))
                elif kind < 98:
                    mutated = bytearray(valid)
                    mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
                    data = bytes(mutated)
                else:  # authentic DATA with a fresh conv: would open a session
                    conv = rng.randrange(1 << 16)
                    data = codec.seal(
                        encode_segment(
                            DataSegment(
                                conv=conv, timestamp=0, number=0, sending_next=0, payload=b"x"
                            )
                        )
                    )
                try:
                    sock.sendto(data, ("127.0.0.1", port))
                    sent += 1
                except BlockingIOError:
                    pass
            peak = max(peak, listener.session_count)
            await asyncio.sleep(0)
            if stop.is_set():
                break
        return sent

    try:
        async with asyncio.timeout(60):
            flood_task = asyncio.create_task(flood())
            elapsed = await _round_trip(port, settings, MIB)
            sent = await flood_task
        log.warning(
            "mKCP under flood: 1 MiB each way in %.2fs, %d garbage sent, %d dropped",
            elapsed,
            sent,
            listener.dropped,
        )
        assert sent > 50_000
        assert peak <= max_sessions
        assert listener.session_count <= max_sessions
        assert listener.dropped > 5000 and listener.refused > 0
    finally:
        stop.set()
        sock.close()
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_terminate_first_segment_creates_no_session_and_dial_counts() -> None:
    settings = KcpSettings()
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo)
    try:
        codec = PacketCodec(settings, random.Random(1).randbytes)
        term = codec.seal(
            encode_segment(
                CommandSegment(
                    conv=9,
                    command=KcpCommand.TERMINATE,
                    sending_next=0,
                    receiving_next=0,
                    peer_rto=100,
                )
            )
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(term, listener.address)
            async with asyncio.timeout(2):
                while listener.refused == 0:
                    await asyncio.sleep(0.01)
        assert listener.session_count == 0
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_full_table_evicts_sessions_waiting_out_terminating() -> None:
    settings = KcpSettings()

    async def close_at_once(stream: KcpStream) -> None:
        stream.close()  # empty window: straight to TERMINATING, then 8 s of silence

    listener = await listen_kcp("127.0.0.1", 0, settings, close_at_once, max_sessions=2)
    codec = PacketCodec(settings, random.Random(5).randbytes)

    def opening(conv: int) -> bytes:
        seg = DataSegment(conv=conv, timestamp=0, number=0, sending_next=0, payload=b"x")
        return codec.seal(encode_segment(seg))

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            async with asyncio.timeout(5):
                for conv in (1, 2):
                    s.sendto(opening(conv), listener.address)
                    while listener.session_count < conv:
                        await asyncio.sleep(0.01)
                states = {st.connection.state for st in listener.sessions()}
                while states != {KcpState.TERMINATING}:
                    await asyncio.sleep(0.01)
                    states = {st.connection.state for st in listener.sessions()}
                # A third client is served: the oldest lingering session makes room.
                s.sendto(opening(3), listener.address)
                while listener.evicted == 0:
                    await asyncio.sleep(0.01)
        assert listener.refused == 0
        assert listener.session_count == 2
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_dialer_abort_closes_sockets_of_lingering_streams() -> None:
    settings = KcpSettings()
    codec = PacketCodec(settings, random.Random(6).randbytes)
    dialer = KcpDialer()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        port = silent.getsockname()[1]
        streams = [await dialer.dial("127.0.0.1", port, settings) for _ in range(3)]
        for stream in streams:
            stream.write(b"never acknowledged")
            stream.close()  # ReadyToClose with data in flight: would linger 15 s
        assert dialer.streams() == tuple(streams)
        async with asyncio.timeout(5):
            await dialer.aclose()
        assert dialer.streams() == ()
        assert all(s.connection.terminated for s in streams)
        async with asyncio.timeout(1):
            for stream in streams:
                await stream.wait_closed()
        # Each stream told the peer with a TERMINATE on its way out.
        terminates = set()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            while len(terminates) < 3:
                data, addr = await loop.sock_recvfrom(silent, 2048)
                payload = codec.open(data)
                assert payload is not None
                segs, _ = decode_segments(payload)
                if any(
                    isinstance(seg, CommandSegment) and seg.command == KcpCommand.TERMINATE
                    for seg in segs
                ):
                    terminates.add(addr)
        with pytest.raises(ConnectionError):
            await dialer.dial("127.0.0.1", port, settings)


async def test_dialer_grace_lets_close_handshakes_finish() -> None:
    settings = KcpSettings()
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo)
    dialer = KcpDialer()
    try:
        async with asyncio.timeout(10):
            stream = await dial_kcp("127.0.0.1", listener.address[1], settings, dialer=dialer)
            stream.write(b"ping")
            assert await stream.read() == b"ping"
            await dialer.aclose(grace=5.0)
        assert stream.terminate_reason == "closed"
        assert dialer.streams() == ()
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()
