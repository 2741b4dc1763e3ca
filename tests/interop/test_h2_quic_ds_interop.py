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
import re
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.socks import socks5_connect
from tests.support.tls_certs import TestCA
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


# --------------------------------------------------------------------------
# HTTP/2 over TLS

CA = TestCA()
LEAF = CA.issue("h2.test", "127.0.0.1")


def _h2_streams() -> tuple[dict[str, Any], dict[str, Any]]:
    server = {
        "network": "h2",
        "security": "tls",
        "httpSettings": {"host": ["h2.test", "alt.test"], "path": "/h2p"},
        "tlsSettings": {"certificates": [LEAF.inline()]},
    }
    client = {
        "network": "http",
        "security": "tls",
        "httpSettings": {"host": ["alt.test", "h2.test"], "path": "h2p/sub"},
        "tlsSettings": {"serverName": "h2.test", "certificates": [CA.pair.inline(usage="verify")]},
    }
    return server, client


def _h2_configs(socks_port: int, server_port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    server_stream, client_stream = _h2_streams()
    server_cfg = _with_stream(vmess_server_config(server_port, UUID, 0), "inbounds", server_stream)
    client_cfg = _with_stream(
        vmess_client_config(socks_port, server_port, UUID, 0, "aes-128-gcm"),
        "outbounds",
        client_stream,
    )
    return server_cfg, client_cfg


@pytest.mark.interop
@pytest.mark.parametrize("direction", ["v2py-v2ray", "v2ray-v2py"])
async def test_vmess_over_h2_tls(direction: str, echo_server: tuple[str, int]) -> None:
    client_kind, server_kind = direction.split("-")
    socks_port, server_port = free_ports(2)
    server_cfg, client_cfg = _h2_configs(socks_port, server_port)
    async with asyncio.timeout(120):
        async with (
            _side(server_kind, server_cfg, tcp=server_port),
            _side(client_kind, client_cfg, tcp=socks_port),
        ):
            await _roundtrip(socks_port, echo_server, PAYLOAD)
            # 20 concurrent proxied connections, which 4.34's client puts on one
            # HTTP/2 connection as 20 streams.
            sizes = [64 * 1024 + 4099 * i for i in range(20)]
            await asyncio.gather(
                *(_roundtrip(socks_port, echo_server, PAYLOAD[:size]) for size in sizes)
            )


def _tls_socket(port: int, alpn: list[str] | None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="h2.test")


def _read_for(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    out = b""
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            out += data
    return out


_DATE = re.compile(rb"(?i)date: [^\r\n]*")


def _http1_probes(port: int) -> list[bytes]:
    answers = []
    with _tls_socket(port, ["http/1.1"]) as sock:
        # Two requests on one connection: a miss keeps it open.
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: h2.test\r\n\r\n")
        answers.append(_read_for(sock, 0.5))
        sock.sendall(b"GET /h2p HTTP/1.1\r\nHost: h2.test:443\r\n\r\n")
        answers.append(_read_for(sock, 0.5))
    with _tls_socket(port, ["http/1.1"]) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answers.append(_read_for(sock, 2))  # closed by the server: returns at once
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h2.test\r\n\r\n")
        answers.append(_read_for(sock, 2))
    return [_DATE.sub(b"date: *", a) for a in answers]


def _h2_probes(port: int) -> list[list[str]]:
    import h2.config
    import h2.connection
    import h2.events

    results = []
    for path, authority, method in [
        (b"/x", b"h2.test", b"PUT"),
        (b"/h2p", b"h2.test:443", b"PUT"),
        (b"/h2pXYZ?q=1", b"alt.test", b"GET"),
    ]:
        with _tls_socket(port, ["h2"]) as sock:
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding=None)
            )
            conn.initiate_connection()
            headers = [
                (b":method", method),
                (b":authority", authority),
                (b":scheme", b"https"),
                (b":path", path),
            ]
            conn.send_headers(1, headers)
            sock.sendall(conn.data_to_send())
            seen = []
            sock.settimeout(0.7)
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.ResponseReceived):
                            names = [(n, v) for n, v in event.headers if n != b"date"]
                            seen.append(f"response {names}")
                        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                            seen.append(
                                f"{type(event).__name__} {getattr(event, 'error_code', '')}"
                            )
                    sock.sendall(conn.data_to_send())
            results.append(seen)
    return results


