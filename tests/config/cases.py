"""Config builders shared by the config tests (JSON dicts; tests dump them to text)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from v2py.config import LoadedConfig, load_config

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "vectors" / "configs"
UUID_A = "d17a1af7-efa5-42ca-b7e9-6a35282d737f"
UUID_B = "27848739-7e62-4138-9fd3-098a63964b6b"


def socks_in(**extra: Any) -> dict[str, Any]:
    """A minimal valid SOCKS inbound."""
    return {"port": 1080, "protocol": "socks", "settings": {"auth": "noauth"}, **extra}


def vmess_in(**extra: Any) -> dict[str, Any]:
    """A minimal valid VMess inbound."""
    return {
        "port": 37192,
        "protocol": "vmess",
        "settings": {"clients": [{"id": UUID_A, "alterId": 0}]},
        **extra,
    }


def vmess_out(**user: Any) -> dict[str, Any]:
    """A minimal valid VMess outbound; ``user`` updates its only user."""
    return {
        "protocol": "vmess",
        "settings": {
            "vnext": [{"address": "127.0.0.1", "port": 37192, "users": [{"id": UUID_A, **user}]}]
        },
    }


def config(
    *inbounds: dict[str, Any], outbounds: list[dict[str, Any]] | None = None, **top: Any
) -> dict[str, Any]:
    """A whole config with the given inbounds and (default: freedom) outbounds."""
    return {
        "inbounds": list(inbounds) if inbounds else [socks_in()],
        "outbounds": outbounds if outbounds is not None else [{"protocol": "freedom"}],
        **top,
    }


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Deep copy of ``base`` with ``value`` set at a dotted path (``a.0.b``)."""
    result = copy.deepcopy(base)
    node: Any = result
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result


def load(
    data: dict[str, Any] | str, env: dict[str, str] | None = None, name: str = "config.json"
) -> LoadedConfig:
    """Load one config given as a dict or as text."""
    text = data if isinstance(data, str) else json.dumps(data)
    return load_config([(name, text)], env or {})


def seed_text(name: str) -> str:
    """A seed config file from tests/vectors/configs/."""
    return (CONFIGS_DIR / name).read_text(encoding="utf-8")
