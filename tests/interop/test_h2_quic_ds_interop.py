"""HTTP/2 (over TLS), QUIC and domain sockets against the real V2Ray 4.34, both
directions: socks -> vmess client (AEAD) -> transport -> vmess server -> freedom -> echo,
8 MiB each way compared by hash; bad input at a v2py listener while a client is served."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import os
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports, run_v2ray

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
PAYLOAD = random.Random(18).randbytes(8 * 1024 * 1024)


def _with_stream(config: dict[str, Any], key: str, stream: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config[key][0]["streamSettings"] = stream
    return config


async def _roundtrip(socks_port: int, echo: tuple[str, int], payload: bytes) -> None:
    reader, writer = await socks5_connect(socks_port, *echo)

    async def send() -> None:
        view = memoryview(payload)
        for i in range(0, len(view), 256 * 1024):
            writer.write(view[i : i + 256 * 1024])
            await writer.drain()

    sender = asyncio.create_task(send())
    received = await reader.readexactly(len(payload))
    await sender
    writer.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def _wait_unix(address: str | bytes, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
                return
            except OSError:
                await asyncio.sleep(0.05)
            finally:
                sock.close()


@contextlib.asynccontextmanager
async def _side(
    kind: str,
    config: dict[str, Any],
    *,
    tcp: int | None = None,
    unix: str | bytes | None = None,
    settle: float = 0.0,
) -> AsyncIterator[None]:
    if kind == "v2ray":
        async with run_v2ray(config, wait_tcp=[tcp] if tcp else [], settle=settle):
            if unix is not None:
                await _wait_unix(unix)
            yield
    else:
        async with run_v2py(config):
            yield


# --------------------------------------------------------------------------
# domain socket


def _ds_settings(kind: str, tmp: str) -> tuple[dict[str, Any], str | bytes]:
    if kind == "path":
        path = os.path.join(tmp, "vmess.sock")
        return {"path": path}, path
    name = f"v2py-interop-{os.getpid()}-{os.urandom(3).hex()}"
    return {"path": name, "abstract": True}, b"\0" + name.encode()


def _ds_cases() -> list[Any]:
    return [
        pytest.param(direction, kind, marks=[pytest.mark.interop], id=f"{direction}-{kind}")
        for direction in ("v2py-v2ray", "v2ray-v2py")
        for kind in ("path", "abstract")
    ]


@pytest.mark.parametrize(("direction", "kind"), _ds_cases())
async def test_vmess_over_domain_socket(
    direction: str, kind: str, echo_server: tuple[str, int], tmp_path: Any
) -> None:
    client_kind, server_kind = direction.split("-")
    socks_port, server_port = free_ports(2)
    settings, address = _ds_settings(kind, str(tmp_path))
    stream = {"network": "ds", "dsSettings": settings}
    server_cfg = _with_stream(vmess_server_config(server_port, UUID, 0), "inbounds", stream)
    client_cfg = _with_stream(
        vmess_client_config(socks_port, server_port, UUID, 0, "aes-128-gcm"), "outbounds", stream
    )
    async with asyncio.timeout(90):
        async with (
            _side(server_kind, server_cfg, unix=address),
            _side(client_kind, client_cfg, tcp=socks_port),
        ):
            await _roundtrip(socks_port, echo_server, PAYLOAD)
    if kind == "path":
        assert not os.path.exists(address)
        assert not os.path.exists(f"{address}.lock")


@pytest.mark.interop
async def test_stale_socket_file_fails_start_as_4_34(tmp_path: Any) -> None:
    """A socket file left by a crashed process: both refuse to start (exit 255, the bind
    error on one line) and leave the file alone."""
    import json
    import sys

    from tests.support.v2ray import require_v2ray

    path = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()
    (port,) = free_ports(1)
    stream = {"network": "ds", "dsSettings": {"path": str(path)}}
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps(_with_stream(vmess_server_config(port, UUID, 0), "inbounds", stream)))
    v2py = os.path.join(os.path.dirname(sys.executable), "v2py")
    for argv in ([require_v2ray(), "-config", str(cfg)], [v2py, "run", "-c", str(cfg)]):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        assert proc.returncode == 255, text
        assert f"listen unix {path}: bind: address already in use".lower() in text.lower(), text
        assert path.is_socket()
