"""TLS, WebSocket and TCP http-header streams in the relay's push mode: a server-side
TLS / ws / ws+tls / http-header stream relayed to a TCP echo (both push-capable),
4 MiB each way."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from typing import Any

import pytest

from tests.support.layers import TcpBase, listening, read_all
from tests.support.tls_certs import TestCA
from v2py.app.policy import Timeouts
from v2py.app.relay import relay
from v2py.config.model import TcpHeaderConfig
from v2py.config.stream import TlsConfig, WsConfig
from v2py.transport.http_header import HttpHeaderTransport
from v2py.transport.stream import Stream
from v2py.transport.tcp import dial_tcp
from v2py.transport.tls import TlsSecurity, TlsTransport
from v2py.transport.ws import WsTransport

CA = TestCA()
LEAF = CA.issue("push.test")
TIMEOUTS = Timeouts(handshake=5, conn_idle=10, uplink_only=1, downlink_only=1)


def _stack(kind: str, server: bool) -> Any:
    transport: Any = TcpBase()
    if "tls" in kind:
        settings = (
            {"certificates": [LEAF.inline()]}
            if server
            else {"serverName": "push.test", "certificates": [CA.pair.inline(usage="verify")]}
        )
        network = "ws" if "ws" in kind else "tcp"
        security = TlsSecurity(TlsConfig.model_validate(settings), network=network)
        transport = TlsTransport(transport, security, http_reply=server and network == "ws")
    if "http" in kind:
        header = TcpHeaderConfig.model_validate({"type": "http"}, context={})
        transport = HttpHeaderTransport(transport, header.request, header.response)
    if "ws" in kind:
        transport = WsTransport(transport, WsConfig(path="/p"), tls="tls" in kind)
    return transport


@pytest.mark.parametrize("kind", ["tls", "ws", "ws-tls", "http", "tls-http"])
async def test_push_relay_through_layer(kind: str, echo_server: tuple[str, int]) -> None:
    modes: list[bool] = []

    async def handler(stream: Stream) -> None:
        first = await stream.read()  # drives the (lazy) TLS handshake first, as a proxy does
        upstream = await dial_tcp(*echo_server)
        try:
            upstream.write(first)
            modes.append(bool(stream.can_push) and bool(upstream.can_push))  # type: ignore[attr-defined]
            await relay(stream, upstream, TIMEOUTS)
        finally:
            upstream.close()

    size = 4 << 20
    payload = random.Random(3).randbytes(size)
    async with listening(_stack(kind, server=True), handler) as port:
        async with asyncio.timeout(30):
            stream = await _stack(kind, server=False).dial("127.0.0.1", port, timeout=5)

            async def send() -> None:
                for i in range(0, size, 100_000):
                    stream.write(payload[i : i + 100_000])
                    await stream.drain()

            sender = asyncio.create_task(send())
            got = await read_all(stream, size)
            await sender
            stream.close()
    assert modes == [True]
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


class _FakeBelow:
    """A push-capable stream below a TLS server stream; the test feeds it by hand."""

    can_push = True
    write_paused = False

    def __init__(self) -> None:
        self.target: Any = None
        self.paused = False
        self.sent = bytearray()

    def start_push(self, target: Any) -> None:
        self.target = target

    def stop_push(self) -> None:
        self.target = None

    def pause_push(self) -> None:
        self.paused = True

    def resume_push(self) -> None:
        self.paused = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        pass


class _PausingTarget:
    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.data = bytearray()
        self.ended = False

    def pushed_data(self, data: bytes) -> None:
        self.data += data
        self.stream.pause_push()  # backpressure after every delivery

    def pushed_eof(self) -> None:
        self.ended = True

    def pushed_error(self, exc: BaseException) -> None:
        raise AssertionError(exc)


async def test_tls_push_keeps_what_openssl_holds_across_pause_and_end() -> None:
    import ssl

    from v2py.transport.tls import TlsStream

    server_sec = TlsSecurity(
        TlsConfig.model_validate({"certificates": [LEAF.inline()]}), network="tcp"
    )
    below = _FakeBelow()
    stream = TlsStream.server(below, server_sec)  # type: ignore[arg-type]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(c_in, c_out, server_hostname="push.test")

    # Drive the handshake through the pull path with a tiny in-memory pipe.
    reads: asyncio.Queue[bytes] = asyncio.Queue()

    async def below_read(n: int = 65536) -> bytes:
        return await reads.get()

    below.read = below_read  # type: ignore[attr-defined]
    handshake = asyncio.create_task(stream.handshake())
    async with asyncio.timeout(5):
        while not handshake.done():
            with contextlib.suppress(ssl.SSLWantReadError):
                client.do_handshake()
            if out := c_out.read():
                reads.put_nowait(out)
            await asyncio.sleep(0)
            if below.sent:
                c_in.write(bytes(below.sent))
                below.sent.clear()
        await handshake
    assert stream.can_push
    target = _PausingTarget(stream)
    stream.start_push(target)
    payload = bytes(range(256)) * 6000  # more than one push batch (1 MiB)
    for i in range(0, len(payload), 16384):
        client.write(payload[i : i + 16384])
    with contextlib.suppress(ssl.SSLError):
        client.unwrap()
    stream.pushed_data(c_out.read())  # one arrival: many records, then close_notify
    assert 0 < len(target.data) < len(payload)
    stream.pushed_eof()
    assert not target.ended  # paused: the end waits behind the held data
    while not target.ended:
        stream.resume_push()
    assert bytes(target.data) == payload
