"""Config pieces and traffic checks for the socks/http outbound and proxySettings tests
(scenarios on v2py alone, interop with the real v2ray both ways)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from tests.support.socks import socks5_connect

UUID = "d17a1af7-efa5-42ca-b7e9-6a35282d737f"
TIMEOUT_S = 20.0


def socks_in(
    port: int, *, tag: str = "", users: dict[str, str] | None = None, udp: bool = False
) -> dict[str, Any]:
    settings: dict[str, Any] = {"auth": "noauth", "udp": udp, "ip": "127.0.0.1"}
    if users:
        settings["auth"] = "password"
        settings["accounts"] = [{"user": u, "pass": p} for u, p in users.items()]
    return {
        "tag": tag,
        "listen": "127.0.0.1",
        "port": port,
        "protocol": "socks",
        "settings": settings,
    }


def http_in(port: int, *, tag: str = "", users: dict[str, str] | None = None) -> dict[str, Any]:
    accounts = [{"user": u, "pass": p} for u, p in (users or {}).items()]
    return {
        "tag": tag,
        "listen": "127.0.0.1",
        "port": port,
        "protocol": "http",
        "settings": {"accounts": accounts},
    }


def vmess_in(port: int, *, tag: str = "") -> dict[str, Any]:
    return {
        "tag": tag,
        "listen": "127.0.0.1",
        "port": port,
        "protocol": "vmess",
        "settings": {"clients": [{"id": UUID}]},
    }


def upstream_out(
    protocol: str,
    port: int,
    *,
    tag: str = "",
    users: dict[str, str] | None = None,
    proxy: str | None = None,
) -> dict[str, Any]:
    """A socks or http outbound to 127.0.0.1:port (optionally through ``proxy``)."""
    server: dict[str, Any] = {"address": "127.0.0.1", "port": port}
    if users:
        server["users"] = [{"user": u, "pass": p} for u, p in users.items()]
    out: dict[str, Any] = {"tag": tag, "protocol": protocol, "settings": {"servers": [server]}}
    if proxy is not None:
        out["proxySettings"] = {"tag": proxy}
    return out


def vmess_out(port: int, *, tag: str = "", proxy: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tag": tag,
        "protocol": "vmess",
        "settings": {
            "vnext": [
                {
                    "address": "127.0.0.1",
                    "port": port,
                    "users": [{"id": UUID, "security": "aes-128-gcm"}],
                }
            ]
        },
    }
    if proxy is not None:
        out["proxySettings"] = {"tag": proxy}
    return out


def config(inbounds: list[dict[str, Any]], outbounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"log": {"loglevel": "warning"}, "inbounds": inbounds, "outbounds": outbounds}


def freedom(tag: str = "direct") -> dict[str, Any]:
    return {"tag": tag, "protocol": "freedom", "settings": {}}


async def sha_roundtrip_via_socks(
    proxy_port: int, echo_port: int, size: int = 300_000, *, half_close: bool = True
) -> None:
    """Send ``size`` random bytes through a no-auth SOCKS5 proxy to a TCP echo server
    and check that the same bytes (by SHA-256) come back. ``half_close``: end the
    upload with a FIN before the echo is read (Mux.Cool ends a session's read side
    on it, as 4.34 does, so not through mux)."""
    payload = os.urandom(size)
    async with asyncio.timeout(TIMEOUT_S):
        reader, writer = await socks5_connect(proxy_port, "127.0.0.1", echo_port)
        try:

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
                if half_close:
                    writer.write_eof()

            sender = asyncio.create_task(send())
            received = await reader.readexactly(size)
            await sender
        finally:
            writer.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
