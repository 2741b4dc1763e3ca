"""Interop: an inbound whose ``listen`` is a Unix socket path (4.34: the tcp, ws and h2
hubs' ``port == 0`` branch; ``@name`` abstract, ``@@name`` abstract padded), the way a
WebSocket server sits behind nginx. The same configs on the real v2ray and on v2py:

* VMess over WebSocket on a socket file: a real v2ray client reaches it through a small
  TCP -> Unix forwarder (nginx's part), 1 MiB each way by hash; ``<path>.lock`` is held
  while it runs;
* an HTTP proxy inbound on an abstract name, reached directly over AF_UNIX.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.test_h2_quic_ds_interop import _wait_unix
from tests.support.configs import vmess_client_config
from tests.support.forward import forwarder
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port, run_v2ray

pytestmark = pytest.mark.interop

UUID = "8e7f2a51-4c1b-4f0e-9d6a-3b2c1d0e9f8a"
PAYLOAD = os.urandom(1024 * 1024)


@contextlib.asynccontextmanager
async def _serving(kind: str, config: dict[str, Any], unix: str | bytes) -> AsyncIterator[None]:
    if kind == "v2ray":
        async with run_v2ray(config):
            await _wait_unix(unix)
            yield
    else:
        async with run_v2py(config):
            yield


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_vmess_ws_on_a_socket_file(
    kind: str, tmp_path: Path, echo_server: tuple[str, int]
) -> None:
    path = str(tmp_path / "ws.sock")
    ws = {"network": "ws", "wsSettings": {"path": "/vm"}}
    server_cfg = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": path,
                "protocol": "vmess",
                "settings": {"clients": [{"id": UUID}]},
                "streamSettings": ws,
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    socks_port = free_port()
    async with (
        _serving(kind, server_cfg, path),
        forwarder(lambda: asyncio.open_unix_connection(path)) as forward_port,
    ):
        assert os.path.exists(path + ".lock")
        client_cfg = vmess_client_config(socks_port, forward_port, UUID, 0, "aes-128-gcm")
        client_cfg["outbounds"][0]["streamSettings"] = ws
        async with run_v2ray(client_cfg, wait_tcp=[socks_port]), asyncio.timeout(60):
            reader, writer = await socks5_connect(socks_port, *echo_server)
            try:
                writer.write(PAYLOAD)
                await writer.drain()
                received = await reader.readexactly(len(PAYLOAD))
            finally:
                writer.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(PAYLOAD).digest()


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_http_proxy_on_an_abstract_name(kind: str, echo_server: tuple[str, int]) -> None:
    name = f"v2py-test-{kind}-{os.getpid()}"
    config = {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "@" + name, "protocol": "http", "settings": {}}],
        "outbounds": [{"protocol": "freedom"}],
    }
    address = b"\0" + name.encode()
    async with _serving(kind, config, address), asyncio.timeout(20):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            host, port = echo_server
            writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"ping over unix")
            echoed = await reader.readexactly(len(b"ping over unix"))
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert echoed == b"ping over unix"
