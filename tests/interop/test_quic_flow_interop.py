"""The real v2ray 4.34 (quic-go 0.29) as the QUIC sender into a v2py QUIC listener whose
stream nobody reads: quic-go stops at the 512 KiB window v2py granted, the connection's
other streams still arrive, and once v2py reads, everything comes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os

import pytest

from tests.shell.test_quic_flow import held, wait_held
from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2ray import free_ports, run_v2ray
from v2py.config.transport_extra import QuicConfig
from v2py.protocol.quic_flow import STREAM_WINDOW_BYTES
from v2py.transport.quic import QuicStream, QuicTransport
from v2py.transport.stream import Stream

pytestmark = pytest.mark.interop

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
SETTINGS = {"security": "aes-128-gcm", "key": "flow"}
PUSH_BYTES = 16 << 20


class Holder:
    """Collects the streams v2ray opens; nobody reads them until the test does."""

    def __init__(self) -> None:
        self.streams: asyncio.Queue[QuicStream] = asyncio.Queue()
        self.done = asyncio.Event()

    async def __call__(self, stream: Stream) -> None:
        assert isinstance(stream, QuicStream)
        self.streams.put_nowait(stream)
        await self.done.wait()


async def test_quic_go_sender_stops_at_v2py_window_then_delivers_all() -> None:
    (socks_port,) = free_ports(1)
    server = QuicTransport(QuicConfig.model_validate(SETTINGS, context={}), None)
    holder = Holder()
    listener = await server.listen("127.0.0.1", 0, holder)
    config = copy.deepcopy(vmess_client_config(socks_port, listener.port, UUID, 0, "aes-128-gcm"))
    config["outbounds"][0]["streamSettings"] = {"network": "quic", "quicSettings": SETTINGS}
    pushing: asyncio.Task[None] | None = None
    writers: list[asyncio.StreamWriter] = []
    try:
        async with run_v2ray(config, wait_tcp=[socks_port]):
            # The destination is never dialled: the listener is not a VMess server.
            _, writer = await socks5_connect(socks_port, "127.0.0.1", 9)
            writers.append(writer)

            async def push() -> None:
                block = os.urandom(256 << 10)
                for _ in range(PUSH_BYTES // len(block)):
                    writer.write(block)
                    await writer.drain()

            pushing = asyncio.create_task(push())
            async with asyncio.timeout(30):
                first = await holder.streams.get()
                await wait_held(first, STREAM_WINDOW_BYTES)
                # A second proxied connection: its stream on the same QUIC connection
                # still gets through while the first one is stalled.
                _, other = await socks5_connect(socks_port, "127.0.0.1", 9)
                writers.append(other)
                other.write(b"x" * 1000)
                await other.drain()
                second = await holder.streams.get()
                await wait_held(second, 1000)
            assert second._owner is first._owner
            assert held(first) == STREAM_WINDOW_BYTES
            assert not pushing.done()

            total = 0
            async with asyncio.timeout(60):
                while total < PUSH_BYTES:  # VMess framing adds a little on top
                    data = await first.read()
                    assert data, "stream ended early"
                    total += len(data)
                    assert held(first) <= first._window.size
                await pushing
    finally:
        holder.done.set()
        if pushing is not None:
            pushing.cancel()
            with contextlib.suppress(BaseException):
                await pushing
        for writer in writers:
            writer.close()
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()
