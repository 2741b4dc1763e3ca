"""Dynamic port end to end, v2py client ↔ v2py server, with the user's seed configs.

The configs are ``tests/vectors/configs/dynamic-port-{tcp,kcp}-{server,client}.json``
(the user's document, unchanged) with only ports replaced, ``1.2.3.4`` →
``127.0.0.1`` and ``"listen": "127.0.0.1"`` added so nothing listens beyond
loopback. Traffic: socks → vmess client → (main | dynamic port) → vmess server →
freedom → echo. Rotation is driven by an injected clock here; the single
real-time rotation test is in ``tests/interop/test_dynamic_port_interop.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.fakes import FakeClock
from tests.support.ports import free_dual_ports, free_port_range
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from v2py.app.dynamic import DynamicInbound
from v2py.config.load import load_config
from v2py.instance import Instance

SEED_DIR = Path(__file__).resolve().parent.parent / "vectors" / "configs"
SEED_MAIN_PORT = 37192
SEED_SOCKS_PORT = 1080
SEED_RANGE = "10000-20000"
SEED_REFRESH_S = 3 * 60.0  # the seed's "refresh": 3
DYNAMIC_TAG = "dynamicPort"
WAIT_S = 20.0
#: Bound on the mKCP close handshake (terminate phases 4 s / 8 s, mkcp.md).
KCP_CLOSE_WAIT_S = 20.0
PAYLOAD = random.Random(11).randbytes(64 * 1024)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"seed config changed: expected one {old!r}"
    return text.replace(old, new)


def seed_server(
    network: str,
    main_port: int,
    first: int,
    last: int,
    log: dict[str, Any] | None = None,
    *,
    default_alter_id: int | None = None,
) -> str:
    """The seed's server config text with test ports (and an optional ``log`` object).

    ``default_alter_id`` replaces the seed's ``default.alterId`` (0 makes clients use
    an AEAD header on the dynamic ports, docs/spec/README.md item 19).
    """
    text = (SEED_DIR / f"dynamic-port-{network}-server.json").read_text(encoding="utf-8")
    if default_alter_id is not None:
        text, count = re.subn(
            r'("default":\s*\{[^}]*"alterId":\s*)\d+', rf"\g<1>{default_alter_id}", text
        )
        assert count == 1, "seed config changed: expected one default.alterId"
    text = _replace_once(
        text, f'"port": {SEED_MAIN_PORT}', f'"listen": "127.0.0.1", "port": {main_port}'
    )
    text = _replace_once(
        text, f'"port": "{SEED_RANGE}"', f'"listen": "127.0.0.1", "port": "{first}-{last}"'
    )
    return _with_log(text, log)


def seed_client(
    network: str, socks_port: int, main_port: int, log: dict[str, Any] | None = None
) -> str:
    """The seed's client config text pointed at 127.0.0.1:``main_port``."""
    text = (SEED_DIR / f"dynamic-port-{network}-client.json").read_text(encoding="utf-8")
    text = _replace_once(
        text, f'"port": {SEED_SOCKS_PORT}', f'"listen": "127.0.0.1", "port": {socks_port}'
    )
    text = _replace_once(text, '"1.2.3.4"', '"127.0.0.1"')
    text = _replace_once(text, f'"port": {SEED_MAIN_PORT}', f'"port": {main_port}')
    return _with_log(text, log)


def _with_log(text: str, log: dict[str, Any] | None) -> str:
    if log is None:
        return text
    start = text.index("{")
    return text[: start + 1] + f'"log": {json.dumps(log)},' + text[start + 1 :]


def dynamic_handler(instance: Instance) -> DynamicInbound:
    (handler,) = [h for h in instance.inbounds if isinstance(h, DynamicInbound)]
    assert handler.tag == DYNAMIC_TAG
    return handler


async def echo_through(socks_port: int, echo: tuple[str, int], payload: bytes = PAYLOAD) -> None:
    """One proxied connection carrying ``payload`` to the echo server and back, checked."""
    async with asyncio.timeout(WAIT_S):
        reader, writer = await socks5_connect(socks_port, *echo)
        try:
            writer.write(payload)
            await writer.drain()
            back = await reader.readexactly(len(payload))
        finally:
            writer.close()
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()


