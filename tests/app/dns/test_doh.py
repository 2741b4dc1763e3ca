"""DoH request building and answer handling (no network): URL parsing, Go's headers,
the DNS message bytes 4.34 sends, the HTTP/2 preface, gzip bodies, the per-name cache."""

from __future__ import annotations

import asyncio
import contextlib
import gzip

import dns.message
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.app.chain import stream_pair
from v2py.app.dns import DnsLookupError
from v2py.app.dns.doh import (
    DohError,
    DohNameServer,
    _H2Connection,
    decode_body,
    h1_request_headers,
    h2_request_headers,
)
from v2py.app.dns.nameserver import CacheEntry, make_query, parse_answer
from v2py.config.routing import parse_doh_address

#: What 4.34 sent for ``one.test`` A, question id 1, ``clientIp`` 1.2.3.4 (captured from
#: the binary by a local DoH server): RD, EDNS payload 1350, OPT TTL 0xe0008000, ECS /24.
GO_QUERY_A = bytes.fromhex(
    "000101000001000000000001036f6e65047465737400000100010000290546e0008000000b00080007"
    "00011800010203"
)
#: 4.34's HTTP/2 client preface after the magic: SETTINGS (ENABLE_PUSH 0,
#: INITIAL_WINDOW_SIZE 4 MiB, MAX_HEADER_LIST_SIZE 10 MiB), WINDOW_UPDATE +1 GiB.
GO_H2_PREFACE = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + bytes.fromhex("000012040000000000" + "000200000000" + "000400400000" + "000600a00000")
    + bytes.fromhex("00000408000000000040000000")
)


@pytest.mark.parametrize(
    ("url", "local", "host", "port", "authority", "target"),
    [
        ("https://1.1.1.1/dns-query", False, "1.1.1.1", 443, "1.1.1.1", "/dns-query"),
        ("https+local://dns.test:8443/q?a=1#x", True, "dns.test", 8443, "dns.test:8443", "/q?a=1"),
        ("HTTPS://h", False, "h", 443, "h", "/"),
        ("https://h?x", False, "h", 443, "h", "/?x"),
        ("https+local://[::1]:853/p%2F", True, "::1", 853, "[::1]:853", "/p%2F"),
    ],
)
def test_doh_urls(url: str, local: bool, host: str, port: int, authority: str, target: str) -> None:
    address = parse_doh_address(url)
    assert address is not None
    assert (address.local, address.host, address.port) == (local, host, port)
    assert (address.authority, address.target) == (authority, target)
    assert address.name == ("DOHL//" if local else "DOH//") + authority


@pytest.mark.parametrize(
    "url",
    [
        "https://",
        "https:///x",
        "https://h:abc/x",
        "https://h:0/x",
        "https://h:65536/",
        "https://u:p@h/x",
        "https://h%zz/x",
        "https://h/a b",
        "https://[fe80::1/x",
        "https://[1.2.3.4]/x",
        "https://h:/x",
    ],
)
def test_malformed_doh_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_doh_address(url)


@pytest.mark.parametrize("text", ["1.1.1.1", "localhost", "quic+local://h", "https:h/x", "tcp://h"])
def test_not_doh(text: str) -> None:
    assert parse_doh_address(text) is None


@given(st.text(max_size=40))
def test_parse_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_doh_address("https://" + text)


def test_query_bytes_as_4_34() -> None:
    assert make_query("one.test.", 1, "1.2.3.4", query_id=1).to_wire() == GO_QUERY_A
    plain = make_query("one.test.", 28, None, query_id=2).to_wire()
    assert plain[:12] == bytes.fromhex("000201000001000000000000")  # RD, no OPT


def test_request_headers_in_go_order() -> None:
    address = parse_doh_address("https://127.0.0.1:8443/dns-query")
    assert address is not None
    assert h2_request_headers(address, 48) == [
        (b":authority", b"127.0.0.1:8443"),
        (b":method", b"POST"),
        (b":path", b"/dns-query"),
        (b":scheme", b"https"),
        (b"accept", b"application/dns-message"),
        (b"content-type", b"application/dns-message"),
        (b"content-length", b"48"),
        (b"accept-encoding", b"gzip"),
        (b"user-agent", b"Go-http-client/2.0"),
    ]
    assert [k for k, _ in h1_request_headers(address, 48)] == [
        b"Host",
        b"User-Agent",
        b"Content-Length",
        b"Accept",
        b"Content-Type",
        b"Accept-Encoding",
    ]
    assert dict(h1_request_headers(address, 48))[b"User-Agent"] == b"Go-http-client/1.1"


