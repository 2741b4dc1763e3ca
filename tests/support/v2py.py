"""Run v2py in-process from a V2Ray-style config dict, for scenario and interop tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from v2py.config.load import load_config
from v2py.instance import Instance


@contextlib.asynccontextmanager
async def run_v2py(
    config: dict[str, Any] | str, *, env: dict[str, str] | None = None
) -> AsyncIterator[Instance]:
    """Load ``config`` exactly as ``v2py run -c`` would, start it, stop it afterwards."""
    text = config if isinstance(config, str) else json.dumps(config)
    loaded = load_config([("test.json", text)], env or {})
    instance = Instance.from_config(loaded.config, env=env or {})
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


@contextlib.asynccontextmanager
async def run_side(kind: str, config: dict[str, Any], port: int) -> AsyncIterator[None]:
    """Run ``config`` on the real v2ray (``kind == "v2ray"``, waiting for TCP ``port``) or
    on v2py in-process (anything else)."""
    if kind == "v2ray":
        from tests.support.v2ray import run_v2ray

        async with run_v2ray(config, wait_tcp=[port]):
            yield
    else:
        async with run_v2py(config):
            yield
