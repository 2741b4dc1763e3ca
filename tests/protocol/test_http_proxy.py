"""HTTP proxy request-head parsing and rewriting (v2py.protocol.http_proxy)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.errors import RemoteProtocolError
from v2py.protocol.http_proxy import (
    HEAD_MAX_BYTES,
    HttpProxyRequest,
    check_basic_auth,
    decode_request_head,
    encode_origin_request,
    find_head_end,
)

GET_ABS = (
    b"GET http://Example.test:8080/a/b?q=1#frag HTTP/1.1\r\n"
    b"Host: example.test:8080\r\n"
    b"User-Agent: curl/8\r\n"
    b"Proxy-Connection: Keep-Alive\r\n"
    b"Proxy-Authorization: Basic dTpw\r\n"
    b"Connection: keep-alive, X-Hop\r\n"
    b"X-Hop: 1\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
)


def parse(data: bytes) -> tuple[HttpProxyRequest, int]:
    parsed = decode_request_head(data)
    assert parsed is not None
    return parsed


def feed_incrementally(data: bytes) -> tuple[HttpProxyRequest, int]:
    """Byte-at-a-time, as the shell does: find_head_end resumes, then decode once."""
    buf = bytearray()
    for i in range(len(data)):
        start = max(0, len(buf) - 3)
        buf += data[i : i + 1]
        if find_head_end(buf, start) is not None:
            return parse(bytes(buf))
    raise AssertionError("head never completed")


def test_absolute_get() -> None:
    request, end = parse(GET_ABS + b"body")
    assert end == len(GET_ABS)
    assert (request.method, request.host, request.port) == ("GET", "Example.test", 8080)
    assert request.path == "/a/b?q=1"
    assert request.absolute and not request.is_connect
    assert feed_incrementally(GET_ABS + b"body") == (request, end)


def test_origin_rewrite() -> None:
    request, _ = parse(GET_ABS)
    head = encode_origin_request(request)
    assert head.startswith(b"GET /a/b?q=1 HTTP/1.1\r\n")
    assert head.endswith(b"Connection: close\r\n\r\n")
    lowered = head.lower()
    for gone in (b"proxy-connection", b"proxy-authorization", b"keep-alive", b"x-hop"):
        assert gone not in lowered
    assert b"Host: Example.test:8080\r\n" in head
    assert b"Content-Length: 4\r\n" in head
    assert b"User-Agent: curl/8\r\n" in head


def test_rewrite_adds_host_and_keeps_framing() -> None:
    request, _ = parse(
        b"POST http://[::1]/ HTTP/1.1\r\nConnection: content-length, host\r\n"
        b"Content-Length: 1\r\n\r\n"
    )
    assert (request.host, request.port) == ("::1", 80)
    head = encode_origin_request(request)
    assert b"\r\nHost: [::1]\r\n" in head
    assert b"Content-Length: 1\r\n" in head


def test_absolute_uri_wins_over_host_header() -> None:
    request, _ = parse(b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
    assert request.host == "a.test"
    assert b"Host: a.test\r\n" in encode_origin_request(request)


def test_https_default_port_and_userinfo() -> None:
    request, _ = parse(b"GET https://user:pw@a.test HTTP/1.1\r\n\r\n")
    assert (request.host, request.port, request.path) == ("a.test", 443, "/")


@pytest.mark.parametrize(
    "target,host,port",
    [
        (b"example.test:443", "example.test", 443),
        (b"127.0.0.1:8080", "127.0.0.1", 8080),
        (b"[::1]:22", "::1", 22),
        (b"example.test", "example.test", 80),
    ],
)
def test_connect(target: bytes, host: str, port: int) -> None:
    request, _ = parse(b"CONNECT " + target + b" HTTP/1.1\r\nHost: whatever\r\n\r\n")
    assert request.is_connect and (request.host, request.port) == (host, port)


def test_origin_form_uses_host_header() -> None:
    request, _ = parse(b"GET /x HTTP/1.1\nHost: t.test:81\n\n")
    assert not request.absolute
    assert (request.host, request.port, request.path) == ("t.test", 81, "/x")
    request, _ = parse(b"GET /x HTTP/1.1\r\n\r\n")
    assert request.host == ""


def test_incomplete_head() -> None:
    assert decode_request_head(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n") is None
    assert find_head_end(b"GET / HTTP/1.1\r\n") is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
        b"GET http://a.test:99999/ HTTP/1.1\r\n\r\n",
        b"GET http://:80/ HTTP/1.1\r\n\r\n",
        b"GET ftp://a/ HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"CONNECT [::1 HTTP/1.1\r\n\r\n",
        b"CONNECT a:b:c HTTP/1.1\r\n\r\n",
        b"CONNECT [::1]x HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_request_head(data)


def test_oversized_head() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_request_head(b"GET / HTTP/1.1\r\nX: " + b"a" * HEAD_MAX_BYTES)
    with pytest.raises(RemoteProtocolError):
        decode_request_head(b"GET / HTTP/1.1\r\nX: " + b"a" * HEAD_MAX_BYTES + b"\r\n\r\n")


def _auth(value: str) -> HttpProxyRequest:
    request, _ = parse(
        b"GET http://a/ HTTP/1.1\r\nProxy-Authorization: " + value.encode() + b"\r\n\r\n"
    )
    return request


def test_basic_auth() -> None:
    accounts = {"alice": "pw:with:colons"}
    token = base64.b64encode(b"alice:pw:with:colons").decode()
    assert check_basic_auth(_auth(f"Basic {token}"), accounts) == "alice"
    assert check_basic_auth(_auth(f"basic  {token}"), accounts) == "alice"
    assert (
        check_basic_auth(_auth("Basic " + base64.b64encode(b"alice:no").decode()), accounts) is None
    )
    assert check_basic_auth(_auth("Basic " + base64.b64encode(b"alice").decode()), accounts) is None
    assert check_basic_auth(_auth("Basic !!!"), accounts) is None
    assert check_basic_auth(_auth(f"Bearer {token}"), accounts) is None
    request, _ = parse(b"GET http://a/ HTTP/1.1\r\n\r\n")
    assert check_basic_auth(request, accounts) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_heads_parse_or_raise_remote_error(data: bytes) -> None:
    try:
        parsed = decode_request_head(data)
    except RemoteProtocolError:
        return
    if parsed is not None:
        request, end = parsed
        assert 0 < end <= len(data)
        if request.host:
            encode_origin_request(request)


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, len(GET_ABS)), max_size=6))
def test_split_points(cuts: list[int]) -> None:
    buf = bytearray()
    result = None
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(GET_ABS)], strict=True):
        start = max(0, len(buf) - 3)
        buf += GET_ABS[a:b]
        if result is None and find_head_end(buf, start) is not None:
            result = parse(bytes(buf))
    assert result == parse(GET_ABS)
