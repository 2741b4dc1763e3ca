"""Smoke run of ``python -m bench.micro_tls_handshake`` (tiny count: not a benchmark)."""

from __future__ import annotations

import re

import pytest

from bench import micro_tls_handshake


def test_micro_tls_handshake_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert micro_tls_handshake.main(["20"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["client", "server", "both"]
    client, server, both = (float(re.findall(r"(\d+) us", line)[0]) for line in lines)
    assert client > 0 and server > 0
    assert both == pytest.approx(client + server, abs=1)
