"""mKCP round-trip estimator (docs/spec/mkcp.md section 9; v2ray-core kcp/connection.go).

Integer milliseconds throughout, truncating like V2Ray. Pure module.
"""

from __future__ import annotations

__all__ = ["INITIAL_RTO_MS", "MAX_RTO_MS", "RoundTripInfo"]

INITIAL_RTO_MS = 100
MAX_RTO_MS = 10000
#: A local sample newer than this beats the peer's advertised RTO.
PEER_RTO_HOLD_MS = 3000
#: Samples at or above this are treated as wrapped garbage.
MAX_SAMPLE_MS = 0x7FFFFFFF


class RoundTripInfo:
    """Smoothed RTT, variation and the derived RTO (spec section 9)."""

    def __init__(self, min_rtt_ms: int) -> None:
        self.rto = INITIAL_RTO_MS
        self.srtt = 0
        self.variation = 0
        self.min_rtt = min_rtt_ms
        self._last_update = 0

    def update(self, rtt: int, current: int) -> None:
        """Feed one RTT sample ``rtt`` (ms) taken at ``current`` (ms)."""
        if rtt >= MAX_SAMPLE_MS:
            return
        if self.srtt == 0:
            self.srtt = rtt
            self.variation = rtt // 2
        else:
            delta = abs(rtt - self.srtt)
            self.variation = (3 * self.variation + delta) // 4
            self.srtt = (7 * self.srtt + rtt) // 8
            if self.srtt < self.min_rtt:
                self.srtt = self.min_rtt
        four_var = 4 * self.variation
        rto = self.srtt + (four_var if self.min_rtt < four_var else self.variation)
        rto = min(rto, MAX_RTO_MS)
        self.rto = rto * 5 // 4
        self._last_update = current

    def update_peer_rto(self, rto: int, current: int) -> None:
        """Adopt the peer's RTO from PING/TERMINATE unless a local sample is recent."""
        if current - self._last_update < PEER_RTO_HOLD_MS:
            return
        self.rto = rto
        self._last_update = current
