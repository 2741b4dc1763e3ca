"""The API across workers (``app/commander/fanout.py``) in one process: three "workers"
(stats managers behind peer servers on Unix sockets), calls fanned out from the first."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from v2py.app.commander.fanout import PeerServer, fan_out, peer_socket
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import stats_command_pb2 as spb
from v2py.app.commander.server import ServiceSpec
from v2py.app.commander.services import ApiError, StatsServiceImpl
from v2py.app.stats import StatsManager

SERVICE = "app.stats.command.StatsService"


def stats_spec(manager: StatsManager) -> ServiceSpec:
    st = StatsServiceImpl(manager)
    return ServiceSpec(
        SERVICE,
        {
            "GetStats": (st.GetStats, spb.GetStatsRequest, spb.GetStatsResponse),
            "QueryStats": (st.QueryStats, spb.QueryStatsRequest, spb.QueryStatsResponse),
            "GetSysStats": (st.GetSysStats, spb.SysStatsRequest, spb.SysStatsResponse),
        },
    )


@contextlib.asynccontextmanager
async def workers(tmp_path: Path, counts: list[dict[str, int]]) -> AsyncIterator[dict[str, Any]]:
    """Worker 0's fanned-out methods; workers 1.. serve their managers on peer sockets."""
    specs = []
    for values in counts:
        manager = StatsManager()
        for name, value in values.items():
            manager.get_or_register(name).add(value)
        specs.append(stats_spec(manager))
    peers = [PeerServer(peer_socket(str(tmp_path), i), [spec]) for i, spec in enumerate(specs)]
    for peer in peers[1:]:
        await peer.start()
    siblings = [peer_socket(str(tmp_path), i) for i in range(1, len(specs))]
    fanned = fan_out([specs[0]], siblings)[0]
    try:
        yield {method: fn for method, (fn, _, _) in fanned.methods.items()}
    finally:
        for peer in peers[1:]:
            await peer.close()


async def test_counters_are_summed_and_reset_exactly(tmp_path: Path) -> None:
    async with workers(tmp_path, [{"a>>>x": 1, "b": 5}, {"a>>>x": 10}, {"a>>>y": 100}]) as m:
        async with asyncio.timeout(10):
            got = await m["GetStats"](spb.GetStatsRequest(name="a>>>x"))
            assert got.stat.value == 11
            got = await m["GetStats"](spb.GetStatsRequest(name="a>>>y"))  # not here, there
            assert got.stat.value == 100
            with pytest.raises(ApiError, match="nope not found."):
                await m["GetStats"](spb.GetStatsRequest(name="nope"))
            found = await m["QueryStats"](spb.QueryStatsRequest(pattern="a>>>", reset=True))
            assert sorted((s.name, s.value) for s in found.stat) == [("a>>>x", 11), ("a>>>y", 100)]
            found = await m["QueryStats"](spb.QueryStatsRequest(pattern="", reset=False))
            assert sorted((s.name, s.value) for s in found.stat) == [
                ("a>>>x", 0),
                ("a>>>y", 0),
                ("b", 5),
            ]
            sys_stats = await m["GetSysStats"](spb.SysStatsRequest())
            assert sys_stats.NumGoroutine >= 3  # three "workers" each count their tasks


async def test_a_sibling_that_never_answers_is_an_error(tmp_path: Path) -> None:
    async with workers(tmp_path, [{"c": 1}]) as m:
        fanned = fan_out([stats_spec(StatsManager())], [str(tmp_path / "missing.sock")])[0]
        get = fanned.methods["GetStats"][0]
        import v2py.app.commander.fanout as fanout

        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(fanout, "PEER_TIMEOUT_S", 0.3)
            with pytest.raises(ApiError, match="did not answer"):
                await get(spb.GetStatsRequest(name="c"))
        assert (await m["GetStats"](spb.GetStatsRequest(name="c"))).stat.value == 1


async def test_garbage_on_a_peer_socket_leaves_it_serving(tmp_path: Path) -> None:
    async with workers(tmp_path, [{"d": 2}, {"d": 3}]) as m:
        for junk in (b"", b"\x00\x00\x00\x05ab", b"\xff\xff\xff\xff", b"\x00\x00\x00\x03a\0b"):
            reader, writer = await asyncio.open_unix_connection(peer_socket(str(tmp_path), 1))
            writer.write(junk)
            writer.write_eof()
            async with asyncio.timeout(5):
                await reader.read()
            writer.close()
        assert (await m["GetStats"](spb.GetStatsRequest(name="d"))).stat.value == 5


HANDLER = "app.proxyman.command.HandlerService"


def recording_spec(applied: list[str], rng: random.Random) -> ServiceSpec:
    """A HandlerService whose RemoveInbound records the tag, after a random pause (so
    that changes racing through different workers would interleave)."""

    async def remove(request: hpb.RemoveInboundRequest) -> hpb.RemoveInboundResponse:
        await asyncio.sleep(rng.random() * 0.003)
        applied.append(request.tag)
        return hpb.RemoveInboundResponse()

    return ServiceSpec(
        HANDLER,
        {"RemoveInbound": (remove, hpb.RemoveInboundRequest, hpb.RemoveInboundResponse)},
    )


async def test_changes_through_any_worker_apply_in_one_order_everywhere(tmp_path: Path) -> None:
    rng = random.Random(7)
    count = 3
    applied: list[list[str]] = [[] for _ in range(count)]
    paths = [peer_socket(str(tmp_path), i) for i in range(count)]
    entry = []
    peers = []
    for i in range(count):
        local = [recording_spec(applied[i], rng)]
        siblings = [p for j, p in enumerate(paths) if j != i]
        fanned = fan_out(local, siblings, first=None if i == 0 else paths[0])
        entry.append(fanned[0].methods["RemoveInbound"][0])
        peers.append(PeerServer(paths[i], local, ordering=fanned if i == 0 else ()))
    for peer in peers:
        await peer.start()
    try:
        async with asyncio.timeout(20):
            tags = [f"t{n}" for n in range(30)]
            await asyncio.gather(
                *(entry[n % count](hpb.RemoveInboundRequest(tag=tag)) for n, tag in enumerate(tags))
            )
    finally:
        for peer in peers:
            await peer.close()
    assert sorted(applied[0]) == sorted(tags)
    assert applied[1] == applied[0]
    assert applied[2] == applied[0]


async def test_an_error_of_an_ordered_change_reaches_the_caller(tmp_path: Path) -> None:
    async def refuse(request: hpb.RemoveInboundRequest) -> hpb.RemoveInboundResponse:
        raise ApiError(f"handler not found: {request.tag}")

    spec = ServiceSpec(
        HANDLER,
        {"RemoveInbound": (refuse, hpb.RemoveInboundRequest, hpb.RemoveInboundResponse)},
    )
    paths = [peer_socket(str(tmp_path), i) for i in range(2)]
    first = fan_out([spec], [paths[1]])
    second = fan_out([spec], [paths[0]], first=paths[0])
    peers = [PeerServer(paths[0], [spec], ordering=first), PeerServer(paths[1], [spec])]
    for peer in peers:
        await peer.start()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(ApiError, match="handler not found: gone"):
                await second[0].methods["RemoveInbound"][0](hpb.RemoveInboundRequest(tag="gone"))
    finally:
        for peer in peers:
            await peer.close()