def _udp_sockets_to(ports: set[int]) -> int:
    """How many UDP sockets of this process are connected to one of ``ports`` (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) in ports:
                    count += 1
    return count


async def wait_kcp_dialers_closed(ports: set[int]) -> None:
    """Wait until the mKCP client sockets towards ``ports`` have finished their close.

    The instance cannot abort its outbound mKCP sessions on close yet, so leaving
    earlier would leak their UDP sockets into the next test as ResourceWarnings.
    """
    async with asyncio.timeout(KCP_CLOSE_WAIT_S):
        while _udp_sockets_to(ports):
            await asyncio.sleep(0.1)  # observing the mKCP close handshake, not driving it


def accepted_total(handler: DynamicInbound) -> int:
    return sum(handler.statistics().accepted_by_port.values())


@contextlib.asynccontextmanager
async def instance_with_clock(text: str, clock: FakeClock) -> AsyncIterator[Instance]:
    """Start the server config in-process with the dynamic inbound on ``clock``."""
    loaded = load_config([("server.json", text)], {})
    instance = Instance.from_config(loaded.config, env={})
    dynamic_handler(instance).clock = clock
    await instance.start()
    try:
        yield instance
    finally:
        async with asyncio.timeout(WAIT_S):
            await instance.close()


async def _round_robin_scenario(network: str, echo_server: tuple[str, int]) -> None:
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(8)
    async with (
        run_v2py(seed_server(network, main_port, first, last)) as server,
        run_v2py(seed_client(network, socks_port, main_port)),
    ):
        dyn = dynamic_handler(server)
        gen0 = set(dyn.current_ports)
        assert len(gen0) == 2  # the seed's concurrency
        assert all(first <= p <= last for p in gen0)
        totals = []
        for _ in range(6):
            await echo_through(socks_port, echo_server)
            totals.append(accepted_total(dyn))
        # Spec 5.2: main, main, D1, D2, main, D1 — seen from the server side.
        assert totals == [0, 0, 1, 2, 2, 3]
        accepted = dyn.statistics().accepted_by_port
        assert set(accepted) <= gen0
        if network == "kcp":
            await wait_kcp_dialers_closed(set(range(first, last + 1)) | {main_port})


async def test_seed_tcp_v2py_to_v2py(echo_server: tuple[str, int]) -> None:
    await _round_robin_scenario("tcp", echo_server)


async def test_seed_kcp_v2py_to_v2py(echo_server: tuple[str, int]) -> None:
    await _round_robin_scenario("kcp", echo_server)


async def test_rotation_end_to_end_with_injected_clock(echo_server: tuple[str, int]) -> None:
    """Server generations rotate on a fake clock while a real client keeps proxying.

    After gen 0 closes, the client's stale gen-0 entries are refused and it falls
    through to the next server entry (spec 5.4), so every request still succeeds.
    """
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(40)
    clock = FakeClock()
    client_text = seed_client("tcp", socks_port, main_port)
    async with instance_with_clock(seed_server("tcp", main_port, first, last), clock) as server:
        dyn = dynamic_handler(server)
        gen0 = set(dyn.current_ports)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(run_v2py(client_text))
            for _ in range(4):  # main, main, D1, D2 (both gen 0)
                await echo_through(socks_port, echo_server)
            assert set(dyn.statistics().accepted_by_port) <= gen0

            await clock.advance(SEED_REFRESH_S)  # gen 1 opens, gen 0 still listens
            gen1 = set(dyn.current_ports)
            assert gen1.isdisjoint(gen0)
            assert dyn.listening_ports == gen0 | gen1
            for _ in range(4):  # main (detour into gen 1), D1, D2, D3
                await echo_through(socks_port, echo_server)
            accepted = dyn.statistics().accepted_by_port
            assert set(accepted) & gen1, "the client never used a gen-1 port"

            await clock.advance(SEED_REFRESH_S)  # gen 0 closes, gen 2 opens
            gen2 = set(dyn.current_ports)
            assert dyn.listening_ports == gen1 | gen2
            before = dict(dyn.statistics().accepted_by_port)
            if gen0 & gen2:
                # A reused port now belongs to another instance with other users, so
                # the stale entry would fail auth (spec 5.4): use a fresh client.
                await stack.aclose()
                await stack.enter_async_context(run_v2py(client_text))
            for _ in range(6):
                await echo_through(socks_port, echo_server)
        after = dyn.statistics().accepted_by_port
        grown = {p for p in after if after[p] > before.get(p, 0)}
        assert grown, "no connection reached a dynamic port after the rotation"
        assert grown <= gen1 | gen2
        assert not grown & (gen0 - gen2)


def legacy_layout_server(main_port: int, first: int, last: int) -> str:
    """The seed's server in V2Ray's older layout: ``port`` + ``inbound`` + ``inboundDetour``.

    This is the layout the user's document names ("在 inboundDetour 开动态监听的端口").
    """
    return f"""{{
      "port": {main_port},
      "inbound": {{
        "listen": "127.0.0.1",
        "protocol": "vmess",
        "settings": {{
          "clients": [{{"id": "d17a1af7-efa5-42ca-b7e9-6a35282d737f", "alterId": 64}}],
          "detour": {{"to": "dynamicPort"}} // 绕行配置
        }}
      }},
      "inboundDetour": [{{
        "protocol": "vmess",
        "listen": "127.0.0.1",
        "port": "{first}-{last}", // 端口范围
        "tag": "dynamicPort",
        "settings": {{"default": {{"alterId": 64}}}},
        "allocate": {{"strategy": "random", "concurrency": 2, "refresh": 3}}
      }}],
      "outbound": {{"protocol": "freedom", "settings": {{}}}}
    }}"""


async def test_legacy_inbound_detour_layout(echo_server: tuple[str, int]) -> None:
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(8)
    async with (
        run_v2py(legacy_layout_server(main_port, first, last)) as server,
        run_v2py(seed_client("tcp", socks_port, main_port)),
    ):
        dyn = dynamic_handler(server)
        totals = []
        for _ in range(4):
            await echo_through(socks_port, echo_server)
            totals.append(accepted_total(dyn))
        assert totals == [0, 0, 1, 2]  # main, main, then the two detour entries
        assert set(dyn.statistics().accepted_by_port) <= set(dyn.current_ports)