async def test_h2_preface_is_go_s() -> None:
    ours, theirs = stream_pair()
    conn = _H2Connection(ours)
    try:
        async with asyncio.timeout(1):
            assert await theirs.read() == GO_H2_PREFACE
    finally:
        conn.close()


def test_gzip_bodies() -> None:
    wire = b"\x00\x01\x81\x80" + bytes(8)
    assert decode_body([], wire) == wire
    assert decode_body([(b"content-encoding", b"gzip")], gzip.compress(wire)) == wire
    with pytest.raises(DohError):
        decode_body([(b"Content-Encoding", b"gzip")], b"not gzip")
    with pytest.raises(DohError):
        decode_body([(b"content-encoding", b"gzip")], gzip.compress(wire)[:-4])
    with pytest.raises(DohError):
        decode_body([(b"content-encoding", b"gzip")], gzip.compress(bytes(70000)))


def test_answer_ttl_and_addresses() -> None:
    query = dns.message.make_query("a.test.", "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("a.test.", 300, "IN", "CNAME", "b.test."))
    reply.answer.append(dns.rrset.from_text("b.test.", 30, "IN", "A", "10.0.0.1", "10.0.0.2"))
    answer = parse_answer(reply.to_wire())
    assert sorted(answer.ips) == [bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])]
    assert answer.ttl == 30 and answer.rcode == 0
    zero = dns.message.make_response(query)
    zero.answer.append(dns.rrset.from_text("a.test.", 0, "IN", "A", "10.0.0.1"))
    assert parse_answer(zero.to_wire()).ttl == 600
    with pytest.raises(ValueError):
        parse_answer(b"\x00\x01garbage")


def _server(now: list[float]) -> DohNameServer:
    address = parse_doh_address("https+local://127.0.0.1/")
    assert address is not None

    async def no_dial(host: str, port: int) -> object:
        raise AssertionError("no network here")

    return DohNameServer(address, dial=no_dial, per_lookup=False, clock=lambda: now[0])  # type: ignore[arg-type]


V4 = bytes([10, 0, 0, 1])
V6 = bytes(15) + b"\x01"


def test_cache_as_4_34_find_ips_for_domain() -> None:
    now = [100.0]
    ns = _server(now)
    assert ns.cached("a.test.", ipv4=True, ipv6=True) is None
    ns._cache["a.test."] = {1: CacheEntry(130.0, (V4,), 0), 28: CacheEntry(110.0, (V6,), 0)}
    assert ns.cached("a.test.", ipv4=True, ipv6=True) == (V6, V4)  # AAAA first
    assert ns.cached("a.test.", ipv4=True, ipv6=False) == (V4,)
    now[0] = 120.0  # AAAA expired: A still answers a dual lookup
    assert ns.cached("a.test.", ipv4=True, ipv6=True) == (V4,)
    assert ns.cached("a.test.", ipv4=False, ipv6=True) is None  # ask again
    now[0] = 200.0
    assert ns.cached("a.test.", ipv4=True, ipv6=True) is None
    # only one family known: it answers (4.34 keeps a record per name)
    ns._cache["b.test."] = {1: CacheEntry(300.0, (V4,), 0)}
    assert ns.cached("b.test.", ipv4=True, ipv6=True) == (V4,)
    assert ns.cached("b.test.", ipv4=False, ipv6=True) is None
    # an empty or failed answer ends the lookup while it is fresh
    ns._cache["c.test."] = {1: CacheEntry(300.0, (), 0), 28: CacheEntry(250.0, (), 3)}
    with pytest.raises(DnsLookupError) as caught:
        ns.cached("c.test.", ipv4=True, ipv6=True)
    assert not caught.value.retry_next
    now[0] = 260.0
    with pytest.raises(DnsLookupError):
        ns.cached("c.test.", ipv4=True, ipv6=False)
    assert ns.cached("c.test.", ipv4=False, ipv6=True) is None  # the failed one expired


def test_question_ids_count_from_one() -> None:
    ns = _server([0.0])
    assert [ns._next_id() for _ in range(3)] == [1, 2, 3]
    ns._last_id = 0xFFFF
    assert ns._next_id() == 0
