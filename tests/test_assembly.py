"""The assembly: every protocol, network and security the config accepts is built by
the runtime, and real-world configs either run with their full meaning or are refused
by ``v2py test`` and ``v2py run`` alike with one line naming the key (fail closed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.config.cases import UUID_A
from v2py.app.dynamic import DynamicInbound
from v2py.app.inbound import AlwaysOnInbound
from v2py.config.load import load_config
from v2py.config.registry import INBOUND_SETTINGS, OUTBOUND_SETTINGS
from v2py.errors import ConfigError
from v2py.instance import Instance
from v2py.transport import KcpTransport, TcpTransport

REAL = Path(__file__).resolve().parent / "vectors" / "configs" / "real"
EXPECTED: dict[str, str | None] = {
    k: v for k, v in json.loads((REAL / "expected.json").read_text()).items() if k != "_comment"
}

# One minimal settings object per protocol the registry accepts.
INBOUND_EXAMPLES: dict[str, dict[str, Any]] = {
    "socks": {"auth": "noauth"},
    "http": {},
    "dokodemo-door": {"address": "127.0.0.1", "port": 80},
    "vmess": {"clients": [{"id": UUID_A}]},
    "vless": {"clients": [{"id": UUID_A}], "decryption": "none"},
    "shadowsocks": {"method": "aes-128-gcm", "password": "p"},
    "trojan": {"clients": [{"password": "p", "email": "e@x", "level": 1}]},
    "mtproto": {"users": [{"secret": "0123456789abcdef0123456789abcdef"}]},
}
OUTBOUND_EXAMPLES: dict[str, dict[str, Any]] = {
    "freedom": {},
    "blackhole": {},
    "dns": {"network": "udp", "address": "127.0.0.1", "port": 53},
    "vmess": {"vnext": [{"address": "127.0.0.1", "port": 1, "users": [{"id": UUID_A}]}]},
    "socks": {"servers": [{"address": "127.0.0.1", "port": 1, "users": [{"user": "u"}]}]},
    "http": {"servers": [{"address": "127.0.0.1", "port": 1}]},
    "shadowsocks": {
        "servers": [{"address": "127.0.0.1", "port": 1, "method": "none", "password": "p"}]
    },
    "mtproto": {},
    "trojan": {"servers": [{"address": "127.0.0.1", "port": 1, "password": "p"}]},
    "vless": {
        "vnext": [
            {"address": "127.0.0.1", "port": 1, "users": [{"id": UUID_A, "encryption": "none"}]}
        ]
    },
}
NETWORKS = {"tcp": TcpTransport, "kcp": KcpTransport}


def _instance(data: dict[str, Any]) -> Instance:
    loaded = load_config([("test.json", json.dumps(data))], {})
    return Instance(loaded.config, env={})


def test_examples_cover_the_registry() -> None:
    assert set(INBOUND_EXAMPLES) == set(INBOUND_SETTINGS)
    assert set(OUTBOUND_EXAMPLES) == set(OUTBOUND_SETTINGS)


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("protocol", sorted(INBOUND_EXAMPLES))
def test_every_inbound_protocol_and_network_is_built(protocol: str, network: str) -> None:
    instance = _instance(
        {
            "inbounds": [
                {
                    "tag": "in",
                    "listen": "127.0.0.1",
                    "port": 1,
                    "protocol": protocol,
                    "settings": INBOUND_EXAMPLES[protocol],
                    "streamSettings": {"network": network},
                }
            ]
        }
    )
    handler = instance.inbounds.get("in")
    assert isinstance(handler, AlwaysOnInbound)
    assert isinstance(handler.transport, NETWORKS[network])
    assert type(handler.proxy).__module__.startswith("v2py.proxy.")


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("protocol", sorted(OUTBOUND_EXAMPLES))
def test_every_outbound_protocol_and_network_is_built(protocol: str, network: str) -> None:
    instance = _instance(
        {
            "outbounds": [
                {
                    "tag": "out",
                    "protocol": protocol,
                    "settings": OUTBOUND_EXAMPLES[protocol],
                    "streamSettings": {"network": network},
                }
            ]
        }
    )
    handler = instance.outbounds.get("out")
    assert handler is not None and instance.outbounds.default is handler
    assert type(handler).__module__.startswith("v2py.proxy.")


def test_dynamic_inbound_is_built_with_its_transport() -> None:
    instance = _instance(
        {
            "inbounds": [
                {
                    "tag": "dyn",
                    "port": "30000-30020",
                    "listen": "127.0.0.1",
                    "protocol": "vmess",
                    "settings": {},
                    "allocate": {"strategy": "random", "concurrency": 3},
                    "streamSettings": {"network": "kcp"},
                }
            ]
        }
    )
    handler = instance.inbounds.get("dyn")
    assert isinstance(handler, DynamicInbound)
    assert isinstance(handler.transport, KcpTransport)


def test_no_outbound_means_a_default_freedom() -> None:
    instance = _instance({"inbounds": []})
    assert type(instance.outbounds.default).__name__ == "FreedomOutbound"


def test_every_real_config_has_an_expectation() -> None:
    assert set(EXPECTED) == {p.name for p in REAL.glob("*.json") if p.name != "expected.json"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2py", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "config error" in line]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_config_runs_in_full_or_is_refused_by_test_and_run_alike(name: str) -> None:
    path = REAL / name
    expected = EXPECTED[name]
    try:
        loaded = load_config([(str(path), path.read_text())], {})
        # Geo lists are read when the instance is built (as 4.34 reads them while
        # building its config): a missing geosite.dat is refused there.
        Instance(loaded.config, env={})
    except ConfigError as exc:
        assert expected is not None, f"{name} was expected to load: {exc}"
        assert exc.path.split(": ", 1)[-1] == expected, str(exc)
        assert "\n" not in str(exc)
        results = [_cli("test", "-c", str(path)), _cli("run", "-c", str(path))]
        for proc in results:
            assert proc.returncode == 23, proc
            (line,) = _error_lines(proc)
            assert expected in line
        assert _error_lines(results[0]) == _error_lines(results[1])
        return
    assert expected is None, f"{name} loaded but was expected to be refused at {expected}"
    assert _cli("test", "-c", str(path)).returncode == 0


def test_the_assembly_is_typed_without_any() -> None:
    """instance.py and build.py hand typed values around: no ``Any`` anywhere in them."""
    import ast

    src = Path(__file__).resolve().parent.parent / "src" / "v2py"
    for name in ("instance.py", "build.py"):
        tree = ast.parse((src / name).read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "Any"} | {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "Any"
        }
        assert not used, f"{name} uses Any"
