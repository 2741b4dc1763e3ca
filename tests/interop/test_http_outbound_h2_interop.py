"""Interop: the HTTP outbound over TLS that negotiates ``h2`` tunnels with HTTP/2 CONNECT
(4.34 ``proxy/http/client.go``). The same config runs on the real v2ray and on v2py
against a recording HTTP/2 proxy: the same request headers, the first payload sent with
the request, both tunnels on one cached connection; a non-200 answer fails the tunnel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.forward import echo_server
from tests.support.h2_proxy import H2ProxyRecord, h2_connect_proxy
from tests.support.tls_certs import TestCA
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop

TIMEOUT_S = 20.0


def config(socks: int, proxy: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "127.0.0.1", "port": socks, "protocol": "socks"}],
        "outbounds": [
            {
                "protocol": "http",
                "settings": {
                    "servers": [
                        {
                            "address": "127.0.0.1",
                            "port": proxy,
                            "users": [{"user": "u", "pass": "p"}],
                        }
                    ]
                },
                "streamSettings": {
                    "security": "tls",
                    "tlsSettings": {"serverName": "proxy.test", "allowInsecure": True},
                },
            }
        ],
    }


async def exchange(socks: int, port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", socks)
    try:
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
        await reader.readexactly(10)
        writer.write(payload)
        return await reader.readexactly(len(payload))
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    finally:
        writer.close()


async def observe(kind: str, status: int) -> tuple[H2ProxyRecord, list[bytes], int]:
    pair = TestCA().issue("proxy.test")
    async with echo_server() as echo, h2_connect_proxy(pair) as (proxy, record):
        record.status = status
        socks = free_port()
        got: list[bytes] = []
        async with run_side(kind, config(socks, proxy), socks), asyncio.timeout(TIMEOUT_S):
            for i in range(2):
                got.append(await exchange(socks, echo, b"hello-%d" % i))
                await asyncio.sleep(0.2)
        return record, got, echo


async def test_h2_connect_headers_payload_and_connection_reuse() -> None:
    theirs, ours = await asyncio.gather(observe("v2ray", 200), observe("v2py", 200))
    for record, got, echo in (theirs, ours):
        assert got == [b"hello-0", b"hello-1"]
        assert record.connections == 1  # the second tunnel reuses the cached connection
        assert record.first_data == [b"hello-0", b"hello-1"]
        assert [n for n, _ in record.requests] == [1, 1]
        for _, headers in record.requests:
            assert dict(headers)[":authority"] == f"127.0.0.1:{echo}"

    # Same header names, values and order (the target port differs between the runs).
    def shape(record: H2ProxyRecord) -> list[list[tuple[str, str]]]:
        return [[(k, v if k != ":authority" else "T") for k, v in h] for _, h in record.requests]

    assert shape(ours[0]) == shape(theirs[0])
    assert shape(ours[0])[0] == [
        (":authority", "T"),
        (":method", "CONNECT"),
        ("proxy-authorization", "Basic dTpw"),
        ("accept-encoding", "gzip"),
        ("user-agent", "Go-http-client/2.0"),
    ]


async def test_non_200_answer_fails_the_tunnel_and_the_connection() -> None:
    theirs, ours = await asyncio.gather(observe("v2ray", 407), observe("v2py", 407))
    for record, got, _ in (theirs, ours):
        assert got == [b"", b""]
        # 4.34 closes the connection after a non-200 answer: each of the 5 attempts of
        # each tunnel dials anew.
        assert (record.connections, len(record.requests)) == (10, 10)
