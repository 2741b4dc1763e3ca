"""Start-up cost guard: what a minimal config imports.

A library or feature is imported only when the config uses it, so a panel that
restarts the core on every change pays only for what it runs. Each check runs in
a fresh interpreter (this test process has imported everything already).
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_ports_of
from tests.support.tls_certs import TestCA
from v2py.config.base import ConfigModel
from v2py.config.model import (
    KcpConfig,
    KcpHeaderConfig,
    PolicyConfig,
    SniffingConfig,
    StreamConfig,
    SystemPolicy,
    TcpConfig,
    TcpHeaderConfig,
)
from v2py.config.routing import RoutingConfig
from v2py.config.stream import HttpRequestConfig, HttpResponseConfig

#: socks -> freedom, the smallest useful config.
MINIMAL_CONFIG = {
    "inbounds": [
        {"listen": "127.0.0.1", "port": 1080, "protocol": "socks", "settings": {"auth": "noauth"}}
    ],
    "outbounds": [{"protocol": "freedom"}],
}

#: Not needed for MINIMAL_CONFIG: third-party libraries of other features, v2py's own
#: feature modules, and what pydantic's plugin discovery would pull in
#: (importlib.metadata, email, zipfile; see v2py.config.base).
NOT_FOR_MINIMAL = (
    "aioquic",
    "cryptography",
    "dns",
    "email",
    "google.protobuf",
    "grpc",
    "h11",
    "h2",
    "httptools",
    "importlib.metadata",
    "tempfile",
    "websockets",
    "zipfile",
    "v2py.app.commander",
    "v2py.app.shared_state",
    "v2py.app.stats",
    "v2py.config.protobuf",
    "v2py.protocol.mkcp",
    "v2py.protocol.vmess",
    "v2py.transport.tls",
    "v2py.transport.ws",
)

_BUILD = """
import json, sys
from v2py.config.load import load_config
from v2py.instance import Instance
loaded = load_config([("minimal.json", sys.argv[1])], {})
Instance.from_config(loaded.config)
json.dump(sorted(sys.modules), sys.stdout)
"""

_START = """
import asyncio, json, sys
from v2py.config.load import load_config
from v2py.instance import Instance
loaded = load_config([("c.json", sys.argv[1])], {}, read_file=lambda n: open(n, "rb").read())
instance = Instance.from_config(loaded.config)


async def main():
    async with asyncio.timeout(20):
        await instance.start()
        await instance.close()


asyncio.run(main())
json.dump(sorted(sys.modules), sys.stdout)
"""

_CLI = """
import json, sys
import v2py.cli
json.dump(sorted(sys.modules), sys.stdout)
"""


def _modules_after(script: str, *args: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    modules: list[str] = json.loads(done.stdout)
    return set(modules)


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_minimal_config_imports_no_unused_feature() -> None:
    modules = _modules_after(_BUILD, json.dumps(MINIMAL_CONFIG))
    assert "v2py.proxy.socks_inbound" in modules  # the check itself works
    assert [name for name in NOT_FOR_MINIMAL if _loaded(modules, name)] == []


def test_started_tls_server_with_one_certificate_reads_no_x509(tmp_path: Path) -> None:
    """A lone certificate is served whatever the SNI: its names are not read at start."""
    cert, key = TestCA().issue("localhost").write(tmp_path, "server")
    (port,) = free_ports_of(1, (socket.SOCK_STREAM,))
    tls = {"certificates": [{"certificateFile": cert, "keyFile": key}]}
    stream = {"network": "ws", "security": "tls", "tlsSettings": tls}
    config = {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "vmess",
                "settings": {"clients": [{"id": "b831381d-6324-4d53-ad4f-8cda48b30811"}]},
                "streamSettings": stream,
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    modules = _modules_after(_START, json.dumps(config))
    assert "v2py.transport.tls" in modules  # the check itself works
    assert not _loaded(modules, "cryptography.x509")


@pytest.mark.parametrize("name", ["pydantic", "asyncio", "v2py.config"])
def test_cli_import_is_light(name: str) -> None:
    """``v2py version`` and the flag parsing do not pay for the config layer."""
    assert not _loaded(_modules_after(_CLI), name)


#: Every ``Model.trusted(**values)`` of the loader and of the models' defaults.
TRUSTED_USES: list[tuple[type[ConfigModel], dict[str, object]]] = [
    (HttpRequestConfig, {}),
    (HttpResponseConfig, {}),
    (KcpConfig, {}),
    (KcpHeaderConfig, {"type": "none"}),
    (PolicyConfig, {}),
    (RoutingConfig, {}),
    (SniffingConfig, {}),
    (StreamConfig, {}),
    (SystemPolicy, {}),
    (TcpConfig, {}),
    (TcpHeaderConfig, {"type": "none"}),
]


@pytest.mark.parametrize(
    ("model", "values"), TRUSTED_USES, ids=lambda v: getattr(v, "__name__", "")
)
def test_trusted_defaults_equal_validated_ones(
    model: type[ConfigModel], values: dict[str, object]
) -> None:
    """``trusted`` skips building a validator; it must not change the result."""
    fast, checked = model.trusted(**values), model(**values)
    assert fast == checked
    assert fast.model_fields_set == checked.model_fields_set
    assert fast.model_dump() == checked.model_dump()


def test_gc_is_paused_for_start_up_only() -> None:
    """``v2py run`` turns the cyclic GC off while loading and building; resuming turns it
    back on, freezing (what start-up made) only when asked, and is a no-op otherwise."""
    from v2py.run import pause_gc_for_startup, resume_gc

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    pause_gc_for_startup()
    try:
        assert not gc.isenabled()
    finally:
        resume_gc(freeze=False)
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
    resume_gc(freeze=True)  # not paused: nothing happens
    assert gc.get_freeze_count() == frozen


_PLUGIN_FALLBACK = """
import json, sys
import v2py.config.base
from pydantic.plugin._loader import get_plugins
assert tuple(get_plugins()) == ()
# a name v2py's stand-in lacks comes from pydantic's real loader
from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP
assert PYDANTIC_ENTRY_POINT_GROUP == "pydantic"
json.dump(sorted(sys.modules), sys.stdout)
"""


def test_pydantic_plugin_stand_in_falls_back_to_the_real_loader() -> None:
    """A pydantic that asks its plugin loader for more than ``get_plugins`` still works."""
    assert "importlib.metadata" in _modules_after(_PLUGIN_FALLBACK)
