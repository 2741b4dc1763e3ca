"""Fuzz target: the mKCP packet layer, obfuscation headers and security wrap
(``v2py.protocol.mkcp.packet``; v2ray-core ``transport/internet/headers/*`` and
``transport/internet/kcp/{crypt,xor,cryptreal,io}.go``).

For a fuzzer-chosen header type and security (the simple authenticator, or
``seed`` AES-GCM): arbitrary datagrams go to ``PacketCodec.open``; a fuzzer-chosen
payload is sealed and opened again, also after fuzzer-chosen byte flips.

Invariants: ``open`` never raises and returns ``None`` or at most the datagram's
bytes; ``open(seal(p)) == p``; the XOR chain's two directions are inverse; a flipped
byte in a ``seed`` datagram's sealed part is always refused (GCM).

Run by hand: ``python -m fuzz.mkcp_packets -max_total_time=300``.
"""

from __future__ import annotations

import random

from fuzz._harness import FuzzInput, check, instrumented, main

with instrumented("v2py"):
    from v2py.protocol.mkcp.packet import PacketCodec, xor_backward, xor_forward
    from v2py.protocol.mkcp.settings import HEADER_SIZES, KcpSettings

HEADERS = tuple(sorted(HEADER_SIZES))
SEEDS = (None, "fuzz-seed")


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    header = inp.choice(HEADERS)
    seed = inp.choice(SEEDS)
    rng = random.Random(0)
    codec = PacketCodec(KcpSettings(header_type=header, seed=seed), rng.randbytes)
    datagram = inp.take(inp.u16() % 2048)
    opened = codec.open(datagram)
    check(opened is None or len(opened) <= len(datagram), "open grew the datagram")
    check(xor_backward(xor_forward(datagram)) == datagram, "xor chain not inverse")
    payload = inp.take(inp.u16() % 1500)
    sealed = codec.seal(payload)
    check(
        len(sealed) == codec.header.size + codec.auth.overhead + len(payload) + (12 if seed else 0),
        "sealed size",
    )
    # A sender never seals an empty payload (a segment is 12+ bytes); 4.34 drops a
    # seed datagram with nothing after the nonce and tag (kcp/io.go), as v2py does.
    check(codec.open(sealed) == payload or not payload, "seal/open round trip")
    flipped = bytearray(sealed)
    skip = codec.header.size
    changed = False
    for _ in range(inp.u8() % 4):
        pos = inp.u16()
        if len(flipped) > skip:
            flipped[skip + pos % (len(flipped) - skip)] ^= inp.u8() or 1
            changed = True
    opened = codec.open(bytes(flipped))
    if seed is not None and changed and bytes(flipped) != sealed:
        check(opened is None, "a modified seed datagram was accepted")


def seeds() -> list[bytes]:
    out = []
    for h in range(len(HEADERS)):
        for s in range(len(SEEDS)):
            out.append(
                bytes([h, s])
                + (30).to_bytes(2, "big")
                + bytes(range(30))
                + (5).to_bytes(2, "big")
                + b"hello\x01\x00\x03\x01"
            )
    return out


if __name__ == "__main__":
    main(test_one_input, seeds)
