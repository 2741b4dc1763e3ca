"""``v2py link`` on VLESS / Trojan / Shadowsocks server configs and ``v2py client -link``
on its output: the client carries traffic through the same server run by v2ray 4.34."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.forward import echo_server
from tests.support.socks import socks5_connect
from tests.support.tls_certs import TestCA
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports, run_v2ray

pytestmark = pytest.mark.interop

ID = "0d3f1c52-77a4-4b2e-9d5c-1a2b3c4d5e6f"
LEAF = TestCA().issue("127.0.0.1")


def server(protocol: str, port: int) -> dict[str, Any]:
    inbound: dict[str, Any] = {"listen": "127.0.0.1", "port": port, "protocol": protocol}
    tls = {"security": "tls", "tlsSettings": {"certificates": [LEAF.inline()]}}
    if protocol == "vless":
        inbound["settings"] = {"clients": [{"id": ID, "email": "v@x"}], "decryption": "none"}
        inbound["streamSettings"] = {"network": "ws", "wsSettings": {"path": "/l"}, **tls}
    elif protocol == "trojan":
        inbound["settings"] = {"clients": [{"password": "p@ss w/rd"}]}
        inbound["streamSettings"] = tls
    else:
        inbound["settings"] = {"method": "chacha20-poly1305", "password": "pw:1"}
    return {"inbounds": [inbound], "outbounds": [{"protocol": "freedom"}]}


async def v2py(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "v2py", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    return out.decode()


@pytest.mark.parametrize("protocol", ["vless", "trojan", "shadowsocks"])
async def test_link_client_reaches_a_4_34_server(protocol: str, tmp_path: Path) -> None:
    server_port, socks_port = free_ports(2)
    config = server(protocol, server_port)
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps(config))
    (link,) = (await v2py("link", "-c", str(server_file))).split()
    assert link.startswith({"shadowsocks": "ss"}.get(protocol, protocol) + "://")
    if protocol != "shadowsocks":
        # a self-signed server: the user tells the client (as v2rayN's links do)
        link = link.replace("#", "&allowInsecure=1#") if "#" in link else link + "&allowInsecure=1"
    client = await v2py("client", "-link", link, "-port", str(socks_port))
    async with (
        echo_server() as echo,
        run_v2ray(config, wait_tcp=[server_port]),
        run_v2py(client),
        asyncio.timeout(30),
    ):
        reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo)
        try:
            writer.write(b"to 4.34 by link")
            await writer.drain()
            assert await reader.readexactly(15) == b"to 4.34 by link"
        finally:
            writer.close()
