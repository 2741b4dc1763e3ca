"""Client clock skew (vmess.md 4.1, 4.2, 5.3): ±60 s works, ±150 s is refused.

The v2py client's wall clock is injected (``VmessOutbound(clock=...)``); the server
runs on the real clock. AEAD accepts |Δt| <= 120 s exactly. A legacy client adds its
own jitter of [-30, +29] s to the skew, so the seeded RNG below fixes that jitter; with
it, +150 s and -150 s land outside the ±120 s table (a jitter of -30 would put +150 s
exactly on the edge, where a server that refreshed this very second still accepts).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.configs import vmess_server_config
from tests.support.v2ray import free_ports, run_v2ray
from tests.support.vmess_probe import roundtrip, user, v2py_vmess_client, v2py_vmess_server
from v2py.protocol.vmess import SecurityType

UUID = "27848739-7e62-4138-9fd3-098a63964b6b"
PAYLOAD = b"clock-skew-probe" * 64
CLIENT_SEED = 20240
ACCEPTED_SKEWS = (60.0, -60.0)
REFUSED_SKEWS = (150.0, -150.0)


def _cases(server: str) -> list[Any]:
    marks = [pytest.mark.interop] if server == "v2ray" else []
    cases = []
    for alter_id, header in ((0, "aead"), (4, "legacy")):
        for skew in ACCEPTED_SKEWS + REFUSED_SKEWS:
            cases.append(
                pytest.param(
                    server,
                    alter_id,
                    skew,
                    skew in ACCEPTED_SKEWS,
                    marks=marks,
                    id=f"{server}-{header}-{skew:+.0f}s",
                )
            )
    return cases


@contextlib.asynccontextmanager
async def _server(kind: str, alter_id: int) -> AsyncIterator[int]:
    if kind == "v2py":
        async with v2py_vmess_server([user(UUID, alter_id)]) as server:
            yield server.port
        return
    (port,) = free_ports(1)
    config = vmess_server_config(port, UUID, alter_id, handshake_s=1)
    async with run_v2ray(config, wait_tcp=[port]):
        yield port


@pytest.mark.parametrize(
    ("server", "alter_id", "skew", "accepted"), _cases("v2py") + _cases("v2ray")
)
async def test_client_clock_skew(
    echo_server: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    server: str,
    alter_id: int,
    skew: float,
    accepted: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="v2py.proxy.vmess_inbound")
    async with (
        _server(server, alter_id) as server_port,
        v2py_vmess_client(
            server_port,
            user(UUID, alter_id),
            echo_server,
            security=SecurityType.AES_128_GCM,
            clock=lambda: time.time() + skew,
            rng=random.Random(CLIENT_SEED).randbytes,
        ) as client_port,
    ):
        got = await roundtrip(client_port, PAYLOAD)
    if accepted:
        assert got == PAYLOAD
        assert "invalid request" not in caplog.text
    else:
        assert got == b"", "a refused request must not carry any data"
        if server == "v2py":  # refused as an unknown user, not for some other reason
            assert "invalid request" in caplog.text and "invalid user" in caplog.text
