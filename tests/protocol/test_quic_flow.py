"""ReceiveWindow: credit follows what was read (quic-go 0.29's flow controller)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.quic_flow import (
    CONNECTION_WINDOW_BYTES,
    MAX_CONNECTION_WINDOW_BYTES,
    MAX_STREAM_WINDOW_BYTES,
    STREAM_WINDOW_BYTES,
    ReceiveWindow,
)

KIB = 1024


def test_quic_go_numbers() -> None:
    assert STREAM_WINDOW_BYTES == 512 * KIB
    assert CONNECTION_WINDOW_BYTES == 768 * KIB
    assert MAX_STREAM_WINDOW_BYTES == 6 * KIB * KIB
    assert MAX_CONNECTION_WINDOW_BYTES == 15 * KIB * KIB


def test_no_credit_without_reading() -> None:
    window = ReceiveWindow(512 * KIB, 6 * KIB * KIB)
    assert window.limit == 512 * KIB
    assert not window.due()


def test_update_after_a_quarter_is_read() -> None:
    window = ReceiveWindow(512 * KIB, 6 * KIB * KIB)
    window.start(0.0)
    window.read = 128 * KIB - 1
    assert not window.due()
    window.read += 1
    assert window.due()
    assert window.advance(0.001, rtt=0.0) == 640 * KIB
    assert not window.due()


def test_fast_reader_doubles_the_window_up_to_the_maximum() -> None:
    window = ReceiveWindow(512 * KIB, 2 * KIB * KIB)
    window.start(0.0)
    now = 0.0
    for expected in (1 * KIB * KIB, 2 * KIB * KIB, 2 * KIB * KIB):
        window.read = window.limit  # the whole window read within one RTT
        now += 0.010
        window.advance(now, rtt=0.050)
        assert window.size == expected
        assert window.limit == window.read + window.size


def test_slow_reader_keeps_the_window() -> None:
    window = ReceiveWindow(512 * KIB, 6 * KIB * KIB)
    window.start(0.0)
    window.read = window.limit
    window.advance(10.0, rtt=0.050)  # ten seconds for one window: no need to grow
    assert window.size == 512 * KIB


def test_unknown_rtt_never_tunes() -> None:
    window = ReceiveWindow(512 * KIB, 6 * KIB * KIB)
    window.start(0.0)
    window.read = window.limit
    window.advance(0.0, rtt=0.0)
    assert window.size == 512 * KIB


def test_ensure_size_is_capped() -> None:
    window = ReceiveWindow(768 * KIB, 15 * KIB * KIB)
    window.ensure_size(9 * KIB * KIB, 1.0)
    assert window.size == 9 * KIB * KIB
    window.ensure_size(100 * KIB * KIB, 2.0)
    assert window.size == 15 * KIB * KIB
    window.ensure_size(KIB, 3.0)
    assert window.size == 15 * KIB * KIB


@given(
    st.lists(
        st.tuples(st.integers(0, 300 * KIB), st.floats(0, 0.1), st.floats(0, 0.2)),
        max_size=60,
    )
)
def test_limit_only_grows_and_never_exceeds_read_plus_size(
    steps: list[tuple[int, float, float]],
) -> None:
    """Whatever the reads, delays and RTTs: the granted limit is monotonic, and what the
    peer may have in flight past ``read`` is at most the (capped) window."""
    window = ReceiveWindow(512 * KIB, 6 * KIB * KIB)
    now = 0.0
    window.start(now)
    for size, delay, rtt in steps:
        now += delay
        # the peer never sends past the limit, so the reader never reads past it
        window.read = min(window.limit, window.read + size)
        before = window.limit
        if window.due():
            window.advance(now, rtt)
        assert window.limit >= before
        assert window.limit - window.read <= window.size <= 6 * KIB * KIB
