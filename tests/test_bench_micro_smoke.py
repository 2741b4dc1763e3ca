"""Smoke runs of the micro-benchmarks (tiny counts: not benchmarks)."""

from __future__ import annotations

import re

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
