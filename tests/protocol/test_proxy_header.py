"""PROXY protocol v1/v2 decoding as go-proxyproto 0.4.2 with policy REQUIRE."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.proxy_header import ProxyHeaderError, decode_proxy_header

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
V2_TCP4 = V2_SIG + b"\x21\x11\x00\x0c" + bytes([1, 2, 3, 4, 5, 6, 7, 8]) + b"\x04\x57\x08\xae"


@pytest.mark.parametrize(
    ("data", "size", "source"),
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhello", 38, ("1.2.3.4", 1111)),
        (b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n", 32, ("2001:db8::1", 1)),
        (b"PROXY UNKNOWN\r\nx", 15, None),
        (b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", 31, None),
        (V2_TCP4 + b"hello", 28, ("1.2.3.4", 1111)),
        (V2_SIG + b"\x20\x00\x00\x00", 16, None),  # LOCAL
        (V2_SIG + b"\x21\x11\x00\x0f" + bytes(15), 31, ("0.0.0.0", 0)),  # with TLVs
        (V2_SIG + b"\x21\x21\x00\x24" + bytes(15) + b"\x01" + bytes(16) + b"\x00\x05\x00\x06",
         52, ("::1", 5)),
    ],
)  # fmt: skip
def test_good_headers(data: bytes, size: int, source: tuple[str, int] | None) -> None:
    header = decode_proxy_header(data)
    assert header is not None and header.size == size and header.source == source
    for cut in range(size):
        assert decode_proxy_header(data[:cut]) is None  # byte at a time: need more


@pytest.mark.parametrize(
    "data",
    [
        b"hello",
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY " + b"x" * 120,
        V2_SIG + b"\x22\x11\x00\x0c" + bytes(12),
        V2_SIG + b"\x21\x00\x00\x00",
        V2_SIG + b"\x21\x11\x00\x04" + bytes(4),
        V2_SIG + b"\x21\x11\x10\x01",
        b"\r\n\r\nxxxxxxxx",
    ],
)
def test_bad_headers(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        decode_proxy_header(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_decode_wait_or_raise(data: bytes) -> None:
    try:
        header = decode_proxy_header(data)
    except ProxyHeaderError:
        return
    assert header is None or 0 < header.size <= len(data)
