"""Interop: the MTProto inbound and outbound of v2ray 4.34 and of v2py, side by side.

Inbound: a Telegram-like client (secret, "obfuscated2" header) talks through each
server, whose session is routed to a freedom outbound redirected to an echo server; a
header naming an unknown datacenter or connection type is closed by both without a byte.
Outbound: a socks client's connection goes through each one's MTProto outbound to a
fake datacenter, which checks the header as Telegram does and echoes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.support.forward import echo_server
from tests.support.socks import socks5_connect
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop

SECRET = "0123456789abcdef0123456789abcdef"
TIMEOUT_S = 30.0


def _ctr(key: bytes, nonce: bytes) -> Any:
    return Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()


def client_hello(secret: bytes | None, kind: bytes, raw_dc: int) -> tuple[bytes, Any, Any]:
    """A client's first 64 bytes and its (encrypt, decrypt) keystreams."""
    while True:
        header = bytearray(os.urandom(64))
        if header[0] != 0xEF and any(header[4:8]):
            break
    header[56:60] = kind
    header[60:62] = raw_dc.to_bytes(2, "little", signed=True)
    forward, backward = bytes(header[8:56]), bytes(header[8:56])[::-1]
    out_key, in_key = forward[:32], backward[:32]
    if secret is not None:
        out_key = hashlib.sha256(out_key + secret).digest()
        in_key = hashlib.sha256(in_key + secret).digest()
    encrypt, decrypt = _ctr(out_key, forward[32:48]), _ctr(in_key, backward[32:48])
    sealed = encrypt.update(bytes(header))
    return bytes(header[:56]) + sealed[56:], encrypt, decrypt


def server_config(port: int, echo: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "policy": {"levels": {"0": {"handshake": 2}}},
        "inbounds": [
            {"tag": "tg-in", "listen": "127.0.0.1", "port": port, "protocol": "mtproto",
             "settings": {"users": [{"email": "tg@x", "secret": SECRET}]}},
        ],
        "outbounds": [
            {"tag": "tg-out", "protocol": "freedom",
             "settings": {"redirect": f"127.0.0.1:{echo}"}},
        ],
    }  # fmt: skip


async def _through(port: int, hello: tuple[bytes, Any, Any], payload: bytes) -> bytes:
    header, encrypt, decrypt = hello
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(header + encrypt.update(payload))
        await writer.drain()
        got = b""
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(5):
                while len(got) < len(payload) and (chunk := await reader.read(65536)):
                    got += decrypt.update(chunk)
        return got
    finally:
        writer.close()


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_inbound_as_4_34(kind: str) -> None:
    secret = bytes.fromhex(SECRET)
    port = free_port()
    payload = os.urandom(200_000)
    async with (
        echo_server() as echo,
        run_side(kind, server_config(port, echo), port),
        asyncio.timeout(TIMEOUT_S),
    ):
        for conn_type in (b"\xef" * 4, b"\xee" * 4):
            for raw_dc in (1, -3, 5):  # datacenters 0, 2 and 4
                hello = client_hello(secret, conn_type, raw_dc)
                assert await _through(port, hello, payload) == payload, (conn_type, raw_dc)
        # closed without a byte: another datacenter, another connection type, no secret
        for hello in (
            client_hello(secret, b"\xef" * 4, 6),
            client_hello(secret, b"\xef" * 4, 0),
            client_hello(secret, b"\xdd" * 4, 1),
            client_hello(None, b"\xef" * 4, 1),
        ):
            assert await _through(port, hello, b"x" * 10) == b""


@contextlib.asynccontextmanager
async def fake_datacenter(seen: list[bytes]) -> AsyncIterator[int]:
    """A datacenter as Telegram's: reads the header without a secret, echoes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            header = await reader.readexactly(64)
            forward, backward = header[8:56], header[8:56][::-1]
            decrypt = _ctr(forward[:32], forward[32:48])
            encrypt = _ctr(backward[:32], backward[32:48])
            plain = decrypt.update(header)
            seen.append(plain[56:60])
            while data := await reader.read(65536):
                writer.write(encrypt.update(decrypt.update(data)))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_outbound_as_4_34(kind: str) -> None:
    socks = free_port()
    client = {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "127.0.0.1", "port": socks, "protocol": "socks"}],
        "outbounds": [{"protocol": "mtproto", "settings": {}}],
    }
    seen: list[bytes] = []
    payload = os.urandom(100_000)
    async with (
        fake_datacenter(seen) as dc,
        run_side(kind, client, socks),
        asyncio.timeout(TIMEOUT_S),
    ):
        reader, writer = await socks5_connect(socks, "127.0.0.1", dc)
        try:
            writer.write(payload)
            await writer.drain()
            assert await reader.readexactly(len(payload)) == payload
        finally:
            writer.close()
    # a connection not from an MTProto inbound is "abridged" (0xef x4), as 4.34
    assert seen == [b"\xef" * 4]
