"""DNS over HTTPS under v2ray 4.34 and under v2py: the same DoH config resolves the same
names to the same sinks, and the DoH server sees the same requests (a local DoH server
with the test CA, trusted through ``SSL_CERT_FILE``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.shell.test_dns_doh import (
    DohServer,
    Pki,
    doh_server,
    fetch_through,
    make_pki,
    routed_config,
    sinks,
)
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port, require_v2ray, run_v2ray

pytestmark = pytest.mark.interop

TIMEOUT_S = 10.0
#: A and AAAA for each of the three names of run_routing (the fourth lookup is cached).
ROUTING_REQUESTS = 6
#: What 4.34 logs when remote DoH over HTTP/1.1 loses a request: the dispatched connection
#: a finished request dialled is torn down with that request's context, and a second
#: request that was handed the same kept-alive connection fails ("io: read/write on closed
#: pipe") without being sent. Caught in CI under load; that run of 4.34 is repeated.
LOST_REQUEST = "failed to retrieve response"
ATTEMPTS = 4
RECORDS = {
    "in-ten.test": ["10.1.2.3", "2001:db8::10"],
    "elsewhere.test": ["192.0.2.1"],
    "sink.test": ["127.0.0.1"],
}


@contextlib.asynccontextmanager
async def side(
    kind: str, cfg: dict[str, Any], port: int, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[], str]]:
    """Runs one side; yields a function giving what 4.34 has logged so far ("" for v2py)."""
    if kind == "v2ray":
        async with run_v2ray(cfg, wait_tcp=[port], env={"SSL_CERT_FILE": pki.ca_file}) as v2ray:
            yield v2ray.log
    else:
        monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
        async with run_v2py(cfg):
            yield lambda: ""


def requests_seen(server: DohServer) -> list[tuple[Any, ...]]:
    """What is comparable across implementations: per request the HTTP version,
    method, path, header names, values and order (the authority without its port), and the DNS
    question, flags and EDNS options (IDs are compared as a set)."""
    out = []
    for seen in server.seen:
        headers = [(k.lower(), v.replace(f":{server.port}", ":PORT")) for k, v in seen.headers]
        if seen.alpn == "h2":
            # Go's HTTP/2 client writes the request's own headers (accept, content-type,
            # and a redirect's referer) in map order, which varies; the rest is fixed.
            own_names = ("accept", "content-type", "referer")
            own = sorted(h for h in headers if h[0] in own_names)
            at = min(i for i, h in enumerate(headers) if h[0] in own_names)
            rest = [h for h in headers if h[0] not in own_names]
            headers = rest[:at] + own + rest[at:]
        query = seen.query
        out.append(
            (
                seen.alpn,
                seen.method,
                seen.path,
                tuple(headers),
                query.question[0].to_text(),
                query.flags,
                query.ednsflags,
                query.payload,
                tuple(o.to_text() for o in query.options),
            )
        )
    return sorted(out)


async def run_routing(
    kind: str, scheme: str, pki: Pki, alpn: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], DohServer]:
    for _ in range(ATTEMPTS - 1):
        result = await run_routing_once(kind, scheme, pki, alpn, monkeypatch)
        if result is not None:
            return result
    result = await run_routing_once(kind, scheme, pki, alpn, monkeypatch)
    assert result is not None, f"4.34 lost a DoH request in each of {ATTEMPTS} runs"
    return result


async def run_routing_once(
    kind: str, scheme: str, pki: Pki, alpn: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], DohServer] | None:
    """One run of one side; None when 4.34 logged a lost request (see LOST_REQUEST)."""
    async with (
        doh_server(pki, RECORDS, alpn=alpn) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"{scheme}://127.0.0.1:{server.port}/dns-query", ports)
        cfg["dns"]["clientIp"] = "1.2.3.4"
        async with side(kind, cfg, socks, pki, monkeypatch) as log:
            async with asyncio.timeout(TIMEOUT_S):
                got = [
                    await fetch_through(socks, name, 80)
                    for name in ("in-ten.test", "elsewhere.test", "nowhere.test", "in-ten.test")
                ]
                # An empty A answer for nowhere.test may end the lookup while its AAAA
                # request (a connection of its own) is still on its way: let it arrive
                # before the process stops (4.34 under load was caught here).
                while len(server.seen) < ROUTING_REQUESTS:
                    if LOST_REQUEST in log():
                        return None
                    await asyncio.sleep(0.05)
            if LOST_REQUEST in log():
                return None
    return got, server


@pytest.mark.parametrize("alpn", [("h2", "http/1.1"), ("http/1.1",)], ids=["h2", "http1"])
@pytest.mark.parametrize("scheme", ["https", "https+local"])
async def test_ip_if_non_match_by_doh_answer_same_as_4_34(
    scheme: str, alpn: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path)
    got_v2ray, seen_v2ray = await run_routing("v2ray", scheme, pki, alpn, monkeypatch)
    got_v2py, seen_v2py = await run_routing("v2py", scheme, pki, alpn, monkeypatch)
    assert got_v2ray == ["ten", "other", "other", "ten"]
    assert got_v2py == got_v2ray
    assert requests_seen(seen_v2py) == requests_seen(seen_v2ray)
    # the repeated name came from the cache on both; IDs count from 1 per server
    assert len(seen_v2ray.seen) == len(seen_v2py.seen) == ROUTING_REQUESTS
    assert {s.query.id for s in seen_v2py.seen} == {s.query.id for s in seen_v2ray.seen}
    assert set(seen_v2ray.server_names) == set(seen_v2py.server_names) == {None}  # IP: no SNI


def use_ip_config(socks: int, doh_url: str) -> dict[str, Any]:
    """A socks inbound, freedom with UseIPv4, the built-in DNS asking ``doh_url``."""
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {"listen": "127.0.0.1", "port": socks, "protocol": "socks",
             "settings": {"auth": "noauth"}}
        ],
        "outbounds": [{"protocol": "freedom", "settings": {"domainStrategy": "UseIPv4"}}],
        "dns": {"servers": [doh_url]},
    }  # fmt: skip


async def run_use_ip(
    kind: str, scheme: str, pki: Pki, monkeypatch: pytest.MonkeyPatch, mode: str = "ok"
) -> tuple[str, DohServer]:
    async with (
        doh_server(pki, RECORDS, mode=mode) as server,
        sinks("sink") as ports,
    ):
        socks = free_port()
        cfg = use_ip_config(socks, f"{scheme}://127.0.0.1:{server.port}/dns-query")
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                got = await fetch_through(socks, "sink.test", ports["sink"])
    return got, server


@pytest.mark.parametrize("scheme", ["https", "https+local"])
async def test_freedom_use_ip_by_doh_answer_same_as_4_34(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path)
    got_v2ray, seen_v2ray = await run_use_ip("v2ray", scheme, pki, monkeypatch)
    got_v2py, seen_v2py = await run_use_ip("v2py", scheme, pki, monkeypatch)
    assert got_v2ray == got_v2py == "sink"
    assert requests_seen(seen_v2py) == requests_seen(seen_v2ray)
    assert [s.query.question[0].rdtype for s in seen_v2py.seen] == [1]  # UseIPv4: A only


@pytest.mark.parametrize("scheme", ["https", "https+local"])
async def test_redirects_followed_as_4_34(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 307 is followed with the same POST; a chain of 308s stops after 10 requests."""
    require_v2ray()
    pki = make_pki(tmp_path)
    got_v2ray, seen_v2ray = await run_use_ip("v2ray", scheme, pki, monkeypatch, "redirect")
    got_v2py, seen_v2py = await run_use_ip("v2py", scheme, pki, monkeypatch, "redirect")
    assert got_v2ray == got_v2py == "sink"
    assert requests_seen(seen_v2py) == requests_seen(seen_v2ray)
    assert [s.path for s in seen_v2py.seen] == ["/dns-query", "/redirected?from=dns-query"]
    paths = {}
    for kind in ("v2ray", "v2py"):
        paths[kind] = await run_redirect_loop(kind, scheme, pki, monkeypatch)
    # 10 requests in a chain, then "stopped after 10 redirects"; a new lookup (freedom
    # resolves again for each dial attempt, as 4.34) starts over at the configured URL.
    assert paths["v2py"][:10] == paths["v2ray"][:10]
    assert paths["v2ray"][:2] == ["/dns-query", "/loop1"]
    for kind, seen in paths.items():
        assert all(p == "/dns-query" for p in seen[10::10]), (kind, seen)


