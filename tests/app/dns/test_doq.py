"""DNS over QUIC (``quic+local://``) against a local aioquic DoQ server (tests/support/
doq_server.py, certificate from the test CA for ``localhost`` and 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.shell.test_dns_doh import Pki, dns_client, make_pki
from tests.support.doq_server import DOQ_ALPN, DoqServer, doq_server
from v2py.app.dns import DnsClient, DnsLookupError, _Server
from v2py.app.dns.doq import ALPN, DoqNameServer
from v2py.config.routing import parse_doh_address, parse_doq_address

TIMEOUT_S = 5.0
V4 = bytes([10, 0, 0, 1])
V6 = bytes.fromhex("20010db8" + "00" * 11 + "01")
RECORDS = {"both.test": ["10.0.0.1", "2001:db8::1"], "a.test": ["10.0.0.2"], "b.test": ["10.0.0.3"]}
#: What 4.34 sent on its DoQ stream for ``in-ten.test`` A, question id 1, ``clientIp``
#: 1.2.3.4 (captured from the binary by tests/support/doq_server.py): the bare message.
GO_DOQ_QUERY_A = bytes.fromhex(
    "00010100000100000000000106696e2d74656e047465737400000100010000290546e0008000000b"
    "0008000700011800010203"
)


# --------------------------------------------------------------------------
# URLs and messages (no network)


@pytest.mark.parametrize(
    ("url", "host", "port", "name"),
    [
        ("quic+local://dns.test", "dns.test", 784, "quic+local://dns.test"),
        ("QUIC+LOCAL://dns.test:853", "dns.test", 853, "quic+local://dns.test:853"),
        ("quic+local://[::1]:784", "::1", 784, "quic+local://[::1]:784"),
        ("quic+local://1.1.1.1/ignored?x#y", "1.1.1.1", 784, "quic+local://1.1.1.1/ignored?x#y"),
        ("quic+local://h/a b", "h", 784, "quic+local://h/a b"),
    ],
)
def test_doq_urls(url: str, host: str, port: int, name: str) -> None:
    address = parse_doq_address(url)
    assert address is not None
    assert (address.host, address.port, address.name) == (host, port, name)
    assert parse_doh_address(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "quic+local://",
        "quic+local://:784",
        "quic+local://h:",
        "quic+local://h:abc",
        "quic+local://h:0",
        "quic+local://h:70000",
        "quic+local://u:p@h",
        "quic+local://a,b",
        "quic+local://[::1",
        "quic+local://[zz]:784",
        "quic+local://h/%zz",
        "quic+local://h/#%g0",
        "quic+local://h/\x01",
    ],
)
def test_malformed_doq_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_doq_address(url)


@pytest.mark.parametrize("text", ["quic://h", "quic+local:h", "https+local://h", "1.1.1.1"])
def test_not_doq(text: str) -> None:
    assert parse_doq_address(text) is None


def test_question_bytes_as_4_34() -> None:
    address = parse_doq_address("quic+local://127.0.0.1")
    assert address is not None
    ns = DoqNameServer(address, client_ip="1.2.3.4")
    assert ns._question("in-ten.test.", 1, ns._next_id()) == GO_DOQ_QUERY_A
    assert ns._next_id() == 2
    assert ALPN == ("http/1.1", "h2", "doq-i00")


def test_a_config_without_doq_does_not_import_aioquic() -> None:
    code = (
        "import sys\n"
        "from v2py.app.dns import build_dns_client\n"
        "from v2py.config.routing import DnsConfig\n"
        "cfg = DnsConfig.model_validate({'servers': ['1.1.1.1', 'https+local://h/q']},"
        " context={})\n"
        "build_dns_client(cfg, None)\n"
        "assert 'aioquic' not in sys.modules, 'aioquic imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------
# against a local DoQ server


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, "localhost", "127.0.0.1")


def name_server(
    pki: Pki,
    port: int,
    *,
    host: str = "localhost",
    timeout: float = 2.0,
    clock: Callable[[], float] | None = None,
) -> DoqNameServer:
    address = parse_doq_address(f"quic+local://{host}:{port}")
    assert address is not None
    return DoqNameServer(address, timeout=timeout, clock=clock, cafile=pki.ca_file)


@contextlib.asynccontextmanager
async def closing(ns: DoqNameServer) -> AsyncIterator[DoqNameServer]:
    try:
        async with asyncio.timeout(TIMEOUT_S):
            yield ns
    finally:
        await ns.aclose()


async def test_resolves_a_and_aaaa_over_one_connection(pki: Pki) -> None:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS) as server,
        closing(name_server(pki, server.port)) as ns,
    ):
        # AAAA first, then A (4.34 findIPsForDomain)
        assert await ns.query("both.test", ipv4=True, ipv6=True) == (V6, V4)
        assert await ns.query("both.test", ipv4=True, ipv6=False) == (V4,)  # cached
        assert await ns.query("a.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 2]),)
        assert await ns.query("b.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 3]),)
    assert server.connections == ns.connections == 1
    assert [q.connection for q in server.seen] == [1, 1, 1, 1]
    assert sorted(q.query.id for q in server.seen) == [1, 2, 3, 4]
    assert len({q.stream_id for q in server.seen}) == 4  # a stream per question
    for question in server.seen:  # the bare message: no 2-byte length prefix
        assert int.from_bytes(question.raw[:2], "big") == question.query.id
    (hello,) = server.hellos
    assert hello.offered_alpn == ("http/1.1", "h2", "doq-i00")
    assert hello.alpn == DOQ_ALPN and hello.server_name == "localhost" and hello.version == 1


async def test_ip_host_sends_no_sni(pki: Pki) -> None:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS) as server,
        closing(name_server(pki, server.port, host="127.0.0.1")) as ns,
    ):
        assert await ns.query("a.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 2]),)
    assert [h.server_name for h in server.hellos] == [None]


async def test_ttl_cache_with_injected_clock(pki: Pki) -> None:
    now = [1000.0]
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS, ttl=30) as server,
        closing(name_server(pki, server.port, clock=lambda: now[0])) as ns,
    ):
        await ns.query("a.test", ipv4=True, ipv6=False)
        now[0] += 29
        await ns.query("a.test", ipv4=True, ipv6=False)
        assert len(server.seen) == 1
        now[0] += 2
        await ns.query("a.test", ipv4=True, ipv6=False)
        assert len(server.seen) == 2
    assert server.connections == 1


async def test_connection_closed_by_the_server_is_replaced(pki: Pki) -> None:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS) as server,
        closing(name_server(pki, server.port)) as ns,
    ):
        assert await ns.query("a.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 2]),)
        conn = ns._conn
        assert conn is not None
        server.close_connections()
        await conn.ended.wait()  # the client has seen CONNECTION_CLOSE
        assert await ns.query("b.test", ipv4=True, ipv6=False) == (bytes([10, 0, 0, 3]),)
    assert server.connections == ns.connections == 2
    assert [q.connection for q in server.seen] == [1, 2]


@pytest.mark.parametrize("mode", ["nofin", "split"])
async def test_answer_without_fin_or_in_pieces(pki: Pki, mode: str) -> None:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS, mode=mode) as server,
        closing(name_server(pki, server.port)) as ns,
    ):
        assert await ns.query("both.test", ipv4=True, ipv6=True) == (V6, V4)


async def test_server_that_never_answers_fails_within_the_deadline(pki: Pki) -> None:
    loop = asyncio.get_running_loop()
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS, mode="silent") as server,
        closing(name_server(pki, server.port, timeout=0.3)) as ns,
    ):
        start = loop.time()
        with pytest.raises(DnsLookupError) as caught:
            await ns.query("a.test", ipv4=True, ipv6=True)
        elapsed = loop.time() - start
    assert caught.value.retry_next and "timeout" in str(caught.value)
    assert 0.3 <= elapsed < 1.5
    assert len(server.seen) == 2  # both questions arrived


async def test_silent_udp_port_fails_within_the_deadline(pki: Pki) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:  # takes datagrams, says nothing
        hole.bind(("127.0.0.1", 0))
        async with closing(name_server(pki, hole.getsockname()[1], timeout=0.3)) as ns:
            start = loop.time()
            with pytest.raises(DnsLookupError) as caught:
                await ns.query("a.test", ipv4=True, ipv6=False)
            elapsed = loop.time() - start
    assert caught.value.retry_next
    assert 0.3 <= elapsed < 1.5


async def test_untrusted_certificate_fails_that_server_at_once(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other", "localhost")  # a CA the client does not trust
    async with (
        doq_server(other.cert_file, other.key_file, RECORDS) as server,
        closing(name_server(pki, server.port, timeout=4.0)) as ns,
    ):
        # well under the 4 s lookup deadline: the failure is not waited out
        async with asyncio.timeout(2.0):
            with pytest.raises(DnsLookupError) as caught:
                await ns.query("a.test", ipv4=True, ipv6=False)
    assert caught.value.retry_next and "certificate" in str(caught.value).lower()
    assert not server.seen
    assert len(server.hellos) == 2  # tried once more, as 4.34


async def test_domains_expect_ips_and_client_ip_through_doq(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)  # the system roots, as for 4.34
    async with (
        doq_server(
            pki.cert_file, pki.key_file, {"x.cn.test": ["192.168.1.1"], "y.test": ["10.0.0.1"]}
        ) as one,
        doq_server(
            pki.cert_file, pki.key_file, {"x.cn.test": ["10.0.0.5"], "y.test": ["10.0.0.6"]}
        ) as two,
    ):
        client = dns_client(
            [
                f"quic+local://localhost:{one.port}",
                {
                    "address": f"quic+local://localhost:{two.port}",
                    "domains": ["domain:cn.test"],
                    "expectIps": ["10.0.0.0/8"],
                    "clientIp": "1.2.3.4",
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
    assert [q.query.question[0].name.to_text() for q in two.seen] == ["x.cn.test."]
    option = two.seen[0].query.options[0]
    assert option.otype == 8 and str(option.address) == "1.2.3.0" and option.srclen == 24
    assert {q.query.question[0].name.to_text() for q in one.seen} == {"y.test."}
    assert not one.seen[0].query.options  # no clientIp on that server


async def test_failing_server_moves_to_the_next_server(pki: Pki) -> None:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS, mode="silent") as bad,
        doq_server(pki.cert_file, pki.key_file, {"x.test": ["10.0.0.9"]}) as good,
    ):
        client = DnsClient(
            hosts=None,
            servers=[
                _Server(name_server(pki, bad.port, timeout=0.3), (), None),
                _Server(name_server(pki, good.port), (), None),
            ],
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                assert await client.lookup_ip("x.test", ipv6=False) == (bytes([10, 0, 0, 9]),)
        finally:
            await client.aclose()
    assert bad.seen and good.seen


def _served(server: DoqServer) -> list[str]:
    return sorted(q.query.question[0].to_text() for q in server.seen)


async def test_v2py_run_resolves_through_doq(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.shell.test_dns_doh import fetch_through, routed_config, sinks
    from tests.support.v2py import run_v2py
    from tests.support.v2ray import free_port

    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    records = {"in-ten.test": ["10.1.2.3"], "elsewhere.test": ["192.0.2.1"]}
    async with (
        doq_server(pki.cert_file, pki.key_file, records) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"quic+local://localhost:{server.port}", ports)
        async with run_v2py(cfg):
            async with asyncio.timeout(TIMEOUT_S):
                assert await fetch_through(socks, "in-ten.test", 80) == "ten"
                assert await fetch_through(socks, "elsewhere.test", 80) == "other"
    assert _served(server) == [
        "elsewhere.test. IN A",
        "elsewhere.test. IN AAAA",
        "in-ten.test. IN A",
        "in-ten.test. IN AAAA",
    ]
    assert server.connections == 1


@pytest.mark.parametrize(
    "address", ["quic+local://", "quic+local://h:abc", "quic+local://u:p@h", "quic+local://h:0"]
)
async def test_malformed_doq_url_is_one_line_exit_23(tmp_path: Path, address: str) -> None:
    from tests.shell.test_cli import _result_lines, _run

    cfg = tmp_path / "bad.json"
    servers = ["1.1.1.1", {"address": address}]
    cfg.write_text(
        json.dumps({"dns": {"servers": servers}, "outbounds": [{"protocol": "freedom"}]})
    )
    code, out, err = await _run("test", "-c", str(cfg))
    lines = _result_lines(out)
    assert code == 23 and len(lines) == 1, (out, err)
    assert "dns.servers[1].address" in lines[0] and "DoQ URL" in lines[0]


async def test_good_doq_urls_pass_the_config_test(tmp_path: Path) -> None:
    from tests.shell.test_cli import _run

    cfg = tmp_path / "good.json"
    servers = ["quic+local://dns.test", {"address": "QUIC+LOCAL://[::1]:853", "port": 53}]
    cfg.write_text(
        json.dumps({"dns": {"servers": servers}, "outbounds": [{"protocol": "freedom"}]})
    )
    code, out, err = await _run("test", "-c", str(cfg))
    assert code == 0, (out, err)
