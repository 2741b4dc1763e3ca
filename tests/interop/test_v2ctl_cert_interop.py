"""Certificates made by 4.34's own ``v2ctl cert`` (as V2Ray's guides make them) and by
``v2py cert`` (the same flags; the same extensions) serve TLS under v2py as under
v2ray: a leaf (v2ctl labels its PKCS #8 ECDSA key ``RSA PRIVATE KEY``, which OpenSSL
alone refuses) with ``usage: "encipherment"``, and a ``--ca`` one with
``usage: "issue"`` (the client verifies the leaf minted for its SNI against that CA)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.shell.test_commander_cli import require_v2ctl
from tests.support.forward import echo_server
from tests.support.socks import socks5_connect
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_ports, require_v2ray, run_v2ray

pytestmark = pytest.mark.interop

ID = str(uuid.UUID(int=0xCE27))


async def make_cert(maker: str, *args: str) -> dict[str, Any]:
    """``v2ctl cert ARGS`` or ``v2py cert ARGS`` (the same flags), as JSON."""
    argv = [require_v2ctl(), "cert"] if maker == "v2ctl" else [sys.executable, "-m", "v2py", "cert"]
    proc = await asyncio.create_subprocess_exec(*argv, *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    made: dict[str, Any] = json.loads(out)
    label = "RSA PRIVATE KEY" if maker == "v2ctl" else "PRIVATE KEY"
    assert made["key"][0] == f"-----BEGIN {label}-----"
    return made


def _extensions(made: dict[str, Any]) -> list[tuple[str, bool, str]]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate("\n".join(made["certificate"]).encode())
    shown = []
    for ext in cert.extensions:
        value = "" if isinstance(ext.value, x509.SubjectKeyIdentifier) else repr(ext.value)
        shown.append((ext.oid.dotted_string, ext.critical, value))
    return sorted(shown)


@pytest.mark.parametrize("args", [("--domain=a.test", "--name=a.test"), ("--ca",)])
async def test_v2py_cert_makes_what_v2ctl_cert_makes(args: tuple[str, ...]) -> None:
    v2ctl, v2py = await make_cert("v2ctl", *args), await make_cert("v2py", *args)
    assert _extensions(v2ctl) == _extensions(v2py)


def server(port: int, cert: dict[str, Any], usage: str, network: str) -> dict[str, Any]:
    entry = {"certificate": cert["certificate"], "key": cert["key"], "usage": usage}
    stream = {"network": network, "security": "tls", "tlsSettings": {"certificates": [entry]}}
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {"listen": "127.0.0.1", "port": port, "protocol": "vless",
             "settings": {"clients": [{"id": ID}], "decryption": "none"},
             "streamSettings": stream},
        ],
        "outbounds": [{"protocol": "freedom"}],
    }  # fmt: skip


def client(socks: int, port: int, tls: dict[str, Any], network: str) -> dict[str, Any]:
    vnext = [{"address": "127.0.0.1", "port": port, "users": [{"id": ID, "encryption": "none"}]}]
    return {
        "inbounds": [{"listen": "127.0.0.1", "port": socks, "protocol": "socks"}],
        "outbounds": [
            {"protocol": "vless", "settings": {"vnext": vnext},
             "streamSettings": {"network": network, "security": "tls", "tlsSettings": tls}},
        ],
    }  # fmt: skip


@contextlib.asynccontextmanager
async def serving(
    kind: str, config: dict[str, Any], port: int, network: str
) -> AsyncIterator[None]:
    if kind == "v2ray" and network == "quic":  # a UDP listener: no TCP port to wait for
        async with run_v2ray(config, settle=1.0):
            yield
    else:
        async with run_side(kind, config, port):
            yield


@pytest.mark.parametrize(
    ("maker", "usage", "network"),
    [
        ("v2ctl", "encipherment", "tcp"),
        ("v2ctl", "issue", "tcp"),
        ("v2ctl", "encipherment", "quic"),
        ("v2ctl", "issue", "quic"),
        ("v2py", "encipherment", "tcp"),
        ("v2py", "issue", "tcp"),
        ("v2py", "issue", "quic"),
    ],
)
async def test_made_certificates_serve_tls_as_under_4_34(
    maker: str, usage: str, network: str
) -> None:
    require_v2ray()
    if usage == "issue":
        made = await make_cert(maker, "--ca", "--expire=24h")
        # The client trusts the CA and checks the minted leaf's name.
        tls: dict[str, Any] = {
            "serverName": "minted.test",
            "certificates": [{"certificate": made["certificate"], "usage": "verify"}],
        }
    else:
        made = await make_cert(maker, "--domain=leaf.test", "--name=leaf.test")
        tls = {"serverName": "leaf.test", "allowInsecure": True}
    async with echo_server() as echo:
        for kind in ("v2ray", "v2py"):
            port, socks = free_ports(2)
            async with (
                serving(kind, server(port, made, usage, network), port, network),
                run_v2py(client(socks, port, tls, network)),
                asyncio.timeout(30),
            ):
                reader, writer = await socks5_connect(socks, "127.0.0.1", echo)
                try:
                    writer.write(b"ping")
                    await writer.drain()
                    assert await reader.readexactly(4) == b"ping", kind
                finally:
                    writer.close()


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_4_34_client_verifies_leaves_a_quic_server_issues(kind: str) -> None:
    """A 4.34 client over QUIC, trusting a ``v2ctl cert --ca`` CA, reaches a server
    (4.34, then v2py) that mints a leaf for each SNI with that CA (``usage: "issue"``),
    for two names in turn."""
    require_v2ray()
    made = await make_cert("v2ctl", "--ca", "--expire=24h")
    async with echo_server() as echo:
        port = free_ports(1)[0]
        async with serving(kind, server(port, made, "issue", "quic"), port, "quic"):
            for name in ("first.test", "second.test"):
                socks = free_ports(1)[0]
                tls = {
                    "serverName": name,
                    "certificates": [{"certificate": made["certificate"], "usage": "verify"}],
                }
                async with (
                    run_v2ray(client(socks, port, tls, "quic"), wait_tcp=[socks]),
                    asyncio.timeout(30),
                ):
                    reader, writer = await socks5_connect(socks, "127.0.0.1", echo)
                    try:
                        writer.write(b"ping")
                        await writer.drain()
                        assert await reader.readexactly(4) == b"ping", (kind, name)
                    finally:
                        writer.close()
