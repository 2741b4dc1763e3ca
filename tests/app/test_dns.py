"""The built-in DNS against tiny local DNS servers (dnspython messages over UDP)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from v2py.app.dispatcher import Dispatcher
from v2py.app.dns import DnsClient, DnsLookupError, build_dns_client
from v2py.app.dns.nameserver import DirectChannel, UdpNameServer
from v2py.app.policy import PolicyTable
from v2py.app.proxyman import OutboundManager
from v2py.app.router import DomainSet, IpSet
from v2py.app.routing import SessionRouter, build_routing
from v2py.app.session import Session
from v2py.common.net import tcp
from v2py.config.load import load_config
from v2py.config.routing import DnsConfig, GeoIpRef, GeoSiteRef
from v2py.proxy.freedom import DomainStrategy, FreedomOutbound

TIMEOUT_S = 5.0


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


class FakeDnsServer(asyncio.DatagramProtocol):
    """Answers A/AAAA from ``records`` (name -> list of IP texts), NXDOMAIN for
    names in ``nxdomain``, nothing for names in ``silent``. Keeps every query."""

    def __init__(self, records: dict[str, list[str]], ttl: int = 60) -> None:
        self.records = records
        self.ttl = ttl
        self.nxdomain: set[str] = set()
        self.silent: set[str] = set()
        self.queries: list[dns.message.Message] = []
        self.raw: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(query)
        self.raw.append(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        if name in self.silent:
            return
        reply = dns.message.make_response(query)
        if name in self.nxdomain:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            family = 4 if question.rdtype == dns.rdatatype.A else 6
            found = [
                a for a in self.records.get(name, []) if ipaddress.ip_address(a).version == family
            ]
            if found:
                kind = "A" if family == 4 else "AAAA"
                reply.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", kind, *found)
                )
        assert self.transport is not None
        # Records in the order given (dnspython shuffles them by default).
        self.transport.sendto(reply.to_wire(want_shuffle=False), addr)

    def names(self) -> list[tuple[str, str]]:
        return [
            (q.question[0].name.to_text(), dns.rdatatype.to_text(q.question[0].rdtype))
            for q in self.queries
        ]


@contextlib.asynccontextmanager
async def dns_server(records: dict[str, list[str]], ttl: int = 60) -> AsyncIterator[FakeDnsServer]:
    loop = asyncio.get_running_loop()
    server = FakeDnsServer(records, ttl)
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    try:
        yield server
    finally:
        transport.close()


class NoGeo:
    def domain_set(self, ref: GeoSiteRef, path: str) -> DomainSet:
        raise AssertionError("no geo lists here")

    def ip_set(self, ref: GeoIpRef, path: str) -> IpSet:
        raise AssertionError("no geo lists here")


def client(data: dict[str, Any], *, timeout: float | None = None) -> DnsClient:
    cfg = DnsConfig.model_validate(data, context={})
    built = build_dns_client(cfg, NoGeo())
    if timeout is not None:
        for server in built._servers:  # test knob: short per-server deadline
            if isinstance(server.server, UdpNameServer):
                server.server._timeout = timeout
    return built


async def test_udp_server_a_and_aaaa_and_cache() -> None:
    async with dns_server({"both.test": ["10.0.0.1", "2001:db8::1"]}) as server:
        resolver = client({"servers": [{"address": "127.0.0.1", "port": server.port}]})
        try:
            async with asyncio.timeout(TIMEOUT_S):
                got = await resolver.lookup_ip("both.test.")  # trailing dot dropped
                assert set(got) == {ip("10.0.0.1"), ip("2001:db8::1")}
                assert sorted(server.names()) == [("both.test.", "A"), ("both.test.", "AAAA")]
                assert await resolver.lookup_ip("both.test", ipv6=False) == (ip("10.0.0.1"),)
                assert len(server.queries) == 2  # answered from the cache
        finally:
            await resolver.aclose()


async def test_query_bytes_as_4_34_rd_and_no_edns_without_client_ip() -> None:
    async with dns_server({"a.test": ["10.0.0.1"]}) as server:
        resolver = client({"servers": [{"address": "127.0.0.1", "port": server.port}]})
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await resolver.lookup_ip("a.test", ipv6=False)
        finally:
            await resolver.aclose()
    raw = server.raw[0]
    assert raw[2:4] == b"\x01\x00"  # flags: RD only
    assert raw[4:12] == b"\x00\x01\x00\x00\x00\x00\x00\x00"  # 1 question, nothing else


async def test_client_ip_adds_4_34_client_subnet_option() -> None:
    async with dns_server({"a.test": ["10.0.0.1"]}) as server:
        resolver = client(
            {"clientIp": "1.2.3.4", "servers": [{"address": "127.0.0.1", "port": server.port}]}
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await resolver.lookup_ip("a.test", ipv6=False)
        finally:
            await resolver.aclose()
    # OPT: root name, type 41, class 1350, TTL e0008000 (SetEDNS0(1350, 0xfe00, true)),
    # option 8 (client subnet): family 1, /24, scope 0, 3 address bytes.
    assert server.raw[0].endswith(bytes.fromhex("0000290546e0008000000b0008000700011800010203"))


async def test_ttl_expiry_with_injected_clock() -> None:
    now = [0.0]
    async with dns_server({"t.test": ["10.0.0.2"]}, ttl=30) as server:
        ns = UdpNameServer("127.0.0.1", server.port, channel=DirectChannel, clock=lambda: now[0])
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await ns.query("t.test", ipv4=True, ipv6=False)
                now[0] = 29.0
                await ns.query("t.test", ipv4=True, ipv6=False)
                assert len(server.queries) == 1
                now[0] = 30.5
                await ns.query("t.test", ipv4=True, ipv6=False)
                assert len(server.queries) == 2
        finally:
            await ns.aclose()


async def test_timeout_and_expect_ips_try_the_next_server_other_errors_do_not() -> None:
    async with (
        dns_server({"x.test": ["10.0.0.1"]}) as first,
        dns_server({"x.test": ["192.168.0.1"], "y.test": ["10.0.0.9"]}) as second,
    ):
        first.silent.add("slow.test")
        second.records["slow.test"] = ["10.1.1.1"]
        resolver = client(
            {
                "servers": [
                    {"address": "127.0.0.1", "port": first.port, "expectIps": ["192.168.0.0/16"]},
                    {"address": "127.0.0.1", "port": second.port},
                ]
            },
            timeout=0.3,
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                # expectIps mismatch at the first server: the second answers.
                assert await resolver.lookup_ip("x.test", ipv6=False) == (ip("192.168.0.1"),)
                # Timeout at the first server: the second answers.
                assert await resolver.lookup_ip("slow.test", ipv6=False) == (ip("10.1.1.1"),)
                # NXDOMAIN ends the lookup (4.34 tries the next server only after
                # timeouts and expectIPs mismatches).
                first.nxdomain.add("gone.test")
                second.records["gone.test"] = ["10.2.2.2"]
                with pytest.raises(DnsLookupError):
                    await resolver.lookup_ip("gone.test", ipv6=False)
                assert ("gone.test.", "A") not in second.names()
        finally:
            await resolver.aclose()


async def test_servers_with_matching_domains_are_asked_first() -> None:
    async with (
        dns_server({"a.cn.test": ["10.0.0.1"], "full.test": ["10.0.0.3"]}) as one,
        dns_server({"a.cn.test": ["10.0.0.2"], "full.test": ["10.0.0.4"]}) as two,
    ):
        resolver = client(
            {
                "servers": [
                    {"address": "127.0.0.1", "port": one.port, "domains": ["domain:test"]},
                    {
                        "address": "127.0.0.1",
                        "port": two.port,
                        "domains": ["domain:cn.test", "full:full.test"],
                    },
                ]
            }
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                # The longer suffix (cn.test) beats test; a full name beats any suffix.
                assert await resolver.lookup_ip("a.cn.test", ipv6=False) == (ip("10.0.0.2"),)
                assert await resolver.lookup_ip("full.test", ipv6=False) == (ip("10.0.0.4"),)
                assert not one.queries
        finally:
            await resolver.aclose()


async def test_hosts_answers_replacements_and_families() -> None:
    async with dns_server({"real.test": ["10.5.5.5"]}) as server:
        resolver = client(
            {
                "servers": [{"address": "127.0.0.1", "port": server.port}],
                "hosts": {
                    "plain.test": "10.0.0.1",
                    "domain:sub.test": "2001:db8::7",
                    "keyword:kw": "10.0.0.2",
                    "regexp:^re[0-9]$": "10.0.0.3",
                    "alias.test": "real.test",
                    "chain.test": "alias.test",
                    "loop.test": "127.0.0.1",
                },
            }
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                assert await resolver.lookup_ip("plain.test") == (ip("10.0.0.1"),)
                assert await resolver.lookup_ip("x.sub.test") == (ip("2001:db8::7"),)
                with pytest.raises(DnsLookupError, match="empty"):
                    await resolver.lookup_ip("x.sub.test", ipv6=False)
                assert await resolver.lookup_ip("akwb.test") == (ip("10.0.0.2"),)
                assert await resolver.lookup_ip("re5") == (ip("10.0.0.3"),)
                assert await resolver.lookup_ip("loop.test") == (ip("127.0.0.1"), ip("::1"))
                # A plain hosts key is exact: x.plain.test goes to the server.
                with pytest.raises(DnsLookupError):
                    await resolver.lookup_ip("x.plain.test", ipv6=False)
                assert await resolver.lookup_ip("chain.test", ipv6=False) == (ip("10.5.5.5"),)
                assert ("real.test.", "A") in server.names()
        finally:
            await resolver.aclose()


async def test_localhost_server_is_the_system_resolver() -> None:
    resolver = client({"servers": ["localhost"]})
    async with asyncio.timeout(TIMEOUT_S):
        got = await resolver.lookup_ip("localhost", ipv6=False)
    assert ip("127.0.0.1") in got
    system = DnsClient.system()
    async with asyncio.timeout(TIMEOUT_S):
        assert ip("127.0.0.1") in await system.lookup_ip("localhost", ipv6=False)


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_dns_queries_are_dispatched_and_routed_by_the_dns_tag() -> None:
    """4.34 sends classic DNS through the dispatcher: a rule on the dns tag can steer it.
    Here the query for 9.9.9.9 is redirected by the routed freedom to the local server."""
    async with dns_server({"routed.test": ["10.7.7.7"]}) as server:
        text = json.dumps(
            {
                "outbounds": [
                    {"tag": "direct", "protocol": "freedom"},
                    {
                        "tag": "to-fake-dns",
                        "protocol": "freedom",
                        "settings": {"redirect": f"127.0.0.1:{server.port}"},
                    },
                ],
                "dns": {"tag": "dns-q", "servers": ["9.9.9.9"]},
                "routing": {
                    "domainStrategy": "IPOnDemand",
                    "rules": [
                        {"type": "field", "inboundTag": ["dns-q"], "outboundTag": "to-fake-dns"},
                        {"type": "field", "ip": ["10.7.0.0/16"], "outboundTag": "direct"},
                    ],
                },
            }
        )
        config = load_config([("t.json", text)], {}).config
        from v2py.instance import Instance

        instance = Instance(config, env={})
        try:
            router = instance.dispatcher.router
            assert isinstance(router, SessionRouter)
            session = Session(
                inbound_tag="in", source=("127.0.0.1", 5), destination=tcp("routed.test", 80)
            )
            async with asyncio.timeout(TIMEOUT_S):
                assert await router.pick_route(session) == "direct"
            assert ("routed.test.", "A") in server.names()
        finally:
            await instance.close()


async def test_freedom_use_ip_asks_the_built_in_dns() -> None:
    echo, port = await _echo_server()
    try:
        resolver = client({"hosts": {"svc.test": "127.0.0.1"}})
        freedom = FreedomOutbound(
            tag="f",
            domain_strategy=DomainStrategy.USE_IPV4,
            policy=PolicyTable(),
            resolver=resolver,
        )

        class Pipe:
            def __init__(self) -> None:
                self.sent = [b"ping", b""]
                self.got = b""
                self.peer = None
                self.local = None

            async def read(self, n: int = 0) -> bytes:
                return self.sent.pop(0) if self.sent else b""

            def write(self, data: bytes) -> None:
                self.got += bytes(data)

            async def drain(self) -> None: ...

            def write_eof(self) -> None: ...

            def close(self) -> None: ...

            async def wait_closed(self) -> None: ...

        pipe = Pipe()
        session = Session(inbound_tag="in", source=None, destination=tcp("svc.test", port))
        async with asyncio.timeout(TIMEOUT_S):
            await freedom.handle(session, pipe)  # type: ignore[arg-type]
        assert pipe.got == b"ping"
        assert await freedom._resolve("svc.test", port, 1) == "127.0.0.1"
        nowhere = client({"hosts": {"svc.test": "2001:db8::1"}})
        freedom4 = FreedomOutbound(
            tag="f", domain_strategy=DomainStrategy.USE_IPV4, policy=PolicyTable(), resolver=nowhere
        )
        # Nothing for IPv4: the domain is dialled as is (4.34).
        assert await freedom4._resolve("svc.test", port, 1) == "svc.test"
    finally:
        echo.close()


async def test_routing_build_without_dns_uses_the_system_resolver() -> None:
    cfg = load_config(
        [
            (
                "t.json",
                json.dumps(
                    {"routing": {"rules": [{"type": "field", "port": 1, "outboundTag": "x"}]}}
                ),
            )
        ],
        {},
    ).config
    routing = build_routing(cfg, NoGeo(), lambda: None)
    assert routing.dns is None
    hook = routing.session_router(OutboundManager())
    assert hook is not None and hook.dns.hosts is None
    dispatcher = Dispatcher(OutboundManager(), router=hook)
    assert dispatcher.router is hook
