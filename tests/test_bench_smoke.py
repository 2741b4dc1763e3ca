"""Smoke run of the benchmark harness: v2py and v2ray on the socks-freedom chain.

Not a benchmark: it only checks that ``python -m bench`` drives both implementations end to
end and reports numbers for both.  It fails (does not skip) when v2py's chain cannot start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.v2ray import require_v2ray

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_socks_freedom(tmp_path: Path) -> None:
    v2ray = require_v2ray()
    out_json = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--chain",
        "socks-freedom",
        "--runs",
        "1",
        "--idle-conns",
        "10",
        "--many-conns",
        "50",
        "--start-timeout",
        "8",
        "--json",
        str(out_json),
        "--v2ray-cmd",
        f"{v2ray} -config {{config}}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "v2py/v2ray" in proc.stdout, output[-4000:]
    assert "many: completed" in proc.stdout, output[-4000:]

    summary = json.loads(out_json.read_text())
    chain = summary["chains"]["socks-freedom"]
    for impl in ("v2py", "v2ray"):
        entry = chain[impl]
        assert entry["ok_runs"] == 1, entry["errors"]
        med = entry["median"]
        assert med["upload_mb_s"] > 0
        assert med["download_mb_s"] > 0
        assert med["conn_per_s"] > 0
        assert med["idle_open"] == 10
        assert med["rss_peak_mib:client"] > 0
        assert med["many_total"] == med["many_completed"] == 50
        assert med["many_verified_mib"] == 50 * 64 / 1024
        assert "many_fd_delta:client" in med and "many_fd_delta:bench" in med
        assert med["load_bulk_started"] == 20 and med["load_bulk_lost"] == 0
        assert med["load_probe_errors"] == 0 and med["load_first_byte_p50_ms"] > 0
    assert summary["ratios"]["socks-freedom"]["upload_mb_s"] > 0
