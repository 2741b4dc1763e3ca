"""Dynamic port against the real V2Ray 4.34 binary, with the user's seed configs.

* Scenario A: v2ray client (seed client config) → ``v2py run -c`` (seed server config).
  The evidence comes from v2py's own logs: which dynamic port accepted each
  connection (debug log) and the access log's inbound tag.
* Scenario B: v2py client (seed client config) → v2ray server (seed server config),
  seen from v2ray's side: its logs, its access log and the sockets it owns.
* Both for TCP and for the seed's mKCP variant.
* The suite's single real-time rotation test (``slow``): refresh 1, concurrency 2,
  a range of 6 ports; v2ray client → v2py server.

Seed configs are changed only in ports, ``1.2.3.4`` → ``127.0.0.1``, ``listen``
127.0.0.1 and (for evidence) a ``log`` object; the rotation test also sets refresh 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.scenarios.test_dynamic_port import (
    DYNAMIC_TAG,
    dynamic_handler,
    echo_through,
    seed_client,
    seed_server,
    wait_kcp_dialers_closed,
)
from tests.support.ports import free_dual_ports, free_port_range
from tests.support.v2py import run_v2py
from tests.support.v2ray import require_v2ray, run_v2ray
from tests.support.workers import established_local_ports

pytestmark = pytest.mark.interop

CONNECTIONS = 6
#: Main-port connections among the first six (spec 5.2: main, main, D1, D2, main, D1).
MAIN_CONNECTIONS = 3
START_TIMEOUT_S = 20.0
#: Time for a UDP-only (mKCP) v2ray listener to come up after the process starts.
KCP_SETTLE_S = 1.0
#: (network, default.alterId of the dynamic inbound): the seed's 64 gives legacy
#: headers on dynamic ports; 0 gives AEAD headers with a legacy CFB body (spec 5.3).
VARIANTS = [
    pytest.param("tcp", None, id="tcp-seed"),
    pytest.param("kcp", None, id="kcp-seed"),
    pytest.param("tcp", 0, id="tcp-default-alterid-0"),
]


# -- helpers ----------------------------------------------------------------------------


class V2pyProcess:
    """A ``v2py run -c FILE`` subprocess with its stderr log and access log."""

    def __init__(self, proc: asyncio.subprocess.Process, err: Path, access: Path) -> None:
        self.proc = proc
        self.err_path = err
        self.access_path = access

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")

    def access(self) -> str:
        return self.access_path.read_text(errors="replace") if self.access_path.exists() else ""


@contextlib.asynccontextmanager
async def run_v2py_cli(
    network: str,
    main_port: int,
    first: int,
    last: int,
    *,
    default_alter_id: int | None = None,
) -> AsyncIterator[V2pyProcess]:
    """Run the seed server config through the real command line."""
    workdir = Path(tempfile.mkdtemp(prefix="v2py-dyn-"))
    access = workdir / "access.log"
    text = seed_server(
        network,
        main_port,
        first,
        last,
        log={"loglevel": "debug", "access": str(access)},
        default_alter_id=default_alter_id,
    )
    cfg = workdir / "server.json"
    cfg.write_text(text, encoding="utf-8")
    err = workdir / "stderr.log"
    with err.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "v2py", "run", "-c", str(cfg),
            stdout=err_file, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    handle = V2pyProcess(proc, err, access)
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while "started" not in handle.log():
                if proc.returncode is not None:
                    raise RuntimeError(f"v2py exited early: {handle.log()}")
                await asyncio.sleep(0.05)  # polling a log file, not a protocol timer
        yield handle
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def run_v2ray_client(network: str, socks_port: int, main_port: int) -> AsyncIterator[None]:
    text = seed_client(network, socks_port, main_port, log={"loglevel": "info"})
    async with run_v2ray(text, wait_tcp=[socks_port]):
        yield


def v2py_generation_ports(log: str, number: int) -> set[int]:
    match = re.search(
        rf"inbound {DYNAMIC_TAG}: generation {number} listening on \w+ 127\.0\.0\.1 "
        r"ports ([\d, ]+)",
        log,
    )
    assert match, f"no allocation log for generation {number}:\n{log}"
    return {int(p) for p in match.group(1).split(",")}


def v2py_accepted_ports(log: str) -> list[int]:
    return [
        int(p)
        for p in re.findall(rf"inbound {DYNAMIC_TAG}: accepted \S+ on dynamic port (\d+)", log)
    ]


# -- Scenario A: real v2ray client -> v2py server ---------------------------------------


@pytest.mark.parametrize(("network", "default_alter_id"), VARIANTS)
async def test_a_v2ray_client_to_v2py_server(
    network: str, default_alter_id: int | None, echo_server: tuple[str, int]
) -> None:
    require_v2ray()
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(8)
    async with run_v2py_cli(
        network, main_port, first, last, default_alter_id=default_alter_id
    ) as server:
        gen0 = v2py_generation_ports(server.log(), 0)
        assert len(gen0) == 2 and all(first <= p <= last for p in gen0)
        async with run_v2ray_client(network, socks_port, main_port):
            for _ in range(CONNECTIONS):
                await echo_through(socks_port, echo_server)
        log, access = server.log(), server.access()
    accepted = v2py_accepted_ports(log)
    # After the first (main-port) connection, later ones arrive on range ports.
    assert len(accepted) == CONNECTIONS - MAIN_CONNECTIONS, log
    assert set(accepted) <= gen0
    # 4.34's access line names no inbound: the dynamic-port ones are counted above
    lines = [line for line in access.splitlines() if " accepted " in line]
    assert len(lines) == CONNECTIONS, access


# -- Scenario B: v2py client -> real v2ray server ---------------------------------------


@pytest.mark.parametrize(("network", "default_alter_id"), VARIANTS)
async def test_b_v2py_client_to_v2ray_server(
    network: str, default_alter_id: int | None, echo_server: tuple[str, int]
) -> None:
    require_v2ray()
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(8)
    workdir = Path(tempfile.mkdtemp(prefix="v2ray-dyn-"))
    access = workdir / "access.log"
    server_text = seed_server(
        network,
        main_port,
        first,
        last,
        log={"loglevel": "debug", "access": str(access)},
        default_alter_id=default_alter_id,
    )
    # mKCP listens on UDP only: no TCP port to wait for.
    wait_tcp, settle = ([main_port], 0.0) if network == "tcp" else ([], KCP_SETTLE_S)
    async with (
        run_v2ray(server_text, wait_tcp=wait_tcp, settle=settle) as server,
        run_v2py(seed_client(network, socks_port, main_port)),
    ):
        for _ in range(CONNECTIONS):
            await echo_through(socks_port, echo_server)
        held_ports: set[int] = set()
        if network == "tcp":
            # Hold a 7th connection (it goes to a dynamic entry) and look at v2ray's sockets.
            from tests.support.socks import socks5_connect

            async with asyncio.timeout(10):
                reader, writer = await socks5_connect(socks_port, *echo_server)
                writer.write(b"held")
                assert await reader.readexactly(4) == b"held"
            try:
                held_ports = set(established_local_ports(server.proc.pid))
            finally:
                writer.close()
        else:
            await wait_kcp_dialers_closed(set(range(first, last + 1)) | {main_port})
        await asyncio.sleep(0.2)  # let v2ray flush its access log
        log = server.log()
    proto = "TCP" if network == "tcp" else "UDP"
    listening = {int(p) for p in re.findall(rf"listening {proto} on 127\.0\.0\.1:(\d+)", log)}
    dynamic = {p for p in listening if first <= p <= last}
    assert len(dynamic) == 2, log  # v2ray opened the seed's concurrency 2
    detours = [int(p) for p in re.findall(r"pick detour handler for port (\d+)", log)]
    assert len(detours) == MAIN_CONNECTIONS, log
    assert set(detours) <= dynamic
    requests = re.findall(r"proxy/vmess/inbound: received request for", log)
    assert len(requests) >= CONNECTIONS
    lines = [line for line in access.read_text().splitlines() if " accepted " in line]
    assert len(lines) >= CONNECTIONS
    if network == "tcp":
        assert held_ports & dynamic, f"v2ray holds no connection on {dynamic}: {held_ports}"


# -- the one real-time rotation test ----------------------------------------------------

ROTATION_REFRESH_MIN = 1
ROTATION_RANGE = 6  # 3 x concurrency 2
ROTATION_BUDGET_S = 150.0


@pytest.mark.slow
async def test_rotation_real_time_v2ray_client(echo_server: tuple[str, int]) -> None:
    """Ports change after a real refresh and the real client follows them."""
    require_v2ray()
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(ROTATION_RANGE)
    server_text = seed_server("tcp", main_port, first, last).replace(
        '"refresh": 3', f'"refresh": {ROTATION_REFRESH_MIN}'
    )
    async with asyncio.timeout(ROTATION_BUDGET_S):
        async with (
            run_v2py(server_text) as server,
            run_v2ray_client("tcp", socks_port, main_port),
        ):
            dyn = dynamic_handler(server)
            assert dyn.rotation.refresh_min == ROTATION_REFRESH_MIN
            gen0 = set(dyn.current_ports)
            for _ in range(4):  # main, main, D1, D2
                await echo_through(socks_port, echo_server)
            assert set(dyn.statistics().accepted_by_port) <= gen0

            while dyn.statistics().generations_opened < 2:
                await asyncio.sleep(0.5)  # the real refresh timer is what this test is about
            gen1 = set(dyn.current_ports)
            assert len(gen1) == 2 and gen1.isdisjoint(gen0)
            assert dyn.listening_ports == gen0 | gen1
            assert all(first <= p <= last for p in gen1)

            # The client's gen-0 entries expire (ValidMin 1); a main-port connection
            # brings a gen-1 entry and the client then uses it.
            used_gen1 = False
            for _ in range(8):
                await echo_through(socks_port, echo_server)
                if set(dyn.statistics().accepted_by_port) & gen1:
                    used_gen1 = True
                    break
            assert used_gen1, dyn.statistics()
