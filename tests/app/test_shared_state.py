"""The cross-worker key table (app/shared_state.py) and the validator over it.

* the table's own semantics with explicit ``now`` (present, expired, refresh, full);
* the validator's AEAD replay filter, session history and taint fuses give the same
  answers over the shared table as over its in-process structures;
* two forked processes contending on one table see each other's keys, and each
  contended key is accepted exactly once (run in a fresh interpreter, so the fork
  happens in a single-threaded process).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest

from v2py.app.shared_state import SharedKeyTable
from v2py.errors import VmessError
from v2py.protocol.vmess import VmessUser
from v2py.protocol.vmess.header import create_auth_id, legacy_auth
from v2py.protocol.vmess.validator import SESSION_LIFETIME_S, UserValidator

#: A multiple of the 120 s replay interval, so that the in-process filter's swaps
#: (counted from its creation) fall on the shared table's periods (counted from 0).
T0 = 1_700_000_040
assert T0 % 120 == 0
FORK_TIMEOUT_S = 60


@pytest.fixture
def table() -> SharedKeyTable:
    t = SharedKeyTable(capacity=1024)
    yield t  # type: ignore[misc]
    t.close()


def key(i: int) -> bytes:
    return random.Random(i).randbytes(16)


def test_add_if_absent_contains_and_expiry(table: SharedKeyTable) -> None:
    k = key(1)
    assert not table.contains(k, 100.0)
    assert table.add_if_absent(k, 200.0, 100.0)
    assert table.contains(k, 199.9)
    assert not table.add_if_absent(k, 300.0, 150.0)  # live: refused, expiry unchanged
    assert not table.contains(k, 200.0)  # expiry <= now is gone
    assert table.add_if_absent(k, 400.0, 200.0)  # expired: recorded again
    assert table.contains(k, 399.0)
    assert table.statistics(250.0).live_entries == 1


def test_add_keeps_the_later_expiry_and_long_keys_are_hashed(table: SharedKeyTable) -> None:
    k = key(2)
    table.add(k, 500.0, 0.0)
    table.add(k, 300.0, 0.0)
    assert table.contains(k, 499.0)
    long_key = b"user-id" * 7
    assert table.add_if_absent(long_key, 10.0, 0.0)
    assert not table.add_if_absent(long_key, 10.0, 0.0)
    assert table.contains(long_key, 5.0) and not table.contains(long_key[:-1], 5.0)


def test_full_window_refuses_and_add_evicts_the_soonest() -> None:
    t = SharedKeyTable(capacity=1, probe=4)  # every key shares one window of 4 slots
    try:
        for i in range(4):
            assert t.add_if_absent(key(i), 100.0 + i, 0.0)
        assert not t.add_if_absent(key(9), 200.0, 0.0)  # full of live entries: refused
        assert t.statistics(0.0).refused_full == 1
        assert all(t.contains(key(i), 0.0) for i in range(4))
        t.add(key(10), 200.0, 0.0)  # a taint must not be lost: the soonest one goes
        assert t.contains(key(10), 0.0) and not t.contains(key(0), 0.0)
        assert t.statistics(0.0).evicted == 1
        assert t.add_if_absent(key(9), 300.0, 101.5)  # key(1) expired at 101: room again
    finally:
        t.close()


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError):
        SharedKeyTable(capacity=0)
    with pytest.raises(ValueError):
        SharedKeyTable(capacity=8, probe=0)


# -- the validator over the table --------------------------------------------------


def _users() -> list[VmessUser]:
    gen = random.Random(5)
    return [VmessUser(gen.randbytes(16), alter_id=2, email=f"u{i}") for i in range(3)]


def _pair(table: SharedKeyTable) -> tuple[UserValidator, UserValidator]:
    local = UserValidator(float(T0), random.Random(1).randbytes)
    shared = UserValidator(float(T0), random.Random(1).randbytes, shared_store=table)
    for v in (local, shared):
        for user in _users():
            v.add_user(user)
    return local, shared


def _aead(v: UserValidator, auth: bytes, now: float) -> str:
    try:
        return "new" if v.match_aead(auth, now) is not None else "none"
    except VmessError as exc:
        assert exc.drain
        return "replay"


def test_aead_replay_matches_the_two_generation_filter(table: SharedKeyTable) -> None:
    cmd = _users()[1].cmd_key
    a = create_auth_id(cmd, T0 + 60, b"aaaa")
    b = create_auth_id(cmd, T0 + 180, b"bbbb")
    e = create_auth_id(cmd, T0 + 120, b"eeee")  # valid from T0 to T0 + 240
    steps = [
        (T0 + 0, e, "new"),
        (T0 + 10, a, "new"),
        (T0 + 100, a, "replay"),
        (T0 + 120, b, "new"),  # first swap
        (T0 + 170, a, "replay"),
        (T0 + 239, e, "replay"),  # refused 239 s after it was first seen
        (T0 + 240, e, "new"),  # second swap: both generations forgot e
        (T0 + 240, e, "replay"),
        (T0 + 300, b, "replay"),
    ]
    local, shared = _pair(table)
    for now, auth, expected in steps:
        assert (_aead(local, auth, now), _aead(shared, auth, now)) == (expected, expected), now


def test_session_history_matches(table: SharedKeyTable) -> None:
    local, shared = _pair(table)
    user = _users()[0]
    k, iv = bytes(range(16)), bytes(range(16, 32))
    for now, expected in [
        (T0, True),
        (T0 + 1, False),
        (T0 + SESSION_LIFETIME_S - 1, False),
        (T0 + SESSION_LIFETIME_S, True),
        (T0 + SESSION_LIFETIME_S + 1, False),
    ]:
        got = (local.check_session(user, k, iv, now), shared.check_session(user, k, iv, now))
        assert got == (expected, expected), now
    other = _users()[1]  # another user with the same key/iv is another session
    assert shared.check_session(other, k, iv, T0 + 1)


def test_taint_burnt_by_one_validator_holds_in_a_sibling(table: SharedKeyTable) -> None:
    _, first = _pair(table)
    _, second = _pair(table)
    user = _users()[2]
    auth = legacy_auth(user.all_ids[1], T0 - 100)
    other = legacy_auth(user.all_ids[2], T0 - 100)
    for v in (first, second):
        v.prefill_budget(10**9)
    first.burn_taint(auth, T0 - 100)
    m, o = second.lookup_legacy(auth), second.lookup_legacy(other)
    assert m is not None and m.tainted
    assert o is not None and not o.tainted
    # The fuse lasts while its second is in the window (the entry itself goes then).
    second.update(T0 + 20)
    m = second.lookup_legacy(auth)
    assert m is not None and m.tainted
    assert table.statistics(T0 + 20).live_entries == 1
    assert table.statistics(T0 + 21).live_entries == 0


def test_replay_seen_by_a_sibling_validator_is_refused(table: SharedKeyTable) -> None:
    _, first = _pair(table)
    _, second = _pair(table)
    auth = create_auth_id(_users()[0].cmd_key, T0, b"zzzz")
    assert _aead(first, auth, T0 + 1) == "new"
    assert _aead(second, auth, T0 + 2) == "replay"


# -- two processes -------------------------------------------------------------------

_CONTEND = textwrap.dedent(
    """
    import json, os, random, sys
    from v2py.app.shared_state import SharedKeyTable

    N = 2000
    table = SharedKeyTable(capacity=1 << 15)
    common = [random.Random(i).randbytes(16) for i in range(N)]
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    for child in range(2):
        pid = os.fork()
        if pid == 0:
            os.read(go_r, 1)
            own = [random.Random(10**6 * (child + 1) + i).randbytes(16) for i in range(N)]
            order = common if child == 0 else common[::-1]
            won = [i for i, k in enumerate(order) if table.add_if_absent(k, 1e12, 0.0)]
            mine = sum(table.add_if_absent(k, 1e12, 0.0) for k in own)
            report = {"child": child, "won": len(won), "own": mine, "pid": os.getpid()}
            os.write(out_w, (json.dumps(report) + "\\n").encode())
            os._exit(0)
        pids.append(pid)
    os.write(go_w, b"xx")
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(out_w)
    reports = [json.loads(line) for line in os.fdopen(out_r).read().splitlines()]
    seen_own = all(
        table.contains(random.Random(10**6 * (c + 1) + i).randbytes(16), 1.0)
        for c in range(2) for i in range(N)
    )
    print(json.dumps({"reports": reports, "seen_own": seen_own,
                      "live": table.statistics(1.0).live_entries}))
    """
)


def test_two_forked_processes_share_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CONTEND],
        capture_output=True,
        text=True,
        timeout=FORK_TIMEOUT_S,
        check=True,
    )
    result = json.loads(proc.stdout)
    reports = result["reports"]
    assert len(reports) == 2 and len({r["pid"] for r in reports}) == 2
    assert all(r["own"] == 2000 for r in reports)
    # Each contended key was accepted by exactly one process.
    assert sum(r["won"] for r in reports) == 2000
    assert result["seen_own"]
    assert result["live"] == 3 * 2000
