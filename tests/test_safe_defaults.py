"""Safe defaults (issue 12): the embedded default config and the client config v2py
writes listen on 127.0.0.1 and expose no API; VMess user ids never appear whole in logs
or in error messages (4.34 prints none)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import uuid

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports
from v2py.config.load import DEFAULT_CONFIG_JSON, load_config
from v2py.config.share import ShareLinkError, VmessLink, client_config, decode_vmess_link
from v2py.errors import ConfigError

TIMEOUT_S = 10.0


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def test_embedded_default_listens_on_loopback_without_api() -> None:
    config = load_config([("<embedded default>", DEFAULT_CONFIG_JSON)], {}).config
    assert config.inbounds
    assert all(_loopback(inbound.listen) for inbound in config.inbounds)
    assert config.api is None


def test_client_config_from_a_link_listens_on_loopback() -> None:
    link = VmessLink(ps="x", add="203.0.113.1", port=443, id=str(uuid.uuid4()))
    raw = client_config(link)
    config = load_config([("client.json", json.dumps(raw))], {}).config
    assert all(_loopback(inbound.listen) for inbound in config.inbounds)
    assert config.api is None


def test_a_near_miss_user_id_is_not_printed_whole() -> None:
    secret = str(uuid.uuid4())[:-1] + "g"
    text = json.dumps(
        {
            "inbounds": [
                {
                    "listen": "127.0.0.1",
                    "port": 1234,
                    "protocol": "vmess",
                    "settings": {"clients": [{"id": secret}]},
                }
            ],
            "outbounds": [{"protocol": "freedom"}],
        }
    )
    with pytest.raises(ConfigError) as info:
        load_config([("c.json", text)], {})
    message = str(info.value)
    assert "is not a UUID" in message and secret[:4] in message
    assert secret not in message and secret[4:12] not in message


def test_a_broken_link_id_is_not_printed_whole() -> None:
    import base64

    secret = str(uuid.uuid4())[:-1] + "g"
    body = json.dumps({"v": "2", "add": "203.0.113.1", "port": "443", "id": secret, "aid": "0"})
    with pytest.raises(ShareLinkError) as info:
        decode_vmess_link("vmess://" + base64.b64encode(body.encode()).decode())
    assert secret not in str(info.value) and secret[4:12] not in str(info.value)


async def test_logs_never_carry_a_user_id(caplog: pytest.LogCaptureFixture) -> None:
    """A served request, a refused one (wrong id) and the access log, at debug level."""
    caplog.set_level(logging.DEBUG)
    socks_port, bad_socks_port, vmess_port = free_ports(3)
    user = str(uuid.uuid4())
    wrong = str(uuid.uuid4())
    server = vmess_server_config(vmess_port, user, 0, email="alice@example.test", loglevel="debug")
    client = vmess_client_config(socks_port, vmess_port, user, 0, "aes-128-gcm")
    bad = vmess_client_config(bad_socks_port, vmess_port, wrong, 0, "aes-128-gcm")
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    try:
        async with run_v2py(server), run_v2py(client), run_v2py(bad):
            async with asyncio.timeout(TIMEOUT_S):
                reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                writer.close()
                reader, writer = await socks5_connect(bad_socks_port, "127.0.0.1", echo_port)
                writer.write(b"ping")
                while "invalid request" not in caplog.text:  # refused (and never answered)
                    await asyncio.sleep(0.02)
                writer.close()
    finally:
        echo.close()
    text = caplog.text
    assert "invalid" in text.lower()  # the refusal was logged ...
    for secret in (user, wrong):
        for form in (secret, secret.replace("-", ""), uuid.UUID(secret).bytes.hex()):
            assert form not in text  # ... without the id
        assert repr(uuid.UUID(secret).bytes) not in text


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
