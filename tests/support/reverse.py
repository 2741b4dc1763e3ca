"""The classic reverse-proxy setup of the V2Ray guide, for scenario and interop tests.

portal: a VMess inbound ("interconn") for the bridge's connections and an external
dokodemo inbound whose connections go to the portal; bridge: a VMess outbound to the
portal for connections to the reverse domain, freedom for the sessions the portal
sends (towards the local service).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

UUID = "3b4b7a1e-6d1c-4f52-9f38-2b6b5d0e8c11"
DOMAIN = "reverse.v2py.test"


def portal_config(
    vmess_port: int,
    external_port: int,
    service_port: int,
    *,
    udp: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """``udp``: (external UDP port, UDP service port) adds a dokodemo UDP inbound
    ("external-udp") whose datagrams go to the portal too."""
    config: dict[str, Any] = {
        "log": {"loglevel": "warning"},
        "reverse": {"portals": [{"tag": "portal", "domain": DOMAIN}]},
        "inbounds": [
            {
                "tag": "external",
                "port": external_port,
                "listen": "127.0.0.1",
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": service_port, "network": "tcp"},
            },
            {
                "tag": "interconn",
                "port": vmess_port,
                "listen": "127.0.0.1",
                "protocol": "vmess",
                "settings": {"clients": [{"id": UUID, "alterId": 0}]},
            },
        ],
        "outbounds": [{"tag": "direct", "protocol": "freedom"}],
        "routing": {
            "rules": [
                {
                    "type": "field",
                    "inboundTag": ["external", "external-udp"],
                    "outboundTag": "portal",
                },
                {
                    "type": "field",
                    "inboundTag": ["interconn"],
                    "domain": [f"full:{DOMAIN}"],
                    "outboundTag": "portal",
                },
            ]
        },
    }
    if udp is not None:
        udp_port, udp_service_port = udp
        config["inbounds"].append(
            {
                "tag": "external-udp",
                "port": udp_port,
                "listen": "127.0.0.1",
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": udp_service_port, "network": "udp"},
            }
        )
    return config


def bridge_config(portal_vmess_port: int, probe_port: int) -> dict[str, Any]:
    """``probe_port``: a socks inbound nobody uses, so that a test can wait for start."""
    return {
        "log": {"loglevel": "warning"},
        "reverse": {"bridges": [{"tag": "bridge", "domain": DOMAIN}]},
        "inbounds": [
            {"tag": "probe", "port": probe_port, "listen": "127.0.0.1", "protocol": "socks"}
        ],
        "outbounds": [
            {
                "tag": "interconn",
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "127.0.0.1",
                            "port": portal_vmess_port,
                            "users": [{"id": UUID, "alterId": 0, "security": "aes-128-gcm"}],
                        }
                    ]
                },
            },
            {"tag": "out", "protocol": "freedom"},
        ],
        "routing": {
            "rules": [
                {
                    "type": "field",
                    "inboundTag": ["bridge"],
                    "domain": [f"full:{DOMAIN}"],
                    "outboundTag": "interconn",
                },
                {"type": "field", "inboundTag": ["bridge"], "outboundTag": "out"},
            ]
        },
    }


def pattern(index: int, size: int) -> bytes:
    block = hashlib.sha256(index.to_bytes(4, "big")).digest()
    return (block * (size // len(block) + 1))[:size]


async def echo_through(port: int, index: int, size: int) -> None:
    """Send ``size`` bytes through the portal's external inbound to the echo service
    and check that the same bytes come back (by hash)."""
    payload = pattern(index, size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:

        async def send() -> None:
            view = memoryview(payload)
            for start in range(0, size, 64 * 1024):
                writer.write(view[start : start + 64 * 1024])
                await writer.drain()

        sender = asyncio.create_task(send())
        got = await reader.readexactly(size)
        await sender
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def wait_bridged(port: int, timeout: float = 10.0) -> None:
    """Retry a small echo until the bridge's connection has reached the portal."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with asyncio.timeout(1.0):
                    await echo_through(port, 0, 16)
                return
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                await asyncio.sleep(0.05)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def udp_round_trip(port: int, payloads: list[bytes]) -> None:
    """Send each payload from one socket to 127.0.0.1:``port`` and wait for it to come
    back (by content) before sending the next. The first one is sent again every 0.5 s
    until it comes back (a 4.34 dokodemo UDP inbound may be up a moment after its
    start line); a late copy of an earlier payload is skipped, anything else fails.
    The caller bounds the time."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))
    try:
        for index, payload in enumerate(payloads):
            transport.sendto(payload, ("127.0.0.1", port))
            while True:
                try:
                    async with asyncio.timeout(0.5 if index == 0 else None):
                        answer = await proto.queue.get()
                except TimeoutError:
                    transport.sendto(payload, ("127.0.0.1", port))
                    continue
                if answer == payload:
                    break
                assert answer in payloads[:index], (answer, payload)
    finally:
        transport.close()
