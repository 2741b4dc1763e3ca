"""Micro-benchmark: the VMess server user table (docs/spec/vmess.md 4.2, 5.3).

Usage: python bench/micro_vmess_validator.py [--users 100,1000,5000] [--validator FILE]
       [--step-hashes N] [--no-memory]

Users are alterId 4 and 0 alternating (every user also registered for legacy
lookup, as 4.34 does).  The clock is fixed, so runs are comparable.  For each
user count it reports, in ms unless noted:

* ``startup``: constructing the validator and adding every user;
* ``cold_miss``: a refused legacy lookup (random auth) right after startup;
* ``warm`` (inbound loop): ``prefill(5)`` until 0, as ``VmessInbound`` does
  today: total time, steps and the longest step in CPU time (sleeps not
  simulated);
* ``warm`` (budget loop, if the validator has ``prefill_budget``):
  ``prefill_budget(--step-hashes)`` until 0;
* ``miss`` / ``hit``: median and max legacy lookup once warm (hits use random
  users, IDs and seconds across the whole window); ``aead_miss``: median
  ``match_aead`` of a random AuthID (every user tried);
* ``update``: ``update(now + 10)`` plus re-warming;
* ``mem_MB``: tracemalloc growth after startup and after warm-up (a separate
  pass, since tracing slows everything down).

``--validator FILE`` loads another ``validator.py`` (e.g. ``git show
HEAD~1:src/v2py/protocol/vmess/validator.py > /tmp/old.py``) for before/after
numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import sys
import time
import tracemalloc
from types import ModuleType
from typing import Any

from v2py.protocol.vmess import validator as current_validator
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.header import legacy_auth

NOW = 1_700_000_000
WINDOW_S = 120
INBOUND_PREFILL_SECONDS = 5  # PREFILL_BUCKETS_PER_STEP in proxy/vmess_inbound.py
DEFAULT_STEP_HASHES = 8_192
PROBES = 200
AEAD_PROBES = 20


def load_module(path: str | None) -> ModuleType:
    if path is None:
        return current_validator
    spec = importlib.util.spec_from_file_location("bench_validator_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def make_users(n: int) -> list[VmessUser]:
    gen = random.Random(n)
    users = [
        VmessUser(id=gen.randbytes(16), alter_id=4 if i % 2 == 0 else 0, email=f"u{i}")
        for i in range(n)
    ]
    for u in users:
        u.all_ids  # noqa: B018 - derive alter IDs outside the timed part
    return users


def build(mod: ModuleType, users: list[VmessUser]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    v = mod.UserValidator(float(NOW), os.urandom)
    for u in users:
        v.add_user(u)
    return v, (time.perf_counter() - t0) * 1e3


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t0) * 1e3, out


def warm_loop(step: Any) -> tuple[float, int, float]:
    """Call ``step()`` until it returns 0: (total ms, steps, max step CPU ms).

    The longest step is taken in thread CPU time: on a busy machine wall time
    also counts preemption by other processes.
    """
    total, steps, worst = 0.0, 0, 0.0
    while True:
        cpu0 = time.thread_time()
        ms, left = timed(step)
        worst = max(worst, (time.thread_time() - cpu0) * 1e3)
        total += ms
        steps += 1
        if not left:
            return total, steps, worst


def probes_hit(users: list[VmessUser], count: int, seed: int) -> list[tuple[bytes, VmessUser]]:
    gen = random.Random(seed)
    out = []
    for _ in range(count):
        u = gen.choice(users)
        id16 = gen.choice(u.all_ids)
        ts = NOW + gen.randint(-WINDOW_S, WINDOW_S)
        out.append((legacy_auth(id16, ts), u))
    return out


def fmt(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def run(mod: ModuleType, n: int, step_hashes: int, memory: bool) -> dict[str, str]:
    users = make_users(n)
    r: dict[str, str] = {"users": str(n)}

    # Cold: refused probes straight after startup.
    v, startup = build(mod, users)
    r["startup"] = fmt(startup)
    cold = [timed(v.lookup_legacy, os.urandom(16))[0] for _ in range(2)]
    r["cold_miss_1st"] = fmt(cold[0])
    r["cold_miss_2nd"] = fmt(cold[1])
    del v

    # Warm-up as the inbound does it today.
    v, _ = build(mod, users)
    total, steps, worst = warm_loop(lambda: v.prefill(INBOUND_PREFILL_SECONDS))
    r["warm_inbound"] = f"{fmt(total)} / {steps} steps / max cpu {fmt(worst)}"
    if hasattr(v, "prefill_budget"):
        v2, _ = build(mod, users)
        total, steps, worst = warm_loop(lambda: v2.prefill_budget(step_hashes))
        r["warm_budget"] = f"{fmt(total)} / {steps} steps / max cpu {fmt(worst)}"
        del v2

    misses = [timed(v.lookup_legacy, os.urandom(16))[0] for _ in range(PROBES)]
    r["miss"] = f"{fmt(statistics.median(misses))} (max {fmt(max(misses))})"
    hit_ms = []
    for auth, user in probes_hit(users, PROBES, seed=n):
        ms, match = timed(v.lookup_legacy, auth)
        assert match is not None and match.user is user, "hit not found"
        hit_ms.append(ms)
    r["hit"] = f"{fmt(statistics.median(hit_ms))} (max {fmt(max(hit_ms))})"
    aead = [timed(v.match_aead, os.urandom(16), float(NOW))[0] for _ in range(AEAD_PROBES)]
    r["aead_miss"] = fmt(statistics.median(aead))
    upd, _ = timed(v.update, float(NOW + 10))
    if hasattr(v, "prefill_budget"):
        total, steps, worst = warm_loop(lambda: v.prefill_budget(step_hashes))
    else:
        total, steps, worst = warm_loop(lambda: v.prefill(INBOUND_PREFILL_SECONDS))
    r["update"] = f"{fmt(upd)} + rewarm {fmt(total)} (max step cpu {fmt(worst)})"
    del v

    if memory:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        v, _ = build(mod, users)
        after_start = tracemalloc.get_traced_memory()[0]
        while v.prefill(1_000):
            pass
        after_warm = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        r["mem_MB"] = (
            f"start {(after_start - base) / 1e6:.1f}, warm {(after_warm - base) / 1e6:.1f}"
        )
        del v
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", default="100,1000,5000")
    ap.add_argument("--validator", help="path of another validator.py to measure")
    ap.add_argument("--step-hashes", type=int, default=DEFAULT_STEP_HASHES)
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    mod = load_module(args.validator)
    print(f"validator: {mod.__file__}", file=sys.stderr)
    for n in (int(x) for x in args.users.split(",")):
        row = run(mod, n, args.step_hashes, not args.no_memory)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
