"""Smoke run of ``python -m bench.users`` (users phase and start-up phase, v2py and
v2ray): every configuration runs on both implementations and reports its numbers.
Not a benchmark (a handful of users, sub-second rate steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.v2ray import require_v2ray

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[1]


def test_bench_users_quick(tmp_path: Path) -> None:
    v2ray = require_v2ray()
    out_json = tmp_path / "users.json"
    cmd = [
        sys.executable, "-m", "bench.users", "--users", "20", "--runs", "1",
        "--seconds", "0.3", "--settle-max", "3", "--concurrency", "1,4",
        "--json", str(out_json), "--v2ray-cmd", f"{v2ray} -config {{config}}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "v2py/v2ray" in proc.stdout, output[-4000:]
    summary = json.loads(out_json.read_text())
    assert set(summary["users"]) == {"aead/20", "legacy/20"}
    for group in summary["users"].values():
        for impl in ("v2py", "v2ray"):
            med = group[impl]["median"]
            assert med["conn_s_c1"] > 0 and med["conn_s_c4"] > 0, (impl, med)
            assert med["p50_ms_c1"] > 0 and med["server_rss_rest_mib"] > 0, (impl, med)
            assert med["server_ready_ms"] > 0, (impl, med)
            assert "errors_c1" not in med, (impl, med)
    assert set(summary["startup"]) == {"socks-freedom", "vmess-aead"}
    for group in summary["startup"].values():
        for impl in ("v2py", "v2ray"):
            med = group[impl]["median"]
            assert med["first_reply_ms"] > 0 and med["rss_rest_mib:client"] > 0, (impl, med)
