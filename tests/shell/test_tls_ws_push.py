"""TLS, WebSocket and TCP http-header streams in the relay's push mode: a server-side
TLS / ws / ws+tls / http-header stream relayed to a TCP echo (both push-capable),
4 MiB each way."""

from __future__ import annotations

import asyncio
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
