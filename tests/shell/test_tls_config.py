"""``tlsSettings``/``wsSettings``/TCP ``header`` through the loader and the command line:
certificate files are read while loading (``v2py test`` reports a missing one with its
path, exit 23, as 4.34's ``-test`` fails), and the layer stack each config builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.tls_certs import TestCA
from v2py.build import build_transport
from v2py.config.load import load_config
from v2py.transport import KcpTransport, TcpTransport


def _inbound(stream: dict[str, Any]) -> dict[str, Any]:
    return {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": 12345,
                "protocol": "vmess",
                "settings": {"clients": []},
                "streamSettings": stream,
            }
        ]
    }


def _v2py_test(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2py", "test", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_missing_certificate_file_fails_v2py_test(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    missing = {"certificateFile": str(tmp_path / "none.crt"), "keyFile": str(tmp_path / "k")}
    stream = {"security": "tls", "tlsSettings": {"certificates": [missing]}}
    config.write_text(json.dumps(_inbound(stream)))
    proc = _v2py_test(config)
    assert proc.returncode == 23
    assert (
        "inbounds[0].streamSettings.tlsSettings.certificates[0].certificateFile"
        in proc.stdout + proc.stderr
    )


def test_certificate_files_are_read(tmp_path: Path) -> None:
    cert, key = TestCA().issue("a.test").write(tmp_path, "leaf")
    config = tmp_path / "c.json"
    files = {"certificateFile": cert, "keyFile": key}
    stream = {"network": "ws", "security": "tls", "tlsSettings": {"certificates": [files]}}
    config.write_text(json.dumps(_inbound(stream)))
    proc = _v2py_test(config)
    assert proc.returncode == 0, proc.stderr


def _layers(stream: dict[str, Any]) -> list[str]:
    loaded = load_config([("t.json", json.dumps(_inbound(stream)))], {})
    transport: Any = build_transport(loaded.config.inbounds[0].stream)
    names = []
    while transport is not None:
        names.append(type(transport).__name__)
        transport = getattr(transport, "inner", None)
    return names


@pytest.mark.parametrize(
    ("stream", "layers"),
    [
        ({}, ["TcpTransport"]),
        ({"security": "TLS"}, ["TlsTransport", "TcpTransport"]),
        ({"security": "tls", "tcpSettings": {"acceptProxyProtocol": True,
                                             "header": {"type": "http"}}},
         ["HttpHeaderTransport", "TlsTransport", "ProxyProtocolTransport", "TcpTransport"]),
        ({"network": "websocket"}, ["WsTransport", "TcpTransport"]),
        ({"network": "ws", "security": "tls", "wsSettings": {"acceptProxyProtocol": True}},
         ["WsTransport", "TlsTransport", "ProxyProtocolTransport", "TcpTransport"]),
        ({"network": "kcp", "security": "tls"}, ["TlsTransport", "KcpTransport"]),
        ({"network": "ws", "tcpSettings": {"header": {"type": "http"}}},
         ["WsTransport", "TcpTransport"]),  # tcpSettings do not apply to ws (4.34 too)
    ],
)  # fmt: skip
def test_layer_stack_per_stream_settings(stream: dict[str, Any], layers: list[str]) -> None:
    assert _layers(stream) == layers
    assert TcpTransport and KcpTransport  # the bottoms named above


def test_transport_ws_settings_apply_to_streams_without_their_own() -> None:
    data = _inbound({"network": "ws"})
    data["transport"] = {"wsSettings": {"path": "/global"}}
    loaded = load_config([("t.json", json.dumps(data))], {})
    ws = loaded.config.inbounds[0].stream.ws
    assert ws is not None and ws.normalized_path == "/global"


@pytest.mark.parametrize(
    ("stream", "path", "fragment"),
    [
        ({"security": "tls", "tlsSettings": {"alpn": "h2,"}}, "tlsSettings.alpn", '""'),
        ({"security": "xtls"}, "security", '"xtls" is not allowed'),
        ({"security": "tls", "tlsSettings": {"certificates": [{"certificate": "x"}]}},
         "tlsSettings.certificates[0].certificate", "not a list of PEM lines"),
        ({"network": "ws", "wsSettings": {"headers": {"Host": 1}}}, "wsSettings.headers.Host",
         "not a string"),
        ({"tcpSettings": {"header": {"type": "srtp"}}}, "tcpSettings.header.type",
         '"srtp" is not allowed'),
    ],
)  # fmt: skip
def test_bad_stream_settings(stream: dict[str, Any], path: str, fragment: str) -> None:
    from v2py.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config([("t.json", json.dumps(_inbound(stream)))], {})
    assert info.value.path == f"inbounds[0].streamSettings.{path}"
    assert fragment in info.value.message


def test_unknown_434_keys_warn() -> None:
    stream = {
        "network": "ws",
        "security": "tls",
        "wsSettings": {"maxEarlyData": 2048},
        "tlsSettings": {"pinnedPeerCertificateChainSha256": ["x"], "fingerprint": "chrome"},
    }
    warnings = load_config([("t.json", json.dumps(_inbound(stream)))], {}).warnings
    assert any("wsSettings.maxEarlyData" in w for w in warnings)
    assert any("tlsSettings.pinnedPeerCertificateChainSha256" in w for w in warnings)
    assert any("tlsSettings.fingerprint" in w for w in warnings)


def test_legacy_ws_path_key() -> None:
    loaded = load_config([("t.json", json.dumps(_inbound({"network": "ws", "wsSettings": {
        "Path": "legacy"}})))], {})  # fmt: skip
    ws = loaded.config.inbounds[0].stream.ws
    assert ws is not None and ws.normalized_path == "/legacy"
