"""Parsers of network input that had no property test: whatever the bytes, each returns
or raises only its documented error (TLS ClientHello ALPN, HTTP request heads and
paths, the fallback path and table, the MTProto header), and a real ClientHello is
read whichever way it is split into records."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.protocol.fallback import FallbackTable, FallbackTarget, request_path
from v2py.protocol.http_head import (
    RequestHeadError,
    parse_request_head,
    partial_head_ok,
)
from v2py.protocol.http_head import request_path as target_path
from v2py.protocol.mtproto import HEADER_BYTES, server_handshake
from v2py.protocol.tls_hello import ClientHelloAlpn, decode_client_hello_alpn

HTTPISH = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [b"GET ", b"POST ", b"/", b"/a%2", b"%zz", b" HTTP/1.1", b"HTTP/", b"\r\n", b"\n",
             b"Host: x", b"Host:", b":", b" ", b"\t", b"*", b"http://h/x?q", b"\x00", b"\xff"]
        ),
        max_size=30,
    ).map(b"".join),
)  # fmt: skip


def _hello(alpn: list[bytes] | None) -> bytes:
    ext = b""
    if alpn is not None:
        names = b"".join(bytes([len(n)]) + n for n in alpn)
        body = len(names).to_bytes(2, "big") + names
        ext = (16).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body
    hello = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    hello += len(ext).to_bytes(2, "big") + ext
    return b"\x01" + len(hello).to_bytes(3, "big") + hello


@given(st.binary(max_size=600))
@settings(max_examples=400)
def test_client_hello_reader_takes_any_bytes(data: bytes) -> None:
    found = decode_client_hello_alpn(data)
    assert found is None or isinstance(found, ClientHelloAlpn)
    if found is None:  # "need more" never flips to a crash once more arrives
        more = decode_client_hello_alpn(data + bytes(70_000))
        assert more is None or isinstance(more, ClientHelloAlpn)


@given(
    st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=60), max_size=5),
)
def test_client_hello_alpn_read_across_any_record_split(alpn: list[bytes], cuts: list[int]) -> None:
    message = _hello(alpn)
    records = b""
    start = 0
    for end in [*sorted(set(c for c in cuts if c < len(message))), len(message)]:
        if end > start:
            part = message[start:end]
            records += b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
            start = end
    found = decode_client_hello_alpn(records)
    assert found == ClientHelloAlpn(is_hello=True, offered=tuple(alpn))
    assert decode_client_hello_alpn(records[:-1]) is None


@given(HTTPISH)
@settings(max_examples=400)
def test_request_head_parser_raises_only_its_error(head: bytes) -> None:
    try:
        parsed = parse_request_head(head)
    except RequestHeadError:
        pass
    else:
        assert parsed.method and parsed.target
        target_path(parsed.target)
    assert partial_head_ok(head) in (True, False)


@given(st.text(max_size=80))
def test_target_path_is_text_or_none(target: str) -> None:
    got = target_path(target)
    assert got is None or isinstance(got, str)


@given(HTTPISH, st.one_of(st.none(), st.sampled_from(["h2", "http/1.1", "x"])))
def test_fallback_pick_decides_or_refuses(first: bytes, alpn: str | None) -> None:
    path = request_path(first)
    assert path is None or path.startswith("/")
    table = FallbackTable(
        [
            FallbackTarget(alpn="", path="", network="tcp", address="a", xver=0),
            FallbackTarget(alpn="h2", path="/x", network="tcp", address="b", xver=0),
        ]
    )
    assert table.pick(alpn, first).address in ("a", "b")
    only_paths = FallbackTable(
        [FallbackTarget(alpn="", path="/p", network="tcp", address="c", xver=0)]
    )
    try:
        assert only_paths.pick(alpn, first).address == "c"
    except ValueError as exc:
        assert "default" in str(exc)


@given(st.binary(min_size=HEADER_BYTES, max_size=HEADER_BYTES), st.binary(min_size=16, max_size=16))
@settings(max_examples=300)
def test_mtproto_header_opens_or_is_refused(header: bytes, secret: bytes) -> None:
    try:
        opened = server_handshake(header, secret)
    except ValueError as exc:
        assert "invalid" in str(exc)
    else:
        assert opened.datacenter >= 0


@pytest.mark.parametrize("size", [0, 1, HEADER_BYTES - 1, HEADER_BYTES + 1])
def test_mtproto_short_or_long_header_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="EOF"):
        server_handshake(bytes(size), bytes(16))
