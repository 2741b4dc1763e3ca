"""DNS over QUIC under v2ray 4.34 and under v2py: the same ``quic+local://`` config resolves
the same names to the same sinks, and the local DoQ server (tests/support/doq_server.py:
aioquic, QUIC v1, ALPN ``doq-i00``, a certificate from the test CA trusted through
``SSL_CERT_FILE``) sees the same handshakes and questions from both."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.interop.test_dns_doh_interop import side
from tests.shell.test_dns_doh import Pki, fetch_through, make_pki, routed_config, sinks
from tests.support.doq_server import DoqServer, doq_server
from tests.support.v2ray import free_port, require_v2ray

pytestmark = pytest.mark.interop

TIMEOUT_S = 10.0
#: A and AAAA for each of the three names of run_routing (the fourth lookup is cached).
ROUTING_QUESTIONS = 6
RECORDS = {
    "in-ten.test": ["10.1.2.3", "2001:db8::10"],
    "elsewhere.test": ["192.0.2.1"],
    "sink.test": ["127.0.0.1"],
    "again.test": ["127.0.0.1"],
}
#: What every handshake offered and negotiated: 4.34's ALPN list in its order, the URL's
#: host as SNI, ``doq-i00`` picked by the server, QUIC v1.
HELLO = (("http/1.1", "h2", "doq-i00"), "localhost", "doq-i00", 1)


def questions_seen(server: DoqServer) -> list[tuple[Any, ...]]:
    """Per question: the question, flags and EDNS (IDs are compared as a set)."""
    return sorted(
        (
            q.query.question[0].to_text(),
            q.query.flags,
            q.query.ednsflags,
            q.query.payload,
            tuple(o.to_text() for o in q.query.options),
        )
        for q in server.seen
    )


def hellos_seen(server: DoqServer) -> set[tuple[Any, ...]]:
    return {(h.offered_alpn, h.server_name, h.alpn, h.version) for h in server.hellos}


def use_ip_config(socks: int, sink: int, dns_url: str) -> dict[str, Any]:
    """A SOCKS inbound and a freedom outbound resolving with ``UseIPv4`` (A questions
    only); the destination port is the sink's."""
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": socks,
                "protocol": "socks",
                "settings": {"auth": "noauth"},
            }
        ],
        "outbounds": [{"protocol": "freedom", "settings": {"domainStrategy": "UseIPv4"}}],
        "dns": {"servers": [dns_url]},
    }


async def run_routing(
    kind: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], DoqServer]:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"quic+local://localhost:{server.port}", ports)
        cfg["dns"]["clientIp"] = "1.2.3.4"
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                got = [
                    await fetch_through(socks, name, 80)
                    for name in ("in-ten.test", "elsewhere.test", "nowhere.test", "in-ten.test")
                ]
                # An empty answer may end a lookup while the other family's question is
                # still on its way: let it arrive before the process stops.
                await server.wait_seen(ROUTING_QUESTIONS)
    return got, server


async def test_ip_if_non_match_by_doq_answer_same_as_4_34(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path, "localhost")
    got_v2ray, seen_v2ray = await run_routing("v2ray", pki, monkeypatch)
    got_v2py, seen_v2py = await run_routing("v2py", pki, monkeypatch)
    assert got_v2ray == ["ten", "other", "other", "ten"]
    assert got_v2py == got_v2ray
    assert questions_seen(seen_v2py) == questions_seen(seen_v2ray)
    # the repeated name came from the cache on both; IDs count from 1 per server
    assert len(seen_v2ray.seen) == len(seen_v2py.seen) == ROUTING_QUESTIONS
    assert {q.query.id for q in seen_v2py.seen} == {q.query.id for q in seen_v2ray.seen}
    assert {q.query.id for q in seen_v2py.seen} == set(range(1, ROUTING_QUESTIONS + 1))
    # a stream per question on a kept connection (4.34's first A and AAAA questions may
    # race into dialling two; v2py dials one)
    assert len({(q.connection, q.stream_id) for q in seen_v2ray.seen}) == ROUTING_QUESTIONS
    assert seen_v2py.connections == 1 and seen_v2ray.connections <= 2
    assert hellos_seen(seen_v2ray) == hellos_seen(seen_v2py) == {HELLO}


