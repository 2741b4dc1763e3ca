"""Fallback selection, PROXY headers (protocol/fallback.py) and how ``fallbacks`` are read
(config/fallback.py), as 4.34's VLESS and Trojan inbounds do it."""

from __future__ import annotations

import pytest

from v2py.config.fallback import FallbackConfig, check_fallbacks
from v2py.protocol.fallback import FallbackTable, FallbackTarget, proxy_header, request_path


def _target(alpn: str = "", path: str = "", name: str = "x") -> FallbackTarget:
    return FallbackTarget(alpn, path, "tcp", name, 0)


def _req(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode()


def test_one_default_takes_everything() -> None:
    table = FallbackTable([_target(name="d")])
    for alpn, first in [(None, b""), ("h2", _req("/a")), ("http/1.1", b"PRI * HTTP/2.0")]:
        assert table.pick(alpn, first).address == "d"


def test_paths_and_alpns_with_defaults_filled_in() -> None:
    table = FallbackTable(
        [
            _target(name="d"),
            _target(path="/ws", name="ws"),
            _target(alpn="h2", name="h2"),
        ]
    )
    assert table.pick(None, _req("/ws")).address == "ws"
    assert table.pick(None, _req("/other")).address == "d"
    assert table.pick("h2", _req("/")).address == "h2"
    # "h2" has no "/ws" of its own: the "" alpn's fills it in
    assert table.pick("h2", _req("/ws")).address == "ws"
    assert table.pick("http/1.1", _req("/ws")).address == "ws"


def test_missing_defaults_are_4_34s_errors() -> None:
    only_h2 = FallbackTable([_target(alpn="h2", name="h2")])
    with pytest.raises(ValueError, match='default "alpn"'):
        only_h2.pick("http/1.1", _req("/"))
    only_path = FallbackTable([_target(path="/ws", name="ws")])
    with pytest.raises(ValueError, match='default "path"'):
        only_path.pick(None, _req("/"))
    assert only_path.pick(None, _req("/ws")).address == "ws"


def test_request_path_as_4_34_finds_it() -> None:
    assert request_path(_req("/a/b?c=1")) == "/a/b?c=1"
    assert request_path(b"OPTIONS /x HTTP/1.1\r\n\r\n") == "/x"  # "/" at offset 8
    assert request_path(b"PROPFIND /x HTTP/1.1\r\n\r\n") is None  # "/" past offset 8
    assert request_path(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") is None
    assert request_path(b"GET /x") is None  # shorter than 18 bytes
    assert request_path(b"GET /" + b"a" * 70 + b" HTTP/1.1\r\n") is None  # no space in 64
    assert request_path(b"GET /abc\r\nHost: h HTTP/1.1\r\n") is None  # line ends first


def test_proxy_headers_as_4_34_writes_them() -> None:
    remote, local = ("10.0.0.1", 5555), ("10.0.0.2", 443)
    assert proxy_header(1, remote, local) == b"PROXY TCP4 10.0.0.1 10.0.0.2 5555 443\r\n"
    assert proxy_header(2, remote, local) == (
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
        + bytes([10, 0, 0, 1, 10, 0, 0, 2])
        + (5555).to_bytes(2, "big")
        + (443).to_bytes(2, "big")
    )
    v6 = proxy_header(2, ("::1", 1), ("::2", 2))
    assert v6[13:16] == b"\x21\x00\x24" and len(v6) == 16 + 36
    assert proxy_header(1, ("::1", 1), ("::2", 2)) == b"PROXY TCP6 ::1 ::2 1 2\r\n"


def _read(**entry: object) -> tuple[str, str, str, str | bytes, int]:
    return check_fallbacks((FallbackConfig.model_validate(entry),), "VLESS")[0]


def test_dest_forms_as_4_34_reads_them() -> None:
    assert _read(dest=80)[2:4] == ("tcp", "127.0.0.1:80")
    assert _read(dest="8080")[2:4] == ("tcp", "127.0.0.1:8080")
    assert _read(dest="example.com:443")[2:4] == ("tcp", "example.com:443")
    assert _read(dest="[::1]:80")[2:4] == ("tcp", "[::1]:80")
    assert _read(dest="/dev/shm/h.sock")[2:4] == ("unix", "/dev/shm/h.sock")
    assert _read(dest="@h")[2:4] == ("unix", b"\0h")
    padded = _read(dest="@@h")[3]
    assert isinstance(padded, bytes) and len(padded) == 108 and padded.startswith(b"\0h\0")
    # an explicit type keeps dest as written (4.34 infers only without one)
    assert _read(type="unix", dest="@@h")[3] == b"\0@h"
    assert _read(type="tcp", dest="80")[2:4] == ("tcp", "80")
    assert _read(dest=80, xver=2, alpn="h2", path="/p") == ("h2", "/p", "tcp", "127.0.0.1:80", 2)
