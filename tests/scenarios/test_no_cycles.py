"""A finished connection leaves no reference cycle behind (issue 16: per-connection cost).

Before, every relayed connection left ~70 objects in reference cycles (each relay pump
and idle timer held a bound method of itself, and through it the streams, the VMess
state and the task), so the cycle collector ran every ~10 connections and spent tens of
microseconds per connection. Here a socks -> VMess (AEAD) -> VMess -> freedom chain runs
in this process with the collector off; afterwards a collection must find nothing that
v2py or asyncio allocated for the connections.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import uuid

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.ports import free_port_range
from v2py.config.load import load_config
from v2py.instance import Instance

CONNECTIONS = 30
STEP_TIMEOUT_S = 10.0


async def _one(socks_port: int, echo_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", socks_port)
    try:
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + echo_port.to_bytes(2, "big"))
        assert (await reader.readexactly(10))[1] == 0
        writer.write(b"x" * 64)
        assert await reader.readexactly(64) == b"x" * 64
    finally:
        writer.close()
        await writer.wait_closed()


def _garbage_by_type() -> collections.Counter[str]:
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return found


async def test_relayed_connections_leave_no_cycles(echo_server: tuple[str, int]) -> None:
    first, _ = free_port_range(2)
    socks_port, vmess_port = first, first + 1
    uid = str(uuid.UUID(int=16))
    instances = []
    for config in (
        vmess_server_config(vmess_port, uid, 0),
        vmess_client_config(socks_port, vmess_port, uid, 0, "aes-128-gcm"),
    ):
        loaded = load_config([("c.json", json.dumps(config))], {})
        instance = Instance.from_config(loaded.config)
        await instance.start()
        instances.append(instance)
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await _one(socks_port, echo_server[1])  # warm: lazy imports, first caches
            await asyncio.sleep(0.05)
        gc.collect()
        gc.disable()
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                for _ in range(CONNECTIONS):
                    await _one(socks_port, echo_server[1])
                await asyncio.sleep(0.05)  # the proxies' handlers finish their teardown
            found = _garbage_by_type()
        finally:
            gc.enable()
    finally:
        for instance in instances:
            await instance.close()
    ours = {k: n for k, n in found.items() if k.startswith(("v2py.", "_asyncio.", "uvloop."))}
    assert not ours, f"reference cycles left by {CONNECTIONS} connections: {ours}"
