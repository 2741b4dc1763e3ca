"""Smoke runs of the micro-benchmarks (tiny counts: not benchmarks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import micro_tls_handshake


def test_micro_tls_handshake_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert micro_tls_handshake.main(["20"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["client", "server", "both", "client's"]
    client, server, both, decode = (float(re.findall(r"(\d+) us", line)[0]) for line in lines)
    assert client > 0 and server > 0
    assert both == pytest.approx(client + server, abs=1)
    assert 0 < decode < client  # d2i_X509 is one step of the client's handshake


def test_micro_layers_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.micro_layers``: every kind's servers start, every row prints."""
    from bench import micro_layers

    assert micro_layers.main(["--seconds", "0.2", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [line.split()[0] for line in lines] == ["tcp", "tls", "ws", "ws+tls", "tls-uvloop"]
    for line in lines:
        conn_per_s, client_us, server_us = (float(v) for v in line.split()[1:4])
        assert conn_per_s > 0 and client_us > 0 and server_us >= 0


def test_ab_quick(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``python -m bench.ab``: two chains of v2py up at once, a round each, ratios print."""
    from bench import ab
    from bench.cli import _default_v2py_cmd

    v2py = _default_v2py_cmd()
    argv = ["--a", v2py, "--b", v2py, "--rounds", "1", "--seconds", "0.2"]
    assert ab.main([*argv, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rates = [float(v) for v in re.findall(r"^[AB]: median (\d+) conn/s", out, re.M)]
    assert len(rates) == 2 and all(rate > 0 for rate in rates)
    assert "B/A conn/s per round: median" in out
