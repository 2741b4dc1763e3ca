"""``KcpConnection.datagrams_to_send(now, limit)``: a bulk flush handed out in several
turns (``transport/mkcp.py``) sends exactly the bytes, in exactly the order, of one
unlimited call, and the core makes nothing new while some of it is still pending."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.protocol.mkcp.connection import KcpConnection
from v2py.protocol.mkcp.settings import KcpSettings


def _conn(seed: int = 7) -> KcpConnection:
    return KcpConnection(
        0x4321, KcpSettings(), now=0.0, rng=random.Random(seed).randbytes, is_client=True
    )


def _drain(conn: KcpConnection, now: float, limit: int) -> list[bytes]:
    out: list[bytes] = []
    while True:
        batch = conn.datagrams_to_send(now, limit)
        assert len(batch) <= limit
        if not batch:
            return out
        out += batch


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 400_000), limit=st.integers(1, 300))
def test_limited_turns_send_the_same_datagrams_as_one_call(size: int, limit: int) -> None:
    data = random.Random(size).randbytes(size)
    whole, turns = _conn(), _conn()
    whole.send_data(data)
    turns.send_data(data)
    expected = whole.datagrams_to_send(0.0)
    assert _drain(turns, 0.0, limit) == expected
    assert turns.pending_datagrams == 0
    assert turns.statistics().datagrams_sent == whole.statistics().datagrams_sent


def test_pending_output_goes_first_and_blocks_new_work() -> None:
    conn = _conn()
    conn.send_data(bytes(200 * 1350))  # far more segments than one turn
    first = conn.datagrams_to_send(0.0, 10)
    assert len(first) == 10
    pending = conn.pending_datagrams
    assert pending > 0
    # More data and a later clock: nothing new is made until the backlog is out.
    conn.send_data(b"later")
    second = conn.datagrams_to_send(1.0, 10)
    assert len(second) == 10
    assert conn.pending_datagrams == pending - 10
    # Without a limit everything due is made and returned, as before.
    rest = conn.datagrams_to_send(1.0)
    assert len(rest) >= pending - 10
    assert conn.pending_datagrams == 0


def test_no_limit_is_unchanged() -> None:
    a, b = _conn(), _conn()
    for conn in (a, b):
        conn.send_data(b"x" * 5000)
    assert a.datagrams_to_send(0.0) == b.datagrams_to_send(0.0, None)
    assert a.get_timer() == b.get_timer()
