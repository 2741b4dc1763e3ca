"""mKCP against the real V2Ray 4.34 (no VMess): both directions, every header, with/without seed.

(a) v2py dial_kcp -> v2ray dokodemo-door (kcp inbound) -> freedom -> TCP echo
(b) TCP client -> v2ray dokodemo-door (tcp) -> freedom (kcp, redirect) -> v2py listen_kcp echo
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket
import time

import pytest

from tests.support.lossy import LossyUdpRelay
from tests.support.v2ray import free_port, run_v2ray
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport.mkcp import KcpStream, dial_kcp, listen_kcp

pytestmark = pytest.mark.interop

SIZE = 4 * 1024 * 1024
CHUNK = 64 * 1024
HEADERS = ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"]
log = logging.getLogger(__name__)


def _kcp_json(header: str, seed: str | None) -> dict[str, object]:
    cfg: dict[str, object] = {"header": {"type": header}}
    if seed is not None:
        cfg["seed"] = seed
    return cfg


def _config(
    header: str, seed: str | None, kcp_in: int, tcp_in: int, echo_port: int, our_kcp: int
) -> dict[str, object]:
    kcp = _kcp_json(header, seed)
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "tag": "kcp-in",
                "listen": "127.0.0.1",
                "port": kcp_in,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": echo_port, "network": "tcp"},
                "streamSettings": {"network": "kcp", "kcpSettings": kcp},
            },
            {
                "tag": "tcp-in",
                "listen": "127.0.0.1",
                "port": tcp_in,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": our_kcp, "network": "tcp"},
            },
        ],
        "outbounds": [
            {"tag": "direct", "protocol": "freedom"},
            {
                "tag": "to-v2py",
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{our_kcp}"},
                "streamSettings": {"network": "kcp", "kcpSettings": kcp},
            },
        ],
        "routing": {
            "rules": [{"type": "field", "inboundTag": ["tcp-in"], "outboundTag": "to-v2py"}]
        },
    }


async def _echo(stream: KcpStream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()


async def _kcp_round_trip(port: int, settings: KcpSettings, payload: bytes) -> float:
    stream = await dial_kcp("127.0.0.1", port, settings)
    start = time.perf_counter()
    got = bytearray()

    async def writer() -> None:
        for i in range(0, len(payload), CHUNK):
            stream.write(payload[i : i + CHUNK])
            await stream.drain()

    async def reader() -> None:
        while len(got) < len(payload):
            chunk = await stream.read()
            assert chunk, "EOF from v2ray before the echo completed"
            got.extend(chunk)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(writer())
            tg.create_task(reader())
        elapsed = time.perf_counter() - start
    finally:
        # V2Ray answers our TERMINATE silently; don't linger for its 8 s timer.
        stream.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stream.wait_closed()
        stream.abort()
        await stream.wait_closed()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    return elapsed


async def _tcp_round_trip(port: int, payload: bytes) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    got = bytearray()

    async def send() -> None:
        for i in range(0, len(payload), CHUNK):
            writer.write(payload[i : i + CHUNK])
            await writer.drain()

    async def receive() -> None:
        while len(got) < len(payload):
            chunk = await reader.read(CHUNK)
            assert chunk, "EOF before the echo completed"
            got.extend(chunk)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(send())
            tg.create_task(receive())
        elapsed = time.perf_counter() - start
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    return elapsed


@pytest.mark.parametrize("seed", [None, "interop-seed"], ids=["noseed", "seed"])
@pytest.mark.parametrize("header", HEADERS)
async def test_mkcp_with_v2ray(header: str, seed: str | None, echo_server: tuple[str, int]) -> None:
    settings = KcpSettings(header_type=header, seed=seed)
    kcp_in = free_port(socket.SOCK_DGRAM)
    our_kcp = free_port(socket.SOCK_DGRAM)
    tcp_in = free_port()
    payload_a = random.Random(1).randbytes(SIZE)
    payload_b = random.Random(2).randbytes(SIZE)
    listener = await listen_kcp("127.0.0.1", our_kcp, settings, _echo)
    config = _config(header, seed, kcp_in, tcp_in, echo_server[1], our_kcp)
    try:
        async with run_v2ray(config, wait_tcp=[tcp_in], settle=0.3) as v2ray:
            try:
                async with asyncio.timeout(40):
                    t_a, t_b = await asyncio.gather(
                        _kcp_round_trip(kcp_in, settings, payload_a),
                        _tcp_round_trip(tcp_in, payload_b),
                    )
            except BaseException:
                print(v2ray.log())
                raise
        log.warning(
            "mKCP interop %s seed=%s: v2py->v2ray 4 MiB echo %.2fs, v2ray->v2py %.2fs",
            header,
            seed is not None,
            t_a,
            t_b,
        )
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_mkcp_to_v2ray_through_lossy_relay(echo_server: tuple[str, int]) -> None:
    """v2py -> 5 % loss, 20 ms relay -> v2ray kcp inbound -> echo; 2 MiB each way."""
    settings = KcpSettings()
    kcp_in = free_port(socket.SOCK_DGRAM)
    config = _config(
        "none", None, kcp_in, free_port(), echo_server[1], free_port(socket.SOCK_DGRAM)
    )
    payload = random.Random(3).randbytes(2 * 1024 * 1024)
    async with run_v2ray(config, settle=0.5) as v2ray:
        relay = await LossyUdpRelay(("127.0.0.1", kcp_in), loss=0.05, delay=0.02, seed=8).start()
        try:
            async with asyncio.timeout(40):
                elapsed = await _kcp_round_trip(relay.port, settings, payload)
        except BaseException:
            print(v2ray.log())
            raise
        finally:
            relay.close()
    assert relay.dropped > 0
    log.warning("mKCP interop 5%% loss 20 ms: 2 MiB each way in %.2fs", elapsed)
