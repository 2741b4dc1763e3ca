"""5,000 concurrent bulk connections through socks → vmess (AEAD, aes-128-gcm) → vmess →
freedom → an echo server: every connection completes, every byte comes back as sent, and
neither v2py process keeps a descriptor once the connections are gone.

The v2py sides run as their own ``v2py run`` processes, not in-process: with 5,000
connections one process would hold six descriptors per connection (30,000) and the whole
chain would share one core.  Each process here holds two per connection.

Connections are set up a bounded number at a time (so no listen backlog on the way
overflows), each proven end to end by a one-byte echo; then all of them send their
pattern at once and read it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.many import Plan, check_many, raise_fd_limit
from tests.support.servers import TcpEchoServer, run_v2py_process
from tests.support.v2ray import free_ports

PLAN = Plan(connections=5000)
#: descriptors this process holds per connection (its socks end and the echo server's end)
#: and besides them (pytest, the loop, listeners)
FDS_PER_CONNECTION = 2
FDS_SPARE = 256


@pytest.fixture
def fd_limit() -> Iterator[None]:
    """This process's soft open-files limit raised for the test, restored afterwards."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FDS_PER_CONNECTION * PLAN.connections + FDS_SPARE
    raise_fd_limit(need, f"{PLAN.connections} connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)  # type: ignore[misc]


@contextlib.asynccontextmanager
async def _v2py_chain() -> AsyncIterator[tuple[int, dict[str, int | str]]]:
    socks_port, vmess_port = free_ports(2)
    user = str(uuid.uuid4())
    server_cfg = vmess_server_config(vmess_port, user, 0)
    client_cfg = vmess_client_config(socks_port, vmess_port, user, 0, "aes-128-gcm")
    async with (
        run_v2py_process(server_cfg, wait_tcp=vmess_port) as server,
        run_v2py_process(client_cfg, wait_tcp=socks_port) as client,
    ):
        yield socks_port, {"client": client.pid, "server": server.pid, "test": "self"}


async def test_5000_concurrent_bulk_connections(fd_limit: None) -> None:
    async with asyncio.timeout(150), TcpEchoServer() as echo, _v2py_chain() as (socks, pids):
        await check_many(socks, echo, pids, PLAN)
