"""One idle timer for every place that ends something after a silence
(relay copies, UDP flows and sources): v2ray-core ``common/signal/timer.go``.

Traffic only stamps a float (``touch``); a single ``call_at`` handle re-arms
itself lazily when it fires early, so a busy connection costs no timer churn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["IdleTimer"]

#: Firing this close to the deadline counts as on time (loop clock granularity).
_SLACK_S = 1e-3


class IdleTimer:
    """Calls ``on_idle`` once ``timeout`` seconds pass without :meth:`touch`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, on_idle: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._on_idle = on_idle
        self._last = loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._handle = self._loop.call_at(self._last + self._timeout, self._check)

    def _check(self) -> None:
        deadline = self._last + self._timeout
        if self._loop.time() >= deadline - _SLACK_S:
            self._handle = None
            self._on_idle()
        else:
            self._handle = self._loop.call_at(deadline, self._check)

    def touch(self) -> None:
        """Traffic: the silence starts again now."""
        self._last = self._loop.time()

    def set_timeout(self, timeout: float) -> None:
        """Change the allowance, counted from now (4.34's ``SetTimeout``)."""
        self._timeout = timeout
        self._last = self._loop.time()
        handle = self._handle
        if handle is not None:
            if handle.when() <= self._last + timeout:
                return  # fires no later than the new deadline and re-arms itself
            handle.cancel()
        self._arm()

    def cancel(self) -> None:
        """Never fire."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
