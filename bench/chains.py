"""Chain definitions: which processes a chain has and their (byte-identical) JSON configs.

A chain is one or two proxy processes on 127.0.0.1.  The first process always has a
SOCKS5 inbound the load generator talks to; the last one always ends in ``freedom``.
Both implementations get exactly the same JSON text; only the command line differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# A fixed user id: the bench is reproducible and never leaves 127.0.0.1.
BENCH_UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"

LOG = {"loglevel": "warning", "access": "none"}


@dataclass(frozen=True)
class ChainSpec:
    name: str
    description: str
    # vmess parameters; None for the single-process socks-freedom chain
    security: str | None = None
    alter_id: int = 0
    network: str = "tcp"
    # the client's outbound "mux" concurrency; None: mux off
    mux_concurrency: int | None = None
    # streamSettings.security "tls" on both vmess sides (self-signed; client allowInsecure)
    tls: bool = False
    # the proxy protocol between the two processes ("security" is the cipher method)
    proxy: str = "vmess"

    @property
    def is_vmess(self) -> bool:
        return self.security is not None

    @property
    def is_kcp(self) -> bool:
        return self.network == "kcp"

    @property
    def is_udp(self) -> bool:
        """mKCP and QUIC: a UDP server port and the smaller many-connection size (the
        smaller bulk size is mKCP's only)."""
        return self.network in ("kcp", "quic")


CHAINS: dict[str, ChainSpec] = {
    c.name: c
    for c in (
        ChainSpec("socks-freedom", "socks inbound -> freedom (one process)"),
        ChainSpec(
            "vmess-aead-gcm",
            "socks -> vmess(AEAD, aes-128-gcm) => vmess -> freedom",
            security="aes-128-gcm",
        ),
        ChainSpec(
            "vmess-aead-chacha",
            "socks -> vmess(AEAD, chacha20-poly1305) => vmess -> freedom",
            security="chacha20-poly1305",
        ),
        ChainSpec(
            "vmess-legacy-gcm",
            "socks -> vmess(alterId 4, aes-128-gcm) => vmess -> freedom",
            security="aes-128-gcm",
            alter_id=4,
        ),
        ChainSpec(
            "vmess-kcp", "as vmess-aead-gcm over mKCP (UDP)", security="aes-128-gcm", network="kcp"
        ),
        ChainSpec(
            "vmess-mux",
            "as vmess-aead-gcm with Mux.Cool on the client (concurrency 8)",
            security="aes-128-gcm",
            mux_concurrency=8,
        ),
        ChainSpec(
            "vmess-tls", "as vmess-aead-gcm over TLS (tcp)", security="aes-128-gcm", tls=True
        ),
        ChainSpec(
            "vmess-ws", "as vmess-aead-gcm over WebSocket", security="aes-128-gcm", network="ws"
        ),
        ChainSpec(
            "vmess-ws-tls",
            "as vmess-aead-gcm over WebSocket over TLS",
            security="aes-128-gcm",
            network="ws",
            tls=True,
        ),
        ChainSpec(
            "vmess-h2",
            "as vmess-aead-gcm over HTTP/2 over TLS",
            security="aes-128-gcm",
            network="http",
            tls=True,
        ),
        ChainSpec(
            "vmess-quic",
            "as vmess-aead-gcm over QUIC (aes-128-gcm packet encryption)",
            security="aes-128-gcm",
            network="quic",
        ),
        ChainSpec(
            "ss-gcm",
            "socks -> shadowsocks(aes-128-gcm) => shadowsocks -> freedom",
            security="aes-128-gcm",
            proxy="shadowsocks",
        ),
        ChainSpec(
            "ss-chacha",
            "socks -> shadowsocks(chacha20-poly1305) => shadowsocks -> freedom",
            security="chacha20-poly1305",
            proxy="shadowsocks",
        ),
        ChainSpec(
            "vless-tls",
            "socks -> vless => vless -> freedom, over TLS (tcp)",
            security="none",
            tls=True,
            proxy="vless",
        ),
        ChainSpec(
            "trojan-tls",
            "socks -> trojan => trojan -> freedom, over TLS (tcp)",
            security="none",
            tls=True,
            proxy="trojan",
        ),
    )
}


@dataclass
class Ports:
    socks: int
    vmess: int = 0  # the server's vmess inbound (TCP or UDP for kcp)
    dial: int = 0  # where the client's vmess outbound dials (== vmess, or the loss relay)


@dataclass
class ProcPlan:
    role: str  # "client" (has the socks inbound) or "server"
    config: dict[str, Any]
    tcp_ports: list[int] = field(default_factory=list)  # listening TCP ports to wait for
    udp_ports: list[int] = field(default_factory=list)  # bound UDP ports to wait for

    def config_text(self) -> str:
        return json.dumps(self.config, indent=2, sort_keys=True) + "\n"


_CERT: tuple[list[str], list[str]] | None = None


def _self_signed() -> tuple[list[str], list[str]]:
    """A self-signed P-256 certificate for "bench.test" (made once per bench run)."""
    global _CERT
    if _CERT is None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.test")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("bench.test")]), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        _CERT = (cert_pem.strip().splitlines(), key_pem.strip().splitlines())
    return _CERT


def _stream(spec: ChainSpec, *, server: bool = False) -> dict[str, Any]:
    stream: dict[str, Any] = {"network": spec.network}
    if spec.network == "ws":
        stream["wsSettings"] = {"path": "/bench"}
    if spec.network == "http":
        stream["httpSettings"] = {"host": ["bench.test"], "path": "/bench"}
    if spec.network == "quic":
        stream["quicSettings"] = {"security": "aes-128-gcm", "key": "bench"}
    if spec.tls:
        stream["security"] = "tls"
        if server:
            cert, key = _self_signed()
            stream["tlsSettings"] = {"certificates": [{"certificate": cert, "key": key}]}
        else:
            stream["tlsSettings"] = {"serverName": "bench.test", "allowInsecure": True}
    return stream


def plan(spec: ChainSpec, ports: Ports) -> list[ProcPlan]:
    """The processes of ``spec`` in start order (server first), with their configs."""
    socks_in = {
        "tag": "socks-in",
        "listen": "127.0.0.1",
        "port": ports.socks,
        "protocol": "socks",
        "settings": {"auth": "noauth", "udp": False},
    }
    freedom_out = {"tag": "direct", "protocol": "freedom", "settings": {}}
    if not spec.is_vmess:
        return [
            ProcPlan(
                "client",
                {"log": LOG, "inbounds": [socks_in], "outbounds": [freedom_out]},
                tcp_ports=[ports.socks],
            )
        ]
    vmess_out = {
        "tag": "vmess-out",
        "protocol": "vmess",
        "settings": {
            "vnext": [
                {
                    "address": "127.0.0.1",
                    "port": ports.dial,
                    "users": [
                        {"id": BENCH_UUID, "alterId": spec.alter_id, "security": spec.security}
                    ],
                }
            ]
        },
        "streamSettings": _stream(spec),
    }
    vmess_in = {
        "tag": "vmess-in",
        "listen": "127.0.0.1",
        "port": ports.vmess,
        "protocol": "vmess",
        "settings": {"clients": [{"id": BENCH_UUID, "alterId": spec.alter_id}]},
        "streamSettings": _stream(spec, server=True),
    }
    if spec.proxy == "shadowsocks":
        vmess_out = {
            "tag": "ss-out",
            "protocol": "shadowsocks",
            "settings": {
                "servers": [
                    {
                        "address": "127.0.0.1",
                        "port": ports.dial,
                        "method": spec.security,
                        "password": BENCH_UUID,
                    }
                ]
            },
            "streamSettings": _stream(spec),
        }
        vmess_in = {
            "tag": "ss-in",
            "listen": "127.0.0.1",
            "port": ports.vmess,
            "protocol": "shadowsocks",
            "settings": {"method": spec.security, "password": BENCH_UUID},
            "streamSettings": _stream(spec, server=True),
        }
    if spec.proxy == "vless":
        vmess_out = {
            "tag": "vless-out",
            "protocol": "vless",
            "settings": {
                "vnext": [
                    {
                        "address": "127.0.0.1",
                        "port": ports.dial,
                        "users": [{"id": BENCH_UUID, "encryption": "none"}],
                    }
                ]
            },
            "streamSettings": _stream(spec),
        }
        vmess_in = {
            "tag": "vless-in",
            "listen": "127.0.0.1",
            "port": ports.vmess,
            "protocol": "vless",
            "settings": {"clients": [{"id": BENCH_UUID}], "decryption": "none"},
            "streamSettings": _stream(spec, server=True),
        }
    if spec.proxy == "trojan":
        vmess_out = {
            "tag": "trojan-out",
            "protocol": "trojan",
            "settings": {
                "servers": [{"address": "127.0.0.1", "port": ports.dial, "password": BENCH_UUID}]
            },
            "streamSettings": _stream(spec),
        }
        vmess_in = {
            "tag": "trojan-in",
            "listen": "127.0.0.1",
            "port": ports.vmess,
            "protocol": "trojan",
            "settings": {"clients": [{"password": BENCH_UUID}]},
            "streamSettings": _stream(spec, server=True),
        }
    if spec.mux_concurrency is not None:
        vmess_out["mux"] = {"enabled": True, "concurrency": spec.mux_concurrency}
    client = ProcPlan(
        "client",
        {"log": LOG, "inbounds": [socks_in], "outbounds": [vmess_out]},
        tcp_ports=[ports.socks],
    )
    server = ProcPlan("server", {"log": LOG, "inbounds": [vmess_in], "outbounds": [freedom_out]})
    if spec.is_udp:
        server.udp_ports.append(ports.vmess)
    else:
        server.tcp_ports.append(ports.vmess)
    # server first so the client never dials a port that is not up yet
    return [server, client]
