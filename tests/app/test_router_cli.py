"""Bad routing input from the command line: one config-error line, exit 23, from
``v2py test`` and ``v2py run`` alike (geo files are read while the instance is built)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.geodat import write_assets

EXIT_CONFIG = 23


def _config(routing: dict[str, Any]) -> dict[str, Any]:
    return {
        "inbounds": [{"listen": "127.0.0.1", "port": 1, "protocol": "socks"}],
        "outbounds": [{"protocol": "freedom", "tag": "direct"}],
        "routing": routing,
    }


def _rule(**fields: Any) -> dict[str, Any]:
    return {"rules": [{"type": "field", "outboundTag": "direct", **fields}]}


def _cli(command: str, path: Path, assets: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2py", command, "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "V2RAY_LOCATION_ASSET": str(assets)},
    )


CASES = [
    ("regexp", _rule(domain=["regexp:a(b"]), "routing.rules[0].domain[0]", "invalid regexp"),
    ("missing-code", _rule(domain=["geosite:nope"]), "routing.rules[0].domain[0]", "nope"),
    ("missing-country", _rule(ip=["geoip:zz"]), "routing.rules[0].ip[0]", "zz"),
    ("broken-dat", _rule(domain=["ext:broken.dat:x"]), "routing.rules[0].domain[0]", "broken"),
    ("missing-file", _rule(ip=["ext:none.dat:x"]), "routing.rules[0].ip[0]", "none.dat"),
    ("no-fields", _rule(domian=["x"]), "routing.rules[0]", "no effective fields"),
]


@pytest.mark.parametrize(("name", "routing", "path", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_routing_is_one_line_from_test_and_run(
    name: str, routing: dict[str, Any], path: str, fragment: str, tmp_path: Path
) -> None:
    assets = write_assets(tmp_path / "assets", geosite={"CN": ["domain:cn"]}, geoip={"CN": []})
    (assets / "broken.dat").write_bytes(b"\x0a\x7fnot protobuf")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(routing)))
    lines = []
    for command in ("test", "run"):
        proc = _cli(command, config, assets)
        assert proc.returncode == EXIT_CONFIG, proc
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if path in line]
        assert len(errors) == 1, proc
        assert fragment in errors[0]
        assert "Traceback" not in proc.stdout + proc.stderr
        lines.append(errors[0])
    assert lines[0] == lines[1]


def test_unknown_rule_field_only_warns(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(_rule(port="80", domian=["x"]))))
    proc = _cli("test", config, tmp_path)
    assert proc.returncode == 0, proc
    assert "routing.rules[0].domian" in proc.stdout + proc.stderr
