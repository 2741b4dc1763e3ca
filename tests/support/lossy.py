"""A seeded lossy datagram link driven by explicit time (loss, duplication, reorder, delay)."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field


@dataclass
class LossyLink:
    """One direction of a datagram path.

    ``send(data, now)`` may drop, duplicate or delay ``data``; ``deliver(now)``
    returns what has arrived by ``now`` in arrival order. ``reorder`` is the
    fraction of datagrams that get ``reorder_delay`` extra latency, so later ones
    overtake them. Everything is decided by ``random.Random(seed)``.
    """

    seed: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    reorder_delay: float = 0.03
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    _rng: random.Random = field(init=False)
    _queue: list[tuple[float, int, bytes]] = field(init=False, default_factory=list)
    _seq: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def send(self, data: bytes, now: float) -> None:
        self.sent += 1
        rng = self._rng
        if rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 1
        if rng.random() < self.duplicate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            at = now + self.delay
            if rng.random() < self.reorder:
                at += self.reorder_delay
            self._seq += 1
            heapq.heappush(self._queue, (at, self._seq, data))

    def deliver(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        q = self._queue
        while q and q[0][0] <= now + 1e-9:
            out.append(heapq.heappop(q)[2])
        return out

    def next_arrival(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)
