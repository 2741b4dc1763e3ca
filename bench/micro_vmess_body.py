"""Micro-benchmark: seal and open 64 MiB of VMess body (docs/spec/vmess.md section 8).

Usage: python bench/micro_vmess_body.py [security] [option] [MiB] [read KiB]
Defaults: aes-128-gcm, 0x0D, 64 MiB, 64 KiB per call (like one socket read).
Best of 3 passes, timed in process CPU seconds (robust on a shared machine);
sealing discards its output (as a socket write would), opening reads a wire
sealed beforehand.
"""

from __future__ import annotations

import os
import sys
import time

from v2py.protocol.vmess.body import BodyReader, BodyWriter
from v2py.protocol.vmess.constants import SecurityType

NAMES = {
    "aes-128-gcm": SecurityType.AES_128_GCM,
    "chacha20-poly1305": SecurityType.CHACHA20_POLY1305,
    "none": SecurityType.NONE,
    "legacy": SecurityType.LEGACY,
}
PASSES = 3


def main() -> None:
    sec = NAMES[sys.argv[1]] if len(sys.argv) > 1 else SecurityType.AES_128_GCM
    opt = int(sys.argv[2], 0) if len(sys.argv) > 2 else 0x0D
    mib = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    read_size = (int(sys.argv[4]) if len(sys.argv) > 4 else 64) * 1024
    key, iv = os.urandom(16), os.urandom(16)
    block = os.urandom(read_size)
    n = mib * 1024 * 1024 // read_size
    w = BodyWriter(sec, opt, key, iv, rng=os.urandom)
    wire = [w.seal(block) for _ in range(n)]
    seal_s = open_s = float("inf")
    for _ in range(PASSES):
        w = BodyWriter(sec, opt, key, iv, rng=os.urandom)
        seal = w.seal
        t0 = time.process_time()
        for _ in range(n):
            seal(block)
        seal_s = min(seal_s, time.process_time() - t0)
        r = BodyReader(sec, opt, key, iv)
        feed = r.feed
        total = 0
        t0 = time.process_time()
        for piece in wire:
            total += len(feed(piece))
        open_s = min(open_s, time.process_time() - t0)
        assert total == n * read_size
    mb = n * read_size / 1e6
    print(
        f"{sec.name} opt=0x{opt:02x}: seal {mb / seal_s:.0f} MB/s, "
        f"open {mb / open_s:.0f} MB/s ({mib} MiB, {read_size // 1024} KiB per call)"
    )


if __name__ == "__main__":
    main()
