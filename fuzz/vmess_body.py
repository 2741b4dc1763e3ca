"""Fuzz target: the VMess chunk stream (``v2py.protocol.vmess.body``; v2ray-core
``common/crypto/{auth,chunk}.go``, ``proxy/vmess/encoding/{client,server}.go``).

Random bytes almost never pass a chunk's AEAD tag or FNV checksum, so the target is
structure-aware: it seals fuzzer-chosen payloads with a real :class:`BodyWriter`
(fuzzer-chosen security, option bits, key and IV, stream or packet mode, end marker
or not), flips fuzzer-chosen bytes of the result, cuts it into fuzzer-chosen reads
and feeds them to a :class:`BodyReader`; or feeds the raw fuzzer bytes.

Invariants:

* only :class:`~v2py.errors.VmessError` escapes ``feed`` / ``feed_packets``;
* unmodified input opens to exactly the payloads sealed (and ends iff the end marker
  was sent), whatever the read boundaries;
* differential: every body implementation this process has (the optional C
  accelerator, ``cryptography``'s in-place calls, the generic loop) seals the same
  bytes and opens any input to the same plaintext, end and error;
* a reader never returns more plaintext than it was given bytes.

Run by hand: ``python -m fuzz.vmess_body -max_total_time=300``.
"""

from __future__ import annotations

import itertools

from fuzz._harness import FuzzInput, bounded, check, instrumented, main, split

with instrumented("v2py"):
    from v2py.errors import VmessError
    from v2py.protocol.vmess.body import (
        BodyImpl,
        BodyReader,
        BodyWriter,
        accelerator_available,
    )
    from v2py.protocol.vmess.constants import RequestOption, SecurityType

SECURITIES = (
    SecurityType.AES_128_GCM,
    SecurityType.CHACHA20_POLY1305,
    SecurityType.LEGACY,
    SecurityType.NONE,
    SecurityType.UNKNOWN,
)
IMPLS = tuple(impl for impl in BodyImpl if impl is not BodyImpl.C_BATCH or accelerator_available())
MAX_PAYLOADS = 8
MAX_FLIPS = 4


def _option(bits: int) -> int:
    option = bits & 0x0F
    if option & RequestOption.GLOBAL_PADDING and not option & RequestOption.CHUNK_MASKING:
        option &= ~RequestOption.GLOBAL_PADDING  # refused before a body exists
    return option


def _pad_rng() -> object:
    counter = itertools.count()
    return lambda n: bytes((next(counter) & 0xFF) for _ in range(n))


def _seal(
    impl: BodyImpl,
    security: int,
    option: int,
    key: bytes,
    iv: bytes,
    packet: bool,
    payloads: list[bytes],
    end: bool,
) -> tuple[bytes, list[bytes]]:
    """The sealed body and the payloads it carries (datagrams that do not fit 4.34's
    chunk buffer are dropped, as 4.34 drops them)."""
    writer = BodyWriter(security, option, key, iv, packet=packet, rng=_pad_rng(), impl=impl)  # type: ignore[arg-type]
    out = bytearray()
    kept = []
    for payload in payloads:
        if packet:
            if writer.packet_fits(len(payload)):
                out += writer.seal_packet(payload)
                kept.append(payload)
        else:
            out += writer.seal(payload)
            kept.append(payload)
    if end:
        out += writer.seal_end()
    return bytes(out), kept


def _open(
    impl: BodyImpl,
    security: int,
    option: int,
    key: bytes,
    iv: bytes,
    packet: bool,
    reads: list[bytes],
) -> tuple[list[bytes], bool, str | None]:
    reader = BodyReader(security, option, key, iv, packet=packet, impl=impl)
    out: list[bytes] = []
    try:
        for data in reads:
            if packet:
                out.extend(reader.feed_packets(data))
            else:
                plain = reader.feed(data)
                if plain:
                    out.append(bytes(plain))
    except VmessError as exc:
        return out, reader.ended, str(exc)
    return out, reader.ended, None


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    flags = inp.u8()
    security = int(inp.choice(SECURITIES))
    option = _option(inp.u8())
    packet = bool(flags & 1)
    key = inp.take(16).ljust(16, b"\0")
    iv = inp.take(16).ljust(16, b"\0")
    raw = bool(flags & 2)
    end = bool(flags & 4)
    if raw:
        wire = inp.rest()
        payloads: list[bytes] = []
    else:
        payloads = [inp.take(inp.u16() % 5000) for _ in range(inp.u8() % (MAX_PAYLOADS + 1))]
        if packet:
            # An empty datagram seals to the end marker's size (4.34 alike): not data.
            payloads = [p for p in payloads if p]
        sealed = {
            impl: _seal(impl, security, option, key, iv, packet, payloads, end) for impl in IMPLS
        }
        wire, payloads = sealed[IMPLS[0]]
        for impl, (other, _) in sealed.items():
            check(other == wire, f"{impl.name} seals differently from {IMPLS[0].name}")
        flips = bytearray(wire)
        for _ in range(inp.u8() % (MAX_FLIPS + 1)):
            pos = inp.u16()
            if flips:
                flips[pos % len(flips)] ^= inp.u8() or 1
        mutated = bytes(flips) != wire
        wire = bytes(flips)
    reads = split(wire, inp)
    results = {impl: _open(impl, security, option, key, iv, packet, reads) for impl in IMPLS}
    chunks, ended, error = results[IMPLS[0]]
    for impl, result in results.items():
        check(
            result == (chunks, ended, error),
            f"{impl.name} opens differently: {result!r} vs {(chunks, ended, error)!r}",
        )
    bounded(sum(map(len, chunks)), len(wire), factor=1, slack=0, what="plaintext")
    if raw or mutated:
        return
    check(error is None, f"unmodified body refused: {error}")
    if packet:
        check(b"".join(chunks) == b"".join(payloads), "datagrams differ")
    else:
        check(b"".join(chunks) == b"".join(payloads), "stream plaintext differs")


def seeds() -> list[bytes]:
    out = []
    for flags, security_index, option in (
        (0, 0, 0x0D),
        (4, 1, 0x05),
        (4, 2, 0x01),
        (0, 3, 0x01),
        (1, 0, 0x0D),
        (5, 3, 0x01),
        (4, 2, 0x00),
        (0, 3, 0x00),
    ):
        body = bytes([flags, security_index, option]) + bytes(range(32))
        body += (
            b"\x02"
            + (100).to_bytes(2, "big")
            + b"a" * 100
            + (3000).to_bytes(2, "big")
            + b"b" * 3000
        )
        body += b"\x00"  # no flips
        out.append(body)
    return out


if __name__ == "__main__":
    main(test_one_input, seeds)
