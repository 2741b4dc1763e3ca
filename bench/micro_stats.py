"""Micro-benchmark: what traffic counting adds per batch (app/stats.py).

Usage: python bench/micro_stats.py [KiB per batch] [chain CPU s/GB]
Defaults: 64 KiB (one socket read, READ_CHUNK_BYTES), 2.0 CPU s/GB (what
``python -m bench.stats`` measured for v2py's vmess-aead-gcm chain, client +
server). Timed in process CPU seconds, best of 5 passes of 200,000 batches.

With every counter on, a batch on the server of that chain passes three counting
layers each way (the inbound's connection, the user's link, the freedom outbound's
link) and one more on the client (its inbound and outbound: two), so the cost per
batch moved is about 5 layer passes. The printed share compares that with what the
whole chain spends per batch.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from v2py.app.stats import Counter, CountingStream, _CountingTarget
from v2py.transport.stream import Stream

BATCHES = 200_000
PASSES = 5
LAYERS_PER_BATCH = 5


class _Sink:
    """A push target / stream end that does nothing (the cost of the layer alone)."""

    def pushed_data(self, data: bytes | bytearray) -> None:
        pass

    def pushed_eof(self) -> None:
        pass

    def pushed_error(self, exc: BaseException) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    async def read(self, max_bytes: int = 0) -> bytes:
        return _BATCH


_BATCH = b""


def _best(run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(PASSES):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best / BATCHES * 1e9  # ns per batch


def _drive(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine that never suspends, without an event loop."""
    coro = coro_fn()
    with contextlib.suppress(StopIteration):
        coro.send(None)


def main() -> None:
    global _BATCH
    kib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    cpu_s_per_gb = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    _BATCH = bytes(kib * 1024)
    batch = _BATCH
    sink = _Sink()
    counter = Counter("user>>>bench>>>traffic>>>uplink")
    counted = _CountingTarget(counter, sink)
    stream = CountingStream(cast(Stream, sink), read=counter, write=Counter("down"))

    def push_plain() -> None:
        push = sink.pushed_data
        for _ in range(BATCHES):
            push(batch)

    def push_counted() -> None:
        push = counted.pushed_data
        for _ in range(BATCHES):
            push(batch)

    def write_plain() -> None:
        write = sink.write
        for _ in range(BATCHES):
            write(batch)

    def write_counted() -> None:
        write = stream.write
        for _ in range(BATCHES):
            write(batch)

    async def read_plain() -> None:
        read = sink.read
        for _ in range(BATCHES):
            await read()

    async def read_counted() -> None:
        read = stream.read
        for _ in range(BATCHES):
            await read()

    push_ns = _best(push_counted) - _best(push_plain)
    write_ns = _best(write_counted) - _best(write_plain)
    read_ns = _best(lambda: _drive(read_counted)) - _best(lambda: _drive(read_plain))
    layer_ns = max(push_ns, write_ns, read_ns)
    chain_ns = cpu_s_per_gb * kib * 1024  # s/GB * bytes = ns per batch (1e9 cancels)
    share = LAYERS_PER_BATCH * layer_ns / chain_ns
    print(
        f"counting layer, {kib} KiB batches: push +{push_ns:.0f} ns, write +{write_ns:.0f} "
        f"ns, read +{read_ns:.0f} ns per batch; the chain spends {chain_ns / 1e3:.0f} us "
        f"CPU per batch ({cpu_s_per_gb} CPU s/GB): {LAYERS_PER_BATCH} layers = "
        f"{100 * share:.2f}% of it"
    )


if __name__ == "__main__":
    main()
