"""Receive flow control that follows the reader, as quic-go 0.29 does it
(``internal/flowcontrol/base_flow_controller.go``; the numbers are its
``internal/protocol/params.go`` defaults, which v2ray-core 4.34's ``transport/internet/quic``
leaves alone). Pure module: the QUIC transport (``transport/quic.py``) owns one
:class:`ReceiveWindow` per stream and one per connection.

* The credit granted to the peer is an offset, ``limit``: at most ``read + size``, where
  ``read`` counts bytes the application consumed. Bytes received but not read are held,
  so they never exceed ``size`` once the peer respects the limit.
* A new limit is due once a quarter of the window was read since the last one.
* Auto-tuning: when a new limit is issued and the reader got through more than half a
  window in less than ``4 * fraction * rtt`` since the epoch began (``fraction`` being the
  share of the window read in that epoch), ``size`` doubles, up to ``max_size``. A
  stream's window that grows asks its connection's for 1.5 times its size.
"""

from __future__ import annotations

__all__ = [
    "CONNECTION_WINDOW_BYTES",
    "CONNECTION_WINDOW_MULTIPLIER",
    "MAX_CONNECTION_WINDOW_BYTES",
    "MAX_STREAM_WINDOW_BYTES",
    "STREAM_WINDOW_BYTES",
    "ReceiveWindow",
]

#: quic-go ``DefaultInitialMaxStreamData``: a stream's first window.
STREAM_WINDOW_BYTES = 512 * 1024
#: quic-go ``DefaultMaxReceiveStreamFlowControlWindow``.
MAX_STREAM_WINDOW_BYTES = 6 * 1024 * 1024
#: quic-go ``ConnectionFlowControlMultiplier``.
CONNECTION_WINDOW_MULTIPLIER = 1.5
#: quic-go ``DefaultInitialMaxData``: the connection's first window.
CONNECTION_WINDOW_BYTES = int(CONNECTION_WINDOW_MULTIPLIER * STREAM_WINDOW_BYTES)
#: quic-go ``DefaultMaxReceiveConnectionFlowControlWindow``.
MAX_CONNECTION_WINDOW_BYTES = 15 * 1024 * 1024


class ReceiveWindow:
    """One receive window (a stream's or a connection's).

    The owner adds consumed bytes to ``read`` (or raises it to a new total), asks
    :meth:`due`, and when it is, takes the new limit from :meth:`advance` and sends it.
    """

    __slots__ = ("_epoch_read", "_epoch_time", "limit", "max_size", "read", "size")

    def __init__(self, size: int, max_size: int) -> None:
        self.size = size
        self.max_size = max(size, max_size)
        #: The highest offset granted to the peer so far.
        self.limit = size
        #: Bytes consumed by the reader.
        self.read = 0
        self._epoch_time: float | None = None
        self._epoch_read = 0

    def start(self, now: float) -> None:
        """The first bytes were read: auto-tuning's first epoch begins (quic-go starts
        it on the first read, as if a limit had just been sent)."""
        if self._epoch_time is None:
            self._epoch_time = now
            self._epoch_read = self.read

    def due(self) -> bool:
        """Whether a quarter of the window was read since the last limit."""
        return 4 * (self.limit - self.read) <= 3 * self.size

    def advance(self, now: float, rtt: float) -> int:
        """The new limit (``read + size``, after auto-tuning). Call when :meth:`due`.
        ``rtt`` is the smoothed round-trip time, 0 while unknown (no tuning then)."""
        self._tune(now, rtt)
        self.limit = max(self.limit, self.read + self.size)
        return self.limit

    def ensure_size(self, size: int, now: float) -> None:
        """Grow to at least ``size`` (capped), as a connection does for its streams."""
        if size > self.size:
            self.size = min(size, self.max_size)
            self._epoch_time = now
            self._epoch_read = self.read

    def _tune(self, now: float, rtt: float) -> None:
        read_in_epoch = self.read - self._epoch_read
        if self._epoch_time is None:
            self._epoch_time = now
            self._epoch_read = self.read
            return
        if 2 * read_in_epoch <= self.size:
            return  # under half a window read: keep the epoch going
        if rtt <= 0:
            return
        fraction = read_in_epoch / self.size
        if now - self._epoch_time < 4 * fraction * rtt:
            self.size = min(2 * self.size, self.max_size)
        self._epoch_time = now
        self._epoch_read = self.read
