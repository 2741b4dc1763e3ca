"""One access-log scenario run against v2py and the real V2Ray 4.34 alike.

A server config with a VMess inbound (one user with an email), a socks inbound
with a password, a socks inbound without one, a dokodemo-door and an HTTP
inbound, all going out through a freedom outbound tagged ``direct``;
:func:`probe` makes one connection of each kind (two failed VMess handshakes,
two failed socks handshakes, three accepted connections, an HTTP CONNECT and an
HTTP GET) and :data:`EXPECTED` is what 4.34 writes for them, times and ports
aside (:func:`normalize`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from tests.support.socks import socks5_connect

UUID = "c9087962-37fd-4fbb-a1de-55afcb4edcad"
EMAIL = "a@b.c"
PASSWORD_ACCOUNT = {"user": "u", "pass": "p"}
#: Short waits: every probe ends by the client closing, so nothing waits for a timer.
STEP_TIMEOUT_S = 10.0

#: 4.34's lines for :func:`probe`, after :func:`normalize` (recorded from the Debian
#: 4.34.0 binary; tests/interop/test_cli_interop.py checks them against it live).
EXPECTED = sorted(
    [
        "127.0.0.1:PORT rejected  v2ray.com/core/proxy/vmess/encoding: failed to drain "
        "connection DrainSize = N > v2ray.com/core/proxy/vmess/encoding: invalid user > "
        "v2ray.com/core/proxy/vmess: Not Found",
        "127.0.0.1:PORT rejected  v2ray.com/core/proxy/vmess/encoding: failed to read "
        "request header > unexpected EOF",
        "tcp:127.0.0.1:PORT rejected  v2ray.com/core/proxy/socks: no matching auth method",
        "tcp:127.0.0.1:PORT rejected  v2ray.com/core/proxy/socks: invalid username or password",
        "tcp:127.0.0.1:PORT accepted tcp:127.0.0.1:PORT [direct]",
        "127.0.0.1:PORT accepted tcp:127.0.0.1:PORT [direct]",
        f"127.0.0.1:PORT accepted tcp:127.0.0.1:PORT [direct] email: {EMAIL}",
        "127.0.0.1:PORT accepted //127.0.0.1:PORT [direct]",
        "127.0.0.1:PORT accepted http://127.0.0.1:PORT/x?y=1 [direct]",
    ]
)

#: A fail2ban ``failregex`` as one would write it for 4.34's access log (``<HOST>``
#: spelled out as a named group): VMess clients with a wrong id, socks clients
#: with a wrong password.
FAIL2BAN_REJECTED = re.compile(
    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:tcp:)?(?P<host>[0-9.]+):\d+ rejected\s+"
    r"v2ray\.com/core/proxy/(?:vmess/encoding: .*invalid user|socks: invalid username or password)"
)

_STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")
_PORT = re.compile(r"127\.0\.0\.1:\d+")
_DRAIN = re.compile(r"DrainSize = [\d ]+ >")


def access_lines(text: str) -> list[str]:
    """The access lines of a log (those with `` accepted `` / `` rejected ``)."""
    return [
        line
        for line in text.splitlines()
        if _STAMP.match(line) and (" accepted " in line or " rejected " in line)
    ]


def normalize(line: str) -> str:
    """Drop the time, the ports and the drain size (4.34 prints three numbers)."""
    line = _STAMP.sub("", line)
    line = _PORT.sub("127.0.0.1:PORT", line)
    return _DRAIN.sub("DrainSize = N >", line)


def server_config(ports: list[int], echo_port: int) -> dict[str, Any]:
    """The scenario's server on ``ports`` = [vmess, socks+password, socks, dokodemo, http]."""
    vmess, socks_auth, socks, doko, http = ports
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": vmess,
                "protocol": "vmess",
                "settings": {"clients": [{"id": UUID, "email": EMAIL}]},
            },
            {
                "listen": "127.0.0.1",
                "port": socks_auth,
                "protocol": "socks",
                "settings": {"auth": "password", "accounts": [PASSWORD_ACCOUNT]},
            },
            {"listen": "127.0.0.1", "port": socks, "protocol": "socks"},
            {
                "listen": "127.0.0.1",
                "port": doko,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": echo_port, "network": "tcp"},
            },
            {"listen": "127.0.0.1", "port": http, "protocol": "http"},
        ],
        "outbounds": [{"protocol": "freedom", "tag": "direct"}],
    }


def client_config(socks_port: int, vmess_port: int) -> dict[str, Any]:
    """A socks -> VMess client of the scenario's server (its outbound is tagged)."""
    return {
        "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks"}],
        "outbounds": [
            {
                "tag": "to-server",
                "protocol": "vmess",
                "settings": {
                    "vnext": [{"address": "127.0.0.1", "port": vmess_port, "users": [{"id": UUID}]}]
                },
            }
        ],
    }


async def _send_and_close(port: int, data: bytes, linger: float = 0.2) -> bytes:
    """Send ``data``, read what comes back within ``linger`` seconds, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(linger):
                return await reader.read(64)
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send 4 bytes through an opened tunnel, read them back, close."""
    try:
        writer.write(b"ping")
        await writer.drain()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            assert await reader.readexactly(4) == b"ping"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def probe(ports: list[int], echo_port: int, client_socks_port: int) -> None:
    """One connection of each kind against the server on ``ports`` (see EXPECTED)."""
    vmess, socks_auth, socks, doko, http = ports
    await _send_and_close(vmess, bytes(range(100)))  # unknown user: drained, then closed
    await _send_and_close(vmess, b"x" * 10, linger=0.05)  # less than an auth id
    assert await _send_and_close(socks_auth, b"\x05\x01\x00") == b"\x05\xff"
    await _send_and_close(socks_auth, b"\x05\x01\x02\x01\x01u\x01x")  # wrong password
    await echo_once(*await socks5_connect(socks, "127.0.0.1", echo_port))
    await echo_once(*await asyncio.open_connection("127.0.0.1", doko))
    await echo_once(*await socks5_connect(client_socks_port, "127.0.0.1", echo_port))
    target = f"127.0.0.1:{echo_port}"
    reader, writer = await asyncio.open_connection("127.0.0.1", http)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    async with asyncio.timeout(STEP_TIMEOUT_S):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await echo_once(reader, writer)
    get = f"GET http://{target}/x?y=1 HTTP/1.1\r\nHost: {target}\r\n\r\n"
    await _send_and_close(http, get.encode())


async def wait_for_lines(read: Any, count: int, timeout: float = STEP_TIMEOUT_S) -> list[str]:
    """Poll ``read()`` (the log text) until it holds ``count`` access lines."""
    async with asyncio.timeout(timeout):
        while len(lines := access_lines(read())) < count:
            await asyncio.sleep(0.05)
    return lines
