"""Interop: a name server given as a host name (``"servers": ["dns.test"]``) is classic
UDP DNS to that host, port 53, through the dispatcher (4.34 ``NewServer`` falls through to
``NewClassicNameServer``): a rule on ``dns.tag`` sends it to a freedom whose redirect
reaches a local DNS server, and IPIfNonMatch routes by its answer. Same config, same
observations on the real v2ray and on v2py."""

from __future__ import annotations

import asyncio

import pytest

from tests.app.test_dns import dns_server
from tests.shell.test_dns_doh import fetch_through, routed_config, sinks
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_name_server_given_as_a_host_name(kind: str) -> None:
    records = {"in-ten.test": ["10.1.2.3"], "elsewhere.test": ["192.0.2.1"]}
    async with dns_server(records) as server, sinks("ten", "other") as ports:
        socks = free_port()
        cfg = routed_config(socks, "dns.test", ports, dns_route="to-dns")
        cfg["outbounds"].append(
            {
                "tag": "to-dns",
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{server.port}"},
            }
        )
        async with run_side(kind, cfg, socks), asyncio.timeout(20):
            assert await fetch_through(socks, "in-ten.test", 80) == "ten"
            assert await fetch_through(socks, "elsewhere.test", 80) == "other"
    assert ("in-ten.test.", "A") in server.names()
