"""HTTP Host / TLS SNI / BitTorrent sniffers (docs/spec/socks-sniffing-freedom.md section 2)."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.protocol.sniff import (
    SniffResult,
    SniffStatus,
    sniff,
    sniff_bittorrent,
    sniff_http,
    sniff_tls,
)

FOUND, NEED_MORE, UNKNOWN = SniffStatus.FOUND, SniffStatus.NEED_MORE, SniffStatus.UNKNOWN


def client_hello(server_name: str | None) -> bytes:
    """Real ClientHello bytes from the ssl module (no socket involved)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.fixture(scope="module")
def hello() -> bytes:
    return client_hello("example.test")


# -- HTTP -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", "example.test"),
        (b"get / HTTP/1.1\r\nHOST:  Example.TEST:8080 \r\n\r\n", "example.test"),
        (b"POST /x HTTP/1.1\r\nhost: [::1]:80\r\n\r\n", "::1"),
        (b"HEAD / HTTP/1.0\r\nHost: [2001:db8::1]\r\n\r\n", "2001:db8::1"),
        (b"PUT / HTTP/1.1\r\nHost: 10.0.0.1:\r\n\r\n", "10.0.0.1"),
        (b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", "b.test"),  # last wins
        (b"CONNECT x:1 HTTP/1.1\nHost: lf.test\n\n", "lf.test"),
        (b"DELETE / HTTP/1.1\r\nX: y\r\nHost: LocalHost:9999\r\n", "localhost"),
    ],
)
def test_http_host(data: bytes, expected: str) -> None:
    assert sniff(data) == SniffResult(FOUND, "http1", expected)


def test_http_scan_stops_only_at_a_truly_empty_line() -> None:
    # With CRLF the blank line is a lone "\r", so scanning continues into the body.
    data = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nHost: body.test\r\n"
    assert sniff_http(data).domain == "body.test"
    data = b"GET / HTTP/1.1\nHost: a.test\n\nHost: body.test\n"
    assert sniff_http(data).domain == "a.test"


@pytest.mark.parametrize(
    "data,status",
    [
        (b"", NEED_MORE),
        (b"GE", NEED_MORE),
        (b"XYZ", NEED_MORE),  # shorter than the next method in 4.34's list
        (b"XYZWVUT", UNKNOWN),
        (b"GET / HTTP/1.1\r\n", NEED_MORE),
        (b"GET / HTTP/1.1\r\nUser-Agent: x\r\n", NEED_MORE),
        (b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", UNKNOWN),  # too many colons
        (b"GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n", UNKNOWN),  # bad port
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", UNKNOWN),
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", NEED_MORE),  # empty host
        (b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", NEED_MORE),  # name not trimmed
    ],
)
def test_http_statuses(data: bytes, status: SniffStatus) -> None:
    assert sniff_http(data).status is status


def test_http_need_more_byte_by_byte() -> None:
    data = b"GET /index HTTP/1.1\r\nHost: example.test\r\n\r\n"
    end_of_host = data.index(b"\r\n\r\n")
    for i in range(len(data) + 1):
        result = sniff(data[:i])
        if i < end_of_host - len("example.test") + 1:
            assert result.status in (NEED_MORE, FOUND)
        if i < data.index(b"Host"):
            assert result.status is NEED_MORE
    assert sniff(data) == SniffResult(FOUND, "http1", "example.test")


# -- TLS ------------------------------------------------------------------------------


def test_tls_sni(hello: bytes) -> None:
    assert hello[0] == 0x16
    assert sniff(hello) == SniffResult(FOUND, "tls", "example.test")
    assert sniff_tls(hello + b"trailing") == SniffResult(FOUND, "tls", "example.test")


def test_tls_partial_records_need_more(hello: bytes) -> None:
    for i in range(len(hello)):
        assert sniff(hello[:i]).status is NEED_MORE, i


def test_tls_without_sni_is_unknown() -> None:
    assert sniff(client_hello(None)).status is UNKNOWN


def test_tls_trailing_dot_rejected(hello: bytes) -> None:
    # Same-length swap keeps every length field valid.
    mutated = hello.replace(b"example.test", b"example.tes.")
    assert sniff_tls(mutated).status is UNKNOWN


def test_tls_not_handshake_or_wrong_version(hello: bytes) -> None:
    assert sniff_tls(b"\x17" + hello[1:]).status is UNKNOWN
    assert sniff_tls(hello[:1] + b"\x02" + hello[2:]).status is UNKNOWN


def test_tls_bad_extension_block(hello: bytes) -> None:
    # Break the exact-length rule of the extension block.
    body = bytearray(hello)
    sid_len = body[5 + 38]
    pos = 5 + 39 + sid_len
    suites = int.from_bytes(body[pos : pos + 2], "big")
    pos += 2 + suites
    pos += 1 + body[pos]
    ext_len = int.from_bytes(body[pos : pos + 2], "big")
    body[pos : pos + 2] = (ext_len - 1).to_bytes(2, "big")
    assert sniff_tls(bytes(body)).status is UNKNOWN


def test_tls_tiny_record_need_more() -> None:
    # A complete record too short for a ClientHello is "no clue" in 4.34.
    assert sniff_tls(b"\x16\x03\x01\x00\x02ab").status is NEED_MORE


# -- BitTorrent and ordering ----------------------------------------------------------


def test_bittorrent() -> None:
    data = b"\x13BitTorrent protocol" + bytes(8)
    assert sniff(data) == SniffResult(FOUND, "bittorrent", "")
    assert sniff_bittorrent(data[:10]).status is NEED_MORE
    assert sniff_bittorrent(b"\x13BitTorrent protocoX").status is UNKNOWN


def test_unknown_protocol() -> None:
    assert sniff(b"SSH-2.0-OpenSSH_9.0\r\n").status is UNKNOWN
    assert sniff(b"\x00" * 64).status is UNKNOWN


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_never_raises(data: bytes) -> None:
    result = sniff(data)
    assert result.status in (FOUND, NEED_MORE, UNKNOWN)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 2000), flip=st.integers(0, 255))
def test_mutated_client_hello_never_raises(hello: bytes, cut: int, flip: int) -> None:
    data = bytearray(hello)
    data[cut % len(data)] ^= flip
    sniff(bytes(data))