async def run_use_ip(
    kind: str, host: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, DoqServer]:
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS) as server,
        sinks("sink") as ports,
    ):
        socks = free_port()
        cfg = use_ip_config(socks, ports["sink"], f"quic+local://{host}:{server.port}")
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                got = await fetch_through(socks, "sink.test", ports["sink"])
    return got, server


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_freedom_use_ip_by_doq_answer_same_as_4_34(
    host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path, "localhost", "127.0.0.1")
    got_v2ray, seen_v2ray = await run_use_ip("v2ray", host, pki, monkeypatch)
    got_v2py, seen_v2py = await run_use_ip("v2py", host, pki, monkeypatch)
    assert got_v2ray == got_v2py == "sink"
    assert questions_seen(seen_v2py) == questions_seen(seen_v2ray)
    assert [q.query.question[0].rdtype for q in seen_v2py.seen] == [1]  # UseIPv4: A only
    assert [q.query.id for q in seen_v2py.seen] == [q.query.id for q in seen_v2ray.seen] == [1]
    # an IP is verified against the certificate's IP names and sent as no SNI
    sni = None if host == "127.0.0.1" else host
    assert hellos_seen(seen_v2ray) == hellos_seen(seen_v2py) == {(HELLO[0], sni, *HELLO[2:])}


async def run_reconnect(kind: str, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> DoqServer:
    """The server closes the connection after the first lookup: the next one dials anew."""
    async with (
        doq_server(pki.cert_file, pki.key_file, RECORDS) as server,
        sinks("sink") as ports,
    ):
        socks = free_port()
        cfg = use_ip_config(socks, ports["sink"], f"quic+local://localhost:{server.port}")
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                assert await fetch_through(socks, "sink.test", ports["sink"]) == "sink"
                server.close_connections()
                # The CONNECTION_CLOSE reaches the other process over loopback; nothing
                # there can be awaited, so give it a moment.
                await asyncio.sleep(0.3)
                assert await fetch_through(socks, "again.test", ports["sink"]) == "sink"
    return server


async def test_connection_closed_by_the_server_is_redialled_as_4_34(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path, "localhost")
    seen_v2ray = await run_reconnect("v2ray", pki, monkeypatch)
    seen_v2py = await run_reconnect("v2py", pki, monkeypatch)
    assert [q.connection for q in seen_v2ray.seen] == [q.connection for q in seen_v2py.seen]
    assert [q.connection for q in seen_v2py.seen] == [1, 2]
    assert questions_seen(seen_v2py) == questions_seen(seen_v2ray)


async def run_untrusted(kind: str, pki: Pki, other: Pki, monkeypatch: pytest.MonkeyPatch) -> str:
    """The first DoQ server's certificate is from an untrusted CA: the lookup goes on to
    the second server (4.34 after its 4 s query timeout)."""
    async with (
        doq_server(other.cert_file, other.key_file, RECORDS) as bad,
        doq_server(pki.cert_file, pki.key_file, {"in-ten.test": ["10.1.9.9"]}) as good,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"quic+local://localhost:{bad.port}", ports)
        cfg["dns"]["servers"].append(f"quic+local://localhost:{good.port}")
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                got = await fetch_through(socks, "in-ten.test", 80)
        assert not bad.seen and bad.hellos and good.seen
    return got


async def test_bad_certificate_fails_over_same_as_4_34(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path, "localhost")
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other", "localhost")
    assert await run_untrusted("v2ray", pki, other, monkeypatch) == "ten"
    assert await run_untrusted("v2py", pki, other, monkeypatch) == "ten"
