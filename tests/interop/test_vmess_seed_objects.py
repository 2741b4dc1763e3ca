"""The VMess objects printed in the user's guide (seeds/vmess.md) run unchanged but for ports.

Server: a vmess inbound whose ``settings`` is the guide's InboundConfigurationObject
(clients, default, ``detour.to: "tag_to_detour"``, disableInsecureEncryption), plus
the detour target it names (a dynamic-port vmess inbound). Client: the guide's
OutboundConfigurationObject with the port changed. Every pairing with the real
v2ray 4.34 and v2py, several connections each (so detour entries are used too).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.test_dynamic_port import echo_through
from tests.support.ports import free_dual_ports, free_port_range
from tests.support.v2py import run_side

SEED_DIR = Path(__file__).resolve().parent.parent / "vectors" / "configs"
CONNECTIONS = 5


def _seed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SEED_DIR / name).read_text(encoding="utf-8"))
    return data


def server_config(port: int, first: int, last: int) -> dict[str, Any]:
    return {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "vmess",
                "settings": _seed("vmess-inbound-settings.json"),
            },
            {
                "listen": "127.0.0.1",
                "port": f"{first}-{last}",
                "protocol": "vmess",
                "tag": "tag_to_detour",
                "settings": {"default": _seed("vmess-default-object.json")},
                "allocate": {"strategy": "random", "concurrency": 2, "refresh": 5},
            },
        ],
        "outbounds": [{"protocol": "freedom", "settings": {}}],
    }


def client_config(socks_port: int, server_port: int) -> dict[str, Any]:
    settings = copy.deepcopy(_seed("vmess-outbound-settings.json"))
    assert settings["vnext"][0]["port"] == 37192
    settings["vnext"][0]["port"] = server_port
    return {
        "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks"}],
        "outbounds": [{"protocol": "vmess", "settings": settings}],
    }


@pytest.mark.parametrize(
    "direction",
    [
        pytest.param("v2ray-v2py", marks=pytest.mark.interop),
        pytest.param("v2py-v2ray", marks=pytest.mark.interop),
        "v2py-v2py",
    ],
)
async def test_seed_vmess_objects(direction: str, echo_server: tuple[str, int]) -> None:
    client_kind, server_kind = direction.split("-")
    server_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(6)
    async with (
        run_side(server_kind, server_config(server_port, first, last), server_port),
        run_side(client_kind, client_config(socks_port, server_port), socks_port),
    ):
        for _ in range(CONNECTIONS):
            await echo_through(socks_port, echo_server)
