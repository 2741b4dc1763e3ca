"""The domain-socket transport over real Unix sockets: addresses (file, abstract,
padded) as 4.34 builds them, listen + dial, the lock file, removal on close, a stale
socket file failing the start as 4.34 does, TLS on top, and the config rules."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support.layers import echo, read_all
from tests.support.tls_certs import TestCA
from v2py.config.load import load_config
from v2py.config.stream import TlsConfig
from v2py.config.transport_extra import DsConfig
from v2py.errors import ConfigError
from v2py.transport.ds import SUN_PATH_BYTES, DsTransport, unix_address
from v2py.transport.tls import TlsSecurity, TlsTransport

CA = TestCA()
LEAF = CA.issue("ds.test")


def ds(**settings: Any) -> DsConfig:
    return DsConfig.model_validate(settings, context={})


def test_unix_address_forms() -> None:
    assert unix_address(ds(path="/run/x.sock")) == "/run/x.sock"
    assert unix_address(ds(path="x", abstract=True)) == b"\0x"
    assert unix_address(ds(path="@x", abstract=True)) == b"\0x"
    # Go's syscall treats a leading "@" as abstract whatever the flag says.
    assert unix_address(ds(path="@x")) == b"\0x"
    padded = unix_address(ds(path="x", abstract=True, padding=True))
    assert padded == b"\0x" + b"\0" * (SUN_PATH_BYTES - 2)
    # padding alone (no abstract) changes nothing, as in 4.34
    assert unix_address(ds(path="/p", padding=True)) == "/p"


async def _roundtrip(transport: DsTransport | TlsTransport, payload: bytes) -> bytes:
    stream = await transport.dial("ignored.example", 1, timeout=5)
    try:
        stream.write(payload)
        await stream.drain()
        stream.write_eof()
        return await read_all(stream, len(payload))
    finally:
        stream.close()


async def test_file_socket_listen_dial_lock_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "v.sock"
    transport = DsTransport(ds(path=str(path)))
    listener = await transport.listen("127.0.0.1", 1234, echo)
    try:
        assert path.is_socket()
        assert (tmp_path / "v.sock.lock").exists()
        payload = os.urandom(300_000)
        async with asyncio.timeout(10):
            assert await _roundtrip(transport, payload) == payload
    finally:
        listener.close()
        await listener.wait_closed()
    assert not path.exists()
    assert not (tmp_path / "v.sock.lock").exists()


async def test_stale_socket_file_fails_the_start_and_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()  # what a crashed process leaves behind
    transport = DsTransport(ds(path=str(path)))
    with pytest.raises(OSError) as info:
        await transport.listen("127.0.0.1", 1, echo)
    assert "address already in use" in str(info.value).lower()
    assert f"listen unix {path}" in str(info.value)
    assert path.is_socket()  # not deleted (asyncio's create_unix_server would)
    assert not (tmp_path / "stale.sock.lock").exists()


@pytest.mark.parametrize("padding", [False, True])
async def test_abstract_socket(padding: bool) -> None:
    name = f"v2py-test-{os.getpid()}-{os.urandom(4).hex()}"
    transport = DsTransport(ds(path=name, abstract=True, padding=padding))
    listener = await transport.listen("0.0.0.0", 0, echo)
    try:
        async with asyncio.timeout(10):
            assert await _roundtrip(transport, b"abstract") == b"abstract"
        # The padded and unpadded names are different sockets.
        other = DsTransport(ds(path=name, abstract=True, padding=not padding))
        with pytest.raises(ConnectionRefusedError):
            await other.dial("x", 1, timeout=5)
    finally:
        listener.close()
        await listener.wait_closed()


async def test_tls_over_ds(tmp_path: Path) -> None:
    path = str(tmp_path / "tls.sock")
    server_tls = TlsSecurity(
        TlsConfig.model_validate({"certificates": [LEAF.inline()]}, context={}), network="ds"
    )
    client_tls = TlsSecurity(
        TlsConfig.model_validate(
            {"serverName": "ds.test", "certificates": [CA.pair.inline(usage="verify")]},
            context={},
        ),
        network="ds",
    )
    server = TlsTransport(DsTransport(ds(path=path)), server_tls)
    client = TlsTransport(DsTransport(ds(path=path)), client_tls)
    listener = await server.listen("127.0.0.1", 1, echo)
    try:
        async with asyncio.timeout(10):
            assert await _roundtrip(client, b"over tls") == b"over tls"
    finally:
        listener.close()
        await listener.wait_closed()


def _config(stream: dict[str, Any], protocol: str = "vmess") -> str:
    settings: dict[str, Any] = (
        {"vnext": [{"address": "a", "port": 1, "users": [{"id": UUID}]}]}
        if protocol == "vmess"
        else {}
    )
    return json.dumps(
        {
            "inbounds": [{"port": 1080, "protocol": "socks"}],
            "outbounds": [{"protocol": protocol, "settings": settings, "streamSettings": stream}],
        }
    )


UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"


def test_config_ds_network_spellings_and_global_settings() -> None:
    for network in ("ds", "domainsocket", "DomainSocket"):
        loaded = load_config(
            [("c.json", _config({"network": network, "dsSettings": {"path": "/x"}}))], {}
        )
        stream = loaded.config.outbounds[0].stream
        assert stream.network == "ds"
        assert stream.ds is not None and stream.ds.path == "/x"
    text = json.loads(_config({"network": "ds"}))
    text["transport"] = {"dsSettings": {"path": "@g", "abstract": True}}
    loaded = load_config([("c.json", json.dumps(text))], {})
    assert loaded.config.outbounds[0].stream.ds == ds(path="@g", abstract=True)


@pytest.mark.parametrize(
    ("stream", "protocol", "where"),
    [
        ({"network": "ds"}, "vmess", "outbounds[0].streamSettings.dsSettings.path"),
        ({"network": "ds", "dsSettings": {}}, "vmess", "outbounds[0].streamSettings.dsSettings"),
    ],
)
def test_config_ds_refusals(stream: dict[str, Any], protocol: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([("c.json", _config(stream, protocol))], {})
    assert where in str(info.value), str(info.value)
