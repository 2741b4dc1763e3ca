"""The short CI run of the fuzz targets in ``fuzz/`` (the long runs are by hand, see
``fuzz/README.md``).

Per target: its seed corpus and the regression inputs below replay cleanly; then a
few seconds of coverage-guided fuzzing with Atheris when it is installed (a
subprocess, ``-max_total_time``), and a few hundred Hypothesis examples either way.
A broken invariant fails the test with the target's traceback (Atheris also prints
the crashing input as hex and base64: add it to ``REGRESSIONS``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (
    "socks5_server",
    "http_request",
    "vmess_header",
    "vmess_body",
    "mux_frames",
    "mkcp_segments",
    "mkcp_packets",
    "proxy_clients",
)
#: Seconds of Atheris per target in CI (the whole file stays well under 30 s).
ATHERIS_SECONDS = 1
#: Atheris processes at a time (CI has 2 cores).
ATHERIS_PARALLEL = 2
HYPOTHESIS_EXAMPLES = 100
RUN_TIMEOUT_S = 60.0
#: Inputs that once broke an invariant, per target (fixed since; they must stay fixed).
REGRESSIONS: dict[str, list[bytes]] = {name: [] for name in TARGETS}


def _target(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"fuzz.{name}")


@pytest.mark.parametrize("name", TARGETS)
def test_seeds_and_regressions(name: str) -> None:
    target = _target(name)
    for data in [*target.seeds(), *REGRESSIONS[name], b"", b"\xff" * 64]:
        target.test_one_input(data)


@pytest.mark.parametrize("name", TARGETS)
def test_hypothesis(name: str) -> None:
    target = _target(name)

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.binary(max_size=4096) | st.sampled_from(target.seeds()))
    def run(data: bytes) -> None:
        target.test_one_input(data)

    run()


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris(tmp_path: Path) -> None:
    """Every target under Atheris, ``ATHERIS_PARALLEL`` at a time (start-up, mostly
    instrumenting the imports, costs more than the fuzzing itself)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    pending = list(TARGETS)
    running: dict[str, subprocess.Popen[str]] = {}
    failures: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while pending or running:
            while pending and len(running) < ATHERIS_PARALLEL:
                name = pending.pop(0)
                running[name] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        f"fuzz.{name}",
                        f"-max_total_time={ATHERIS_SECONDS}",
                        "-seed=1",
                        f"-artifact_prefix={tmp_path}/{name}-",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            name, proc = next(iter(running.items()))
            _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            del running[name]
            if proc.returncode != 0 or "Done " not in stderr:
                tail = "\n".join(stderr.splitlines()[-40:])
                failures.append(f"fuzz.{name} exited {proc.returncode}:\n{tail}")
    finally:
        for proc in running.values():
            proc.kill()
            proc.wait()
    assert not failures, "\n\n".join(failures)
