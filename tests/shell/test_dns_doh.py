"""DNS over HTTPS against a small local DoH server (TLS from the test CA; HTTP/2 with h2,
HTTP/1.1 with h11; answers built with dnspython)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import h2.config
import h2.connection
import h2.events
import h11
import pytest

from tests.support.tls_certs import TestCA
from tests.support.v2py import run_v2py
from v2py.app.dns import DnsClient, DnsLookupError, _Server, build_dns_client
from v2py.app.dns.doh import DohNameServer, direct_dialer
from v2py.app.router import DomainSet, IpSet
from v2py.config.routing import DnsConfig, GeoIpRef, GeoSiteRef, parse_doh_address

TIMEOUT_S = 5.0


@dataclass
class Seen:
    """One request as the server saw it."""

    alpn: str | None
    method: str
    path: str
    headers: list[tuple[str, str]]
    query: dns.message.Message
    connection: int


@dataclass
class DohServer:
    """A DoH server on 127.0.0.1 (``mode``: ok, garbage, status, silent, gzip, nxdomain,
    oneshot: HTTP/1.1 connections closed after one answer without saying so; redirect:
    307 to ``/redirected?from=PATH`` unless already there; redirect-loop: 308 always)."""

    records: dict[str, list[str]]
    ttl: int = 60
    mode: str = "ok"
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def answer(self, body: bytes, seen: Seen) -> tuple[int, bytes, list[tuple[str, str]]]:
        self.seen.append(seen)
        if self.mode == "redirect" and not seen.path.startswith("/redirected"):
            return 307, b"", [("location", "/redirected?from=" + seen.path.lstrip("/"))]
        if self.mode == "redirect-loop":
            return 308, b"", [("location", f"/loop{len(self.seen)}")]
        if self.mode == "status":
            return 503, b"busy", []
        if self.mode == "garbage":
            return 200, b"\x00\x01not dns", []
        reply = dns.message.make_response(seen.query)
        question = seen.query.question[0]
        name = question.name.to_text().rstrip(".")
        if self.mode == "nxdomain" or name not in self.records:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            family = 4 if question.rdtype == dns.rdatatype.A else 6
            found = [ip for ip in self.records[name] if (":" in ip) == (family == 6)]
            if found:
                kind = "A" if family == 4 else "AAAA"
                reply.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", kind, *found)
                )
        wire = reply.to_wire()
        if self.mode == "gzip":
            return 200, gzip.compress(wire), [("content-encoding", "gzip")]
        return 200, wire, []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        self.writers.append(writer)
        try:
            if alpn == "h2":
                await self._serve_h2(reader, writer, number)
            else:
                await self._serve_h1(reader, writer, number, alpn)
        except (OSError, h11.ProtocolError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve_h2(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        heads: dict[int, list[tuple[bytes, bytes]]] = {}
        bodies: dict[int, bytes] = {}
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    heads[event.stream_id] = list(event.headers)
                    bodies[event.stream_id] = b""
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    headers = [(k.decode(), v.decode()) for k, v in heads[sid]]
                    pseudo = dict(headers)
                    seen = Seen(
                        "h2",
                        pseudo[":method"],
                        pseudo[":path"],
                        headers,
                        dns.message.from_wire(bodies[sid]),
                        number,
                    )
                    if self.mode == "silent":
                        self.seen.append(seen)
                        continue
                    status, out, extra = self.answer(bodies[sid], seen)
                    response = [(":status", str(status)), ("content-length", str(len(out)))]
                    conn.send_headers(sid, response + extra)
                    conn.send_data(sid, out, end_stream=True)
            writer.write(conn.data_to_send())

    async def _serve_h1(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        alpn: str | None,
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            headers = [(k.decode(), v.decode()) for k, v in request.headers.raw_items()]
            seen = Seen(
                alpn,
                request.method.decode(),
                request.target.decode(),
                headers,
                dns.message.from_wire(body),
                number,
            )
            if self.mode == "silent":
                self.seen.append(seen)
                await reader.read()
                return
            status, out, extra = self.answer(body, seen)
            response_headers = [("Content-Length", str(len(out))), *extra]
            writer.write(conn.send(h11.Response(status_code=status, headers=response_headers)))
            writer.write(conn.send(h11.Data(data=out)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if self.mode == "oneshot":  # closes a kept-alive connection after one answer
                return
            conn.start_next_cycle()


@dataclass
class Pki:
    """The test CA (``ca_file``) and a leaf for 127.0.0.1 and doh.test."""

    ca_file: str
    cert_file: str
    key_file: str

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context


def make_pki(directory: Path, *names: str) -> Pki:
    ca = TestCA()
    ca_file = directory / "ca.pem"
    ca_file.write_text(ca.pair.cert_pem)
    cert, key = ca.issue(*(names or ("127.0.0.1", "doh.test"))).write(directory, "leaf")
    return Pki(str(ca_file), cert, key)


@contextlib.asynccontextmanager
async def doh_server(
    pki: Pki,
    records: dict[str, list[str]],
    *,
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
    ttl: int = 60,
    mode: str = "ok",
) -> AsyncIterator[DohServer]:
    server = DohServer(records, ttl=ttl, mode=mode)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    if alpn:
        context.set_alpn_protocols(list(alpn))

    def note_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        server.server_names.append(name)

    context.sni_callback = note_sni
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def local_server(
    pki: Pki, port: int, *, clock: Any = None, timeout: float = 2.0, path: str = "/dns-query"
) -> DohNameServer:
    address = parse_doh_address(f"https+local://127.0.0.1:{port}{path}")
    assert address is not None
    return DohNameServer(
        address,
        dial=direct_dialer,
        per_lookup=False,
        timeout=timeout,
        clock=clock,
        context=pki.client_context,
    )


class NoGeo:
    def domain_set(self, ref: GeoSiteRef, path: str) -> DomainSet:
        raise AssertionError("no geo lists here")

    def ip_set(self, ref: GeoIpRef, path: str) -> IpSet:
        raise AssertionError("no geo lists here")


def dns_client(servers: list[Any], **extra: Any) -> DnsClient:
    cfg = DnsConfig.model_validate({"servers": servers, **extra}, context={}).with_paths("dns")
    return build_dns_client(cfg, NoGeo())


# --------------------------------------------------------------------------


@pytest.mark.parametrize("alpn", [("h2", "http/1.1"), ("http/1.1",), ()])
async def test_local_doh_a_and_aaaa_over_h2_and_http11(pki: Pki, alpn: tuple[str, ...]) -> None:
    records = {"both.test": ["10.0.0.1", "2001:db8::1"]}
    async with doh_server(pki, records, alpn=alpn) as server:
        ns = local_server(pki, server.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                ips = await ns.query("both.test", ipv4=True, ipv6=True)
                # AAAA first, then A (4.34 findIPsForDomain)
                assert ips == (bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes([10, 0, 0, 1]))
                assert await ns.query("both.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 1]),)
        finally:
            await ns.aclose()
    expected_alpn = "h2" if "h2" in alpn else (alpn[0] if alpn else None)
    assert {s.alpn for s in server.seen} == {expected_alpn}
    assert [s.query.id for s in server.seen] and {s.query.id for s in server.seen} == {1, 2}
    first = server.seen[0]
    assert first.method == "POST" and first.path == "/dns-query"
    names = [k.lower() for k, _ in first.headers if not k.startswith(":")]
    assert names == (
        ["accept", "content-type", "content-length", "accept-encoding", "user-agent"]
        if expected_alpn == "h2"
        else ["host", "user-agent", "content-length", "accept", "content-type", "accept-encoding"]
    )
    values = {k.lower(): v for k, v in first.headers}
    assert values["accept"] == values["content-type"] == "application/dns-message"
    assert values["user-agent"] == (
        "Go-http-client/2.0" if expected_alpn == "h2" else "Go-http-client/1.1"
    )
    # the cached second lookup asked nothing; one connection for h2, reused for HTTP/1.1
    assert len(server.seen) == 2
    assert server.connections == 1 if expected_alpn == "h2" else server.connections <= 2


@pytest.mark.parametrize("alpn", [("h2",), ("http/1.1",)])
async def test_307_is_followed_with_the_same_post(pki: Pki, alpn: tuple[str, ...]) -> None:
    """Go's client re-posts the question to the Location, on the kept connection."""
    records = {"moved.test": ["10.0.0.7"]}
    async with doh_server(pki, records, alpn=alpn, mode="redirect") as server:
        ns = local_server(pki, server.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                got = await ns.query("moved.test", ipv4=True, ipv6=False)
        finally:
            await ns.aclose()
    assert got == (bytes([10, 0, 0, 7]),)
    assert [s.path for s in server.seen] == ["/dns-query", "/redirected?from=dns-query"]
    assert [s.method for s in server.seen] == ["POST", "POST"]
    assert server.seen[0].query.id == server.seen[1].query.id
    assert server.connections == 1


async def test_redirect_loop_stops_after_10_requests(pki: Pki) -> None:
    async with doh_server(pki, {}, mode="redirect-loop") as server:
        ns = local_server(pki, server.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                with pytest.raises(DnsLookupError, match="stopped after 10 redirects"):
                    await ns.query("loop.test", ipv4=True, ipv6=False)
        finally:
            await ns.aclose()
    assert len(server.seen) == 10


def test_redirect_targets_resolve_as_go_resolves_them() -> None:
    from v2py.app.dns.doh import DohError, redirect_address

    base = parse_doh_address("https://dns.test:8443/a/dns-query?x=1")
    assert base is not None
    moved = redirect_address(base, "/other")
    assert (moved.host, moved.port, moved.target, moved.local) == (
        "dns.test",
        8443,
        "/other",
        False,
    )
    moved = redirect_address(base, "next?y=2")
    assert moved.target == "/a/next?y=2"
    moved = redirect_address(base, "https://[::1]:9443/q#frag")
    assert (moved.host, moved.port, moved.authority, moved.target) == (
        "::1",
        9443,
        "[::1]:9443",
        "/q",
    )
    moved = redirect_address(base, "//elsewhere.test/p")
    assert (moved.host, moved.port) == ("elsewhere.test", 443)
    for bad in ("http://dns.test/q", "ftp://x/", "https://dns.test:99999/q"):
        with pytest.raises(DohError):
            redirect_address(base, bad)


async def test_connections_are_kept_and_reused(pki: Pki) -> None:
    async with doh_server(pki, {"a.test": ["10.0.0.1"], "b.test": ["10.0.0.2"]}) as server:
        ns = local_server(pki, server.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await ns.query("a.test", ipv4=True, ipv6=False)
                await ns.query("b.test", ipv4=True, ipv6=False)
        finally:
            await ns.aclose()
    assert server.connections == 1
    assert [s.connection for s in server.seen] == [1, 1]


async def test_kept_http11_connection_closed_by_the_server_is_replaced(pki: Pki) -> None:
    records = {"a.test": ["10.0.0.1"], "b.test": ["10.0.0.2"]}
    async with doh_server(pki, records, alpn=("http/1.1",), mode="oneshot") as server:
        ns = local_server(pki, server.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                assert await ns.query("a.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 1]),)
                assert await ns.query("b.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 2]),)
        finally:
            await ns.aclose()
    assert server.connections == 2


async def test_ttl_cache_with_injected_clock(pki: Pki) -> None:
    now = [1000.0]
    async with doh_server(pki, {"t.test": ["10.0.0.2"]}, ttl=30) as server:
        ns = local_server(pki, server.port, clock=lambda: now[0])
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await ns.query("t.test", ipv4=True, ipv6=False)
                now[0] += 29
                await ns.query("t.test", ipv4=True, ipv6=False)
                assert len(server.seen) == 1
                now[0] += 2
                await ns.query("t.test", ipv4=True, ipv6=False)
                assert len(server.seen) == 2
        finally:
            await ns.aclose()


async def test_gzip_answer_is_decoded(pki: Pki) -> None:
    async with doh_server(pki, {"z.test": ["10.0.0.9"]}, mode="gzip") as server:
        ns = local_server(pki, server.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                assert await ns.query("z.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 9]),)
        finally:
            await ns.aclose()


@pytest.mark.parametrize("mode", ["garbage", "status", "silent"])
async def test_failing_server_moves_to_the_next_server(pki: Pki, mode: str) -> None:
    async with (
        doh_server(pki, {"x.test": ["10.0.0.1"]}, mode=mode) as bad,
        doh_server(pki, {"x.test": ["10.0.0.2"]}) as good,
    ):
        first = local_server(pki, bad.port, timeout=0.3)
        second = local_server(pki, good.port)
        client = DnsClient(
            hosts=None, servers=[_Server(first, (), None), _Server(second, (), None)]
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                assert await client.lookup_ip("x.test", ipv6=False) == (bytes([10, 0, 0, 2]),)
        finally:
            await client.aclose()
    assert bad.seen  # it was asked first


async def test_nxdomain_ends_the_lookup(pki: Pki) -> None:
    async with (
        doh_server(pki, {}, mode="nxdomain") as first,
        doh_server(pki, {"n.test": ["10.0.0.2"]}) as second,
    ):
        client = DnsClient(
            hosts=None,
            servers=[
                _Server(local_server(pki, first.port), (), None),
                _Server(local_server(pki, second.port), (), None),
            ],
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                with pytest.raises(DnsLookupError) as caught:
                    await client.lookup_ip("n.test")
        finally:
            await client.aclose()
    assert not caught.value.retry_next
    assert not second.seen


async def test_unreachable_and_bad_certificate_fail_that_server(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "..", "127.0.0.1")  # a CA the client does not trust
    async with doh_server(other, {"c.test": ["10.0.0.1"]}) as untrusted:
        ns = local_server(pki, untrusted.port)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                with pytest.raises(DnsLookupError) as caught:
                    await ns.query("c.test", ipv4=True, ipv6=False)
        finally:
            await ns.aclose()
    assert caught.value.retry_next and "certificate" in str(caught.value).lower()
    assert not untrusted.seen
    ns = local_server(pki, untrusted.port)  # closed now
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(DnsLookupError) as caught:
            await ns.query("c.test", ipv4=True, ipv6=False)
    assert caught.value.retry_next
    await ns.aclose()


async def test_domains_and_expect_ips_through_doh(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    async with (
        doh_server(pki, {"x.cn.test": ["192.168.1.1"], "y.test": ["10.0.0.1"]}) as one,
        doh_server(pki, {"x.cn.test": ["10.0.0.5"], "y.test": ["10.0.0.6"]}) as two,
    ):
        client = dns_client(
            [
                f"https+local://127.0.0.1:{one.port}/dns-query",
                {
                    "address": f"https+local://127.0.0.1:{two.port}/q",
                    "domains": ["domain:cn.test"],
                    "expectIps": ["10.0.0.0/8"],
                },
            ]
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                # domains: the second server first; its answer passes expectIps
                assert await client.lookup_ip("x.cn.test", ipv6=False) == (bytes([10, 0, 0, 5]),)
                # no domain match: config order
                assert await client.lookup_ip("y.test", ipv6=False) == (bytes([10, 0, 0, 1]),)
        finally:
            await client.aclose()
    assert [s.path for s in two.seen] == ["/q"]
    assert {s.query.question[0].name.to_text() for s in one.seen} == {"y.test."}


async def test_expect_ips_mismatch_falls_through(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    async with (
        doh_server(pki, {"m.test": ["192.168.1.1"]}) as one,
        doh_server(pki, {"m.test": ["10.0.0.7"]}) as two,
    ):
        client = dns_client(
            [
                {"address": f"https+local://127.0.0.1:{one.port}/", "expectIps": ["10.0.0.0/8"]},
                f"https+local://127.0.0.1:{two.port}/",
            ],
            clientIp="1.2.3.4",
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                assert await client.lookup_ip("m.test", ipv6=False) == (bytes([10, 0, 0, 7]),)
        finally:
            await client.aclose()
    assert one.seen and two.seen
    option = two.seen[0].query.options[0]
    assert option.otype == 8 and str(option.address) == "1.2.3.0" and option.srclen == 24


def _socks_connect(name: str, port: int) -> bytes:
    raw = name.encode()
    return b"\x05\x01\x00\x03" + bytes([len(raw)]) + raw + port.to_bytes(2, "big")


async def fetch_through(socks_port: int, name: str, port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", socks_port)
    try:
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        writer.write(_socks_connect(name, port))
        head = await reader.readexactly(4)
        if head[1] != 0:
            return f"refused {head[1]}"
        await reader.readexactly({1: 4, 4: 16}.get(head[3], 0) + 2)
        writer.write(b"hi")
        await writer.drain()
        data = await reader.read(100)
        return data.decode() or "closed"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def sinks(*tags: str) -> AsyncIterator[dict[str, int]]:
    servers = []
    ports = {}
    for tag in tags:

        async def serve(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str = tag
        ) -> None:
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await reader.read(100)  # the client's bytes first: no reset on close
                writer.write(tag.encode())
                await writer.drain()
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        ports[tag] = server.sockets[0].getsockname()[1]
    try:
        yield ports
    finally:
        for server in servers:
            server.close()


def routed_config(
    socks_port: int, doh_url: str, sink_ports: dict[str, int], *, dns_route: str = "direct"
) -> dict[str, Any]:
    """IPIfNonMatch decides by the DoH answer: 10.1.0.0/16 -> "ten", else the default
    outbound "other"; the DoH connections (inbound tag ``dns-q``) go to ``dns_route``."""
    outbounds: list[dict[str, Any]] = [
        {"tag": tag, "protocol": "freedom", "settings": {"redirect": f"127.0.0.1:{port}"}}
        for tag, port in sorted(sink_ports.items())
    ]
    outbounds.append({"tag": "direct", "protocol": "freedom", "settings": {}})
    rules: list[dict[str, Any]] = [
        {"type": "field", "inboundTag": ["dns-q"], "outboundTag": dns_route},
        {"type": "field", "ip": ["10.1.0.0/16"], "outboundTag": "ten"},
    ]
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "tag": "in",
                "listen": "127.0.0.1",
                "port": socks_port,
                "protocol": "socks",
                "settings": {"auth": "noauth"},
            }
        ],
        "outbounds": outbounds,
        "routing": {"domainStrategy": "IPIfNonMatch", "rules": rules},
        "dns": {"tag": "dns-q", "servers": [doh_url]},
    }


@pytest.mark.parametrize("scheme", ["https", "https+local"])
async def test_routing_ip_if_non_match_through_doh(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    from tests.support.v2ray import free_port

    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    records = {"in-ten.test": ["10.1.2.3"], "elsewhere.test": ["192.0.2.1"]}
    async with (
        doh_server(pki, records) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        url = f"{scheme}://127.0.0.1:{server.port}/dns-query"
        async with run_v2py(routed_config(socks, url, ports)):
            async with asyncio.timeout(TIMEOUT_S * 2):
                assert await fetch_through(socks, "in-ten.test", 80) == "ten"
                assert await fetch_through(socks, "elsewhere.test", 80) == "other"
                assert await fetch_through(socks, "in-ten.test", 81) == "ten"
    # one connection per lookup when dispatched (4.34 closes it after the lookup),
    # one kept connection when dialled directly; the second in-ten.test was cached
    assert len(server.seen) == 4
    assert server.connections == (2 if scheme == "https" else 1)


async def test_dispatched_doh_is_routed_by_the_dns_tag(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule on the dns tag sends the DoH connection to an outbound: here one whose
    redirect reaches the DoH server although the URL names a closed port."""
    from tests.support.v2ray import free_port

    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    async with (
        doh_server(pki, {"in-ten.test": ["10.1.2.3"]}) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        closed = free_port()
        cfg = routed_config(
            socks, f"https://127.0.0.1:{closed}/dns-query", ports, dns_route="to-doh"
        )
        cfg["outbounds"].append(
            {
                "tag": "to-doh",
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{server.port}"},
            }
        )
        async with run_v2py(cfg):
            async with asyncio.timeout(TIMEOUT_S * 2):
                assert await fetch_through(socks, "in-ten.test", 80) == "ten"
    assert server.seen
    assert {v for k, v in server.seen[0].headers if k == ":authority"} == {f"127.0.0.1:{closed}"}


@contextlib.asynccontextmanager
async def socks_recorder() -> AsyncIterator[tuple[int, list[str]]]:
    """A SOCKS5 server that records each CONNECT's "host:port", then closes."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            greeting = await reader.readexactly(2)
            await reader.readexactly(greeting[1])
            writer.write(b"\x05\x00")
            head = await reader.readexactly(4)
            if head[3] == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                host = "ip"
                await reader.readexactly(4 if head[3] == 1 else 16)
            port = int.from_bytes(await reader.readexactly(2), "big")
            seen.append(f"{host}:{port}")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


@pytest.mark.parametrize("mux", [None, {"enabled": False}, {"enabled": False, "concurrency": -1}])
async def test_dispatched_doh_prefers_mux(mux: dict[str, Any] | None) -> None:
    """4.34 forces Mux on dispatched DoH: through an outbound with a ``mux`` object,
    even a disabled one, the connection is a Mux.Cool one (to v1.mux.cool); without one
    (or with concurrency below 0) it is a plain one. Other sessions ignore a disabled
    mux."""
    from tests.support.v2ray import free_port

    async with socks_recorder() as (recorder, seen), sinks("ten", "other") as ports:
        socks = free_port()
        cfg = routed_config(socks, "https://127.0.0.1:853/dns-query", ports, dns_route="up")
        upstream: dict[str, Any] = {
            "tag": "up",
            "protocol": "socks",
            "settings": {"servers": [{"address": "127.0.0.1", "port": recorder}]},
        }
        if mux is not None:
            upstream["mux"] = mux
        cfg["outbounds"].append(upstream)
        cfg["routing"]["rules"].insert(
            0, {"type": "field", "domain": ["full:plain.test"], "outboundTag": "up"}
        )
        async with run_v2py(cfg):
            async with asyncio.timeout(TIMEOUT_S * 2):
                # the lookup fails (the recorder closes), then the default outbound
                assert await fetch_through(socks, "in-ten.test", 80) == "other"
                await fetch_through(socks, "plain.test", 80)
    forced = mux is not None and mux.get("concurrency", 0) >= 0
    # one connection per query (A, AAAA); 9527 is 4.34's mux destination port
    assert seen[-1] == "plain.test:80"
    assert set(seen[:-1]) == {"v1.mux.cool:9527" if forced else "ip:853"}


async def test_doh_server_named_by_domain_does_not_loop(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DoH connection to ``doh.test`` matches no rule, so IPIfNonMatch would resolve
    it with the same DoH server; 4.34 routes it without resolving (SkipDNSResolve)."""
    from tests.support.v2ray import free_port

    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    async with (
        doh_server(pki, {"in-ten.test": ["10.1.2.3"]}) as server,
        sinks("ten") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"https://doh.test:{server.port}/dns-query", ports)
        del cfg["routing"]["rules"][0]  # no rule for the DNS tag
        cfg["outbounds"].insert(
            0,  # the default outbound reaches the DoH server
            {
                "tag": "to-doh",
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{server.port}"},
            },
        )
        async with run_v2py(cfg):
            async with asyncio.timeout(2.0):  # no 4 s lookup timeout on the way
                assert await fetch_through(socks, "in-ten.test", 80) == "ten"
    assert len(server.seen) == 2
    assert {v for k, v in server.seen[0].headers if k == ":authority"} == {
        f"doh.test:{server.port}"
    }
    assert set(server.server_names) == {"doh.test"}


@pytest.mark.parametrize(
    "address",
    ["https://", "https://h:abc/dns-query", "https+local://u:p@h/q", "https://h:0/"],
)
async def test_malformed_doh_url_is_one_line_exit_23(tmp_path: Path, address: str) -> None:
    from tests.shell.test_cli import _result_lines, _run

    cfg = tmp_path / "bad.json"
    servers = ["1.1.1.1", {"address": address}]
    outbounds = [{"protocol": "freedom"}]
    cfg.write_text(json.dumps({"dns": {"servers": servers}, "outbounds": outbounds}))
    code, out, err = await _run("test", "-c", str(cfg))
    lines = _result_lines(out)
    assert code == 23 and len(lines) == 1, (out, err)
    assert "dns.servers[1].address" in lines[0] and "DoH URL" in lines[0]


async def test_good_doh_urls_pass_the_config_test(tmp_path: Path) -> None:
    from tests.shell.test_cli import _run

    cfg = tmp_path / "good.json"
    cfg.write_text(
        '{"dns": {"servers": ["https://1.1.1.1/dns-query", '
        '{"address": "HTTPS+LOCAL://dns.test:8443/q?x=1", "port": 5353}]}, '
        '"outbounds": [{"protocol": "freedom"}]}'
    )
    code, out, err = await _run("test", "-c", str(cfg))
    assert code == 0, (out, err)


async def test_dns_connections_write_no_access_line(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """4.34 writes access lines for what inbounds accept (the message rides in the
    inbound's context); the DNS client's own dispatched connections have none."""
    import logging

    from tests.support.v2ray import free_port

    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    caplog.set_level(logging.INFO, logger="v2py.access")
    async with (
        doh_server(pki, {"in-ten.test": ["10.1.2.3"]}) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"https://127.0.0.1:{server.port}/dns-query", ports)
        async with run_v2py(cfg):
            async with asyncio.timeout(TIMEOUT_S * 2):
                assert await fetch_through(socks, "in-ten.test", 80) == "ten"
    assert server.seen
    lines = [r.getMessage() for r in caplog.records if r.name == "v2py.access"]
    assert len(lines) == 1, lines
    assert "tcp:in-ten.test:80 [ten]" in lines[0]