@pytest.mark.interop
async def test_bad_requests_at_h2_port_answered_as_4_34(echo_server: tuple[str, int]) -> None:
    """HTTP/1.x, wrong host/path, plain HTTP: v2py answers as v2ray does (dates aside) and
    then still serves a v2ray client."""
    v2ray_port, v2py_port, socks_port = free_ports(3)
    server_ray, _ = _h2_configs(socks_port, v2ray_port)
    server_py, client_cfg = _h2_configs(socks_port, v2py_port)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(90):
        async with _side("v2ray", server_ray, tcp=v2ray_port), _side("v2py", server_py):
            expected = await loop.run_in_executor(None, _http1_probes, v2ray_port)
            got = await loop.run_in_executor(None, _http1_probes, v2py_port)
            assert got == expected
            assert expected[0].startswith(b"HTTP/1.1 404 Not Found\r\n")
            expected_h2 = await loop.run_in_executor(None, _h2_probes, v2ray_port)
            got_h2 = await loop.run_in_executor(None, _h2_probes, v2py_port)
            assert got_h2 == expected_h2
            async with _side("v2ray", client_cfg, tcp=socks_port):
                await _roundtrip(socks_port, echo_server, PAYLOAD[: 1 << 20])


# --------------------------------------------------------------------------
# QUIC


def _quic_cases() -> list[Any]:
    cases = []
    for direction in ("v2py-v2ray", "v2ray-v2py"):
        for security in ("none", "aes-128-gcm", "chacha20-poly1305"):
            for header in ("none", "wechat-video"):
                cases.append(
                    pytest.param(
                        direction,
                        {"security": security, "key": "k3y", "header": {"type": header}},
                        marks=[pytest.mark.interop],
                        id=f"{direction}-{security}-{header}",
                    )
                )
        # quicSettings absent altogether: AES-128-GCM with key "" on both.
        cases.append(
            pytest.param(direction, None, marks=[pytest.mark.interop], id=f"{direction}-absent")
        )
    return cases


@pytest.mark.parametrize(("direction", "settings"), _quic_cases())
async def test_vmess_over_quic(
    direction: str, settings: dict[str, Any] | None, echo_server: tuple[str, int]
) -> None:
    client_kind, server_kind = direction.split("-")
    socks_port, server_port = free_ports(2)
    stream: dict[str, Any] = {"network": "quic"}
    if settings is not None:
        stream["quicSettings"] = settings
    server_cfg = _with_stream(vmess_server_config(server_port, UUID, 0), "inbounds", stream)
    client_cfg = _with_stream(
        vmess_client_config(socks_port, server_port, UUID, 0, "aes-128-gcm"), "outbounds", stream
    )
    async with asyncio.timeout(120):
        async with (
            _side(server_kind, server_cfg, settle=0.5),
            _side(client_kind, client_cfg, tcp=socks_port),
        ):
            await _roundtrip(socks_port, echo_server, PAYLOAD)


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)


def _garbage() -> list[bytes]:
    rnd = random.Random(5)
    quic_like = b"\xc0\x00\x00\x00\x01\x08" + rnd.randbytes(8) + b"\x00" + rnd.randbytes(1200)
    return [b"", b"\x00", rnd.randbytes(12), rnd.randbytes(40), rnd.randbytes(1400), quic_like]


@pytest.mark.interop
@pytest.mark.parametrize("server_kind", ["v2ray", "v2py"])
async def test_garbage_datagrams_at_quic_port(
    server_kind: str, echo_server: tuple[str, int]
) -> None:
    """Undecryptable datagrams get no answer (4.34 drops them) and the listener keeps
    serving a v2ray client while they arrive."""
    socks_port, server_port = free_ports(2)
    stream = {"network": "quic", "quicSettings": {"security": "aes-128-gcm", "key": "k"}}
    server_cfg = _with_stream(vmess_server_config(server_port, UUID, 0), "inbounds", stream)
    client_cfg = _with_stream(
        vmess_client_config(socks_port, server_port, UUID, 0, "aes-128-gcm"), "outbounds", stream
    )
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(60):
        async with (
            _side(server_kind, server_cfg, settle=0.5),
            _side("v2ray", client_cfg, tcp=socks_port),
        ):
            transport, collector = await loop.create_datagram_endpoint(
                _Collect, remote_addr=("127.0.0.1", server_port)
            )
            try:

                async def spray() -> None:
                    for _ in range(50):
                        for datagram in _garbage():
                            transport.sendto(datagram)
                        await asyncio.sleep(0.01)

                await asyncio.gather(
                    spray(), _roundtrip(socks_port, echo_server, PAYLOAD[: 2 << 20])
                )
                await asyncio.sleep(0.3)
                assert collector.got == []
            finally:
                transport.close()
