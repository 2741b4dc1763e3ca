"""Policy levels as 4.34 resolves them (app/policy/manager.go, features/policy)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from v2py.app.policy import PolicyTable, Timeouts


def test_an_unlisted_level_has_the_built_in_defaults_not_level_0s() -> None:
    # 4.34 ForLevel: a level missing from policy.levels is policy.SessionDefault().
    table = PolicyTable({0: Timeouts(handshake=2, conn_idle=30, uplink_only=0, buffer_size=0)})
    assert table.for_level(0).conn_idle == 30
    assert table.for_level(7) == Timeouts()
    assert Timeouts() == Timeouts(
        handshake=60, conn_idle=300, uplink_only=1, downlink_only=1, buffer_size=512 * 1024
    )


def test_meet_takes_the_shorter_timer_and_keeps_the_inbounds_handshake_and_buffer() -> None:
    inbound = Timeouts(handshake=4, conn_idle=30, uplink_only=2, downlink_only=0, buffer_size=1)
    outbound = Timeouts(handshake=9, conn_idle=10, uplink_only=5, downlink_only=3, buffer_size=9)
    assert inbound.meet(outbound) == Timeouts(
        handshake=4, conn_idle=10, uplink_only=2, downlink_only=0, buffer_size=1
    )
    assert inbound.meet(inbound) is inbound


def test_for_levels() -> None:
    short = Timeouts(conn_idle=5)
    table = PolicyTable({0: Timeouts(), 1: short})
    assert table.for_levels(0, 0) is table.for_level(0)
    assert table.for_levels(0, 1).conn_idle == 5
    assert table.for_levels(1, 0).conn_idle == 5
    assert table.for_levels(0, 1) is table.for_levels(0, 1)  # cached
    assert table.for_levels(2, 3) == Timeouts()


_seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)
_timeouts = st.builds(
    Timeouts,
    handshake=_seconds,
    conn_idle=_seconds,
    uplink_only=_seconds,
    downlink_only=_seconds,
    buffer_size=st.integers(min_value=0, max_value=1 << 30),
)


@given(_timeouts, _timeouts)
def test_meet_never_outlasts_either_timer(a: Timeouts, b: Timeouts) -> None:
    met = a.meet(b)
    for name in ("conn_idle", "uplink_only", "downlink_only"):
        assert getattr(met, name) == min(getattr(a, name), getattr(b, name))
    assert (met.handshake, met.buffer_size) == (a.handshake, a.buffer_size)
