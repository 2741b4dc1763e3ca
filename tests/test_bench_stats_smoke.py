"""Smoke runs of the API benches, v2py and v2ray: ``python -m bench.stats`` (stats off vs
on; the user counters of the ``on`` passes match the bytes moved) and ``python -m
bench.api_users`` (users added through AlterInbound, then handshakes). Not benchmarks
(tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.v2ray import require_v2ray

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[1]
#: The bench's request header and its one ping, counted as the user's traffic.
BENCH_OVERHEAD = 155


def test_bench_stats_quick(tmp_path: Path) -> None:
    v2ray = require_v2ray()
    out_json = tmp_path / "stats.json"
    cmd = [
        sys.executable, "-m", "bench.stats", "--runs", "1", "--bulk-mib", "2",
        "--json", str(out_json), "--v2ray-cmd", f"{v2ray} -config {{config}}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "counting costs" in proc.stdout, output[-4000:]
    passes = json.loads(out_json.read_text())
    assert {(p["impl"], p["variant"]) for p in passes} == {
        (impl, variant) for impl in ("v2py", "v2ray") for variant in ("off", "on")
    }
    for p in passes:
        assert p["moved"] == 2 * 2 * (1 << 20), p
        if p["variant"] == "on":
            counted = p["counted"]
            user = sum(v for k, v in counted.items() if k.startswith("user>>>"))
            assert user == p["moved"] + BENCH_OVERHEAD, (p["impl"], counted)


def test_bench_api_users_quick() -> None:
    v2ray = require_v2ray()
    cmd = [
        sys.executable, "-m", "bench.api_users", "--users", "50", "--samples", "2",
        "--v2ray-cmd", f"{v2ray} -config {{config}}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    rows = [line.split()[0] for line in proc.stdout.splitlines()[2:]]
    assert rows == ["v2py", "v2ray"], output[-4000:]
