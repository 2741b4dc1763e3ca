"""Micro-benchmark: seal and open 64 MiB of VMess body (spec vmess.md section 8).

Usage: python bench/micro_vmess_body.py [security] [option] [MiB]
Defaults: aes-128-gcm, 0x0D, 64 MiB.  Feeds 64 KiB at a time, like a socket.
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
READ_SIZE = 64 * 1024


def main() -> None:
    sec = NAMES[sys.argv[1]] if len(sys.argv) > 1 else SecurityType.AES_128_GCM
    opt = int(sys.argv[2], 0) if len(sys.argv) > 2 else 0x0D
    mib = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    key, iv = os.urandom(16), os.urandom(16)
    w = BodyWriter(sec, opt, key, iv, rng=os.urandom)
    r = BodyReader(sec, opt, key, iv)
    block = os.urandom(READ_SIZE)
    n = mib * 1024 * 1024 // READ_SIZE
    t0 = time.perf_counter()
    wire = [w.seal(block) for _ in range(n)]
    t1 = time.perf_counter()
    total = 0
    for piece in wire:
        total += len(r.feed(piece))
    t2 = time.perf_counter()
    assert total == n * READ_SIZE
    mb = n * READ_SIZE / 1e6
    print(
        f"{sec.name} opt=0x{opt:02x}: seal {mb / (t1 - t0):.0f} MB/s, "
        f"open {mb / (t2 - t1):.0f} MB/s ({mib} MiB)"
    )


if __name__ == "__main__":
    main()