async def run_redirect_loop(
    kind: str, scheme: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The paths a DoH server that always redirects saw from one side's first lookup
    (and from any that followed within the wait): 4.34 waits out its 4 s query timeout
    before its next lookup, so only the first ten are waited for."""
    async with (
        doh_server(pki, RECORDS, mode="redirect-loop") as server,
        sinks("sink") as ports,
    ):
        socks = free_port()
        cfg = use_ip_config(socks, f"{scheme}://127.0.0.1:{server.port}/dns-query")
        async with side(kind, cfg, socks, pki, monkeypatch):
            fetch = asyncio.create_task(fetch_through(socks, "sink.test", ports["sink"]))
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    while len(server.seen) < 10:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
            finally:
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await fetch
        return [s.path for s in server.seen]


async def run_untrusted(kind: str, pki: Pki, other: Pki, monkeypatch: pytest.MonkeyPatch) -> str:
    """The first DoH server's certificate is from an untrusted CA: the lookup goes on to
    the second server (4.34 after its 4 s query timeout)."""
    async with (
        doh_server(other, RECORDS) as bad,
        doh_server(pki, {"in-ten.test": ["10.1.9.9"]}) as good,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"https+local://127.0.0.1:{bad.port}/q", ports)
        cfg["dns"]["servers"].append(f"https+local://127.0.0.1:{good.port}/q")
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                got = await fetch_through(socks, "in-ten.test", 80)
        assert not bad.seen and good.seen
    return got


async def test_bad_certificate_fails_over_same_as_4_34(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other", "127.0.0.1")
    assert await run_untrusted("v2ray", pki, other, monkeypatch) == "ten"
    assert await run_untrusted("v2py", pki, other, monkeypatch) == "ten"


async def run_named(kind: str, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> DohServer:
    """``https://doh.test:PORT``: the dispatched DoH connection matches no rule, so
    IPIfNonMatch would need doh.test's IPs; 4.34 routes it without resolving
    (SkipDNSResolve) to the default outbound, here a redirect to the DoH server."""
    async with (
        doh_server(pki, RECORDS) as server,
        sinks("ten") as ports,
    ):
        socks = free_port()
        cfg = routed_config(socks, f"https://doh.test:{server.port}/dns-query", ports)
        del cfg["routing"]["rules"][0]  # no rule for the DNS tag
        cfg["outbounds"].insert(
            0,
            {
                "tag": "to-doh",
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{server.port}"},
            },
        )
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(3.0):  # well under the 4 s lookup timeout
                assert await fetch_through(socks, "in-ten.test", 80) == "ten"
    return server


async def test_doh_server_named_by_domain_same_as_4_34(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path)
    seen_v2ray = await run_named("v2ray", pki, monkeypatch)
    seen_v2py = await run_named("v2py", pki, monkeypatch)
    assert set(seen_v2ray.server_names) == set(seen_v2py.server_names) == {"doh.test"}
    assert requests_seen(seen_v2py) == requests_seen(seen_v2ray)


async def run_protocol_rule(kind: str, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> str:
    """4.34 marks the dispatched DoH connection with protocol ``https``, so a rule on
    protocol ``http`` (a prefix match) catches it: here it alone reaches the server."""
    async with (
        doh_server(pki, RECORDS) as server,
        sinks("ten", "other") as ports,
    ):
        socks = free_port()
        closed = free_port()
        cfg = routed_config(socks, f"https://127.0.0.1:{closed}/dns-query", ports)
        cfg["routing"]["rules"][0] = {"type": "field", "protocol": ["http"], "outboundTag": "doh"}
        cfg["outbounds"].append(
            {
                "tag": "doh",
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{server.port}"},
            }
        )
        async with side(kind, cfg, socks, pki, monkeypatch):
            async with asyncio.timeout(TIMEOUT_S):
                return await fetch_through(socks, "in-ten.test", 80)


async def test_dispatched_doh_has_protocol_https_as_4_34(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_v2ray()
    pki = make_pki(tmp_path)
    assert await run_protocol_rule("v2ray", pki, monkeypatch) == "ten"
    assert await run_protocol_rule("v2py", pki, monkeypatch) == "ten"
