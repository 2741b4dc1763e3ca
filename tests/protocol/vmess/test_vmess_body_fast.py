"""The in-place AEAD body paths match the generic chunk-by-chunk paths byte for byte.

Each test runs twice: on the Python in-place loops and on the optional C
accelerator (``v2py._chunkcrypt``), which must give the very same bytes.

``BodyWriter._seal_aead`` / ``BodyReader._feed_aead`` (encrypt_into / decrypt_into
into one buffer, batched mask words) against ``_append_chunk`` / ``_chunks``, the
reference paths (docs/spec/vmess.md 8.4-8.6).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.vmess.conftest import BodyPaths
from v2py.errors import VmessError
from v2py.protocol.vmess import body as body_mod
from v2py.protocol.vmess.body import BodyImpl, BodyReader, BodyWriter, ShakeMask
from v2py.protocol.vmess.constants import SecurityType

KEY = bytes(range(16))
IV = bytes(range(16, 32))
AEADS = [SecurityType.AES_128_GCM, SecurityType.CHACHA20_POLY1305]
OPTIONS = [0x00, 0x01, 0x05, 0x0D]

pytestmark = [
    pytest.mark.skipif(not body_mod._HAVE_INTO, reason="cryptography without *_into"),
]


def reference_seal(w: BodyWriter, data: bytes) -> bytes:
    """Seal through the generic per-chunk path (with the same rng use per chunk)."""
    out = bytearray()
    step = w._max_payload
    for off in range(0, len(data), step):
        w._append_chunk(out, data[off : off + step])
    return bytes(out)


def exact_rng(seed: int):  # type: ignore[no-untyped-def]
    return random.Random(seed).randbytes


@pytest.mark.parametrize("sec", AEADS)
@pytest.mark.parametrize("opt", OPTIONS)
@pytest.mark.parametrize("size", [1, 1965, 1966, 1967, 20000, 65536, 200000])
def test_seal_matches_reference_framing(
    fast_body: BodyPaths, sec: int, opt: int, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    fast = fast_body.writer(sec, opt, KEY, IV, rng=bytes)  # zero padding bytes
    ref = BodyWriter(sec, opt, KEY, IV, rng=bytes, impl=BodyImpl.GENERIC)
    for _ in range(3):  # counters and mask positions carry over between calls
        assert bytes(fast.seal(data)) == reference_seal(ref, data)
    assert fast.seal_end() == ref.seal_end()


@pytest.mark.parametrize("sec", AEADS)
@pytest.mark.parametrize("opt", OPTIONS)
def test_feed_matches_reference_bytewise_and_whole(
    fast_body: BodyPaths, sec: int, opt: int
) -> None:
    data = random.Random(7).randbytes(30000)
    w = fast_body.writer(sec, opt, KEY, IV, rng=exact_rng(3))
    wire = bytes(w.seal(data)) + bytes(w.seal(b"x")) + w.seal_end() + b"ignored"
    fast = fast_body.reader(sec, opt, KEY, IV)
    ref = BodyReader(sec, opt, KEY, IV, impl=BodyImpl.GENERIC)
    assert fast._fast
    assert fast.feed(wire) == b"".join(ref._chunks(wire))
    assert fast.ended == ref.ended == bool(opt & 1)
    fast = fast_body.reader(sec, opt, KEY, IV)
    got = b"".join(fast.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert got == data + b"x"


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sec=st.sampled_from(AEADS),
    opt=st.sampled_from(OPTIONS),
    pieces=st.lists(st.binary(max_size=5000), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=40000), max_size=12),
)
def test_feed_any_split_matches_reference(
    fast_body: BodyPaths, sec: int, opt: int, pieces: list[bytes], cuts: list[int]
) -> None:
    w = fast_body.writer(sec, opt, KEY, IV, rng=exact_rng(5))
    wire = b"".join(bytes(w.seal(p)) for p in pieces) + w.seal_end()
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    fast = fast_body.reader(sec, opt, KEY, IV)
    ref = BodyReader(sec, opt, KEY, IV, impl=BodyImpl.GENERIC)
    got_fast = []
    got_ref = []
    for a, b in zip(points, points[1:], strict=False):
        got_fast.append(bytes(fast.feed(wire[a:b])))
        got_ref.append(ref.feed(wire[a:b]))
        assert fast.buffered == ref.buffered
    assert got_fast == got_ref
    assert b"".join(got_fast) == b"".join(pieces)
    assert fast.ended == ref.ended


@pytest.mark.parametrize("sec", AEADS)
def test_feed_tampered_chunk_raises(fast_body: BodyPaths, sec: int) -> None:
    w = fast_body.writer(sec, 0x0D, KEY, IV, rng=exact_rng(1))
    wire = bytearray(w.seal(bytes(5000)))
    wire[3000] ^= 1
    r = fast_body.reader(sec, 0x0D, KEY, IV)
    with pytest.raises(VmessError):
        r.feed(bytes(wire))


def test_feed_undersized_chunk_raises(fast_body: BodyPaths) -> None:
    r = fast_body.reader(SecurityType.AES_128_GCM, 0x01, KEY, IV)
    with pytest.raises(VmessError):
        r.feed(b"\x00\x05hello")


def test_mask_peek_skip_matches_next(fast_body: BodyPaths) -> None:
    a, b = ShakeMask(IV), ShakeMask(IV)
    seen: list[int] = []
    for count in (1, 7, 600, 3, 2000):
        words = a.peek(count)
        assert words == a.peek(count)
        a.skip(count // 2)
        seen += words[: count // 2]
    assert seen == [b.next() for _ in range(len(seen))]
    assert a.next() == b.next()


@pytest.mark.parametrize("sec", AEADS)
@pytest.mark.parametrize("opt", OPTIONS)
def test_accelerated_writer_equals_python_writer_byte_for_byte(sec: int, opt: int) -> None:
    """Same key, IV and rng: the C path and the Python path put the same bytes on the
    wire, end marker included."""
    if not body_mod.accelerator_available():
        pytest.skip("v2py._chunkcrypt is not built here")
    data = random.Random(11).randbytes(70000)
    fast = BodyWriter(sec, opt, KEY, IV, rng=exact_rng(5), impl=BodyImpl.C_BATCH)
    slow = BodyWriter(sec, opt, KEY, IV, rng=exact_rng(5), impl=BodyImpl.IN_PLACE)
    assert fast._accel is not None and slow._accel is None
    for piece in (data, data[:1], data[:2031]):
        assert bytes(fast.seal(piece)) == bytes(slow.seal(piece))
    assert fast.seal_end() == slow.seal_end()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    sec=st.sampled_from(AEADS),
    opt=st.sampled_from(OPTIONS),
    garbage=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=6),
)
def test_garbage_input_raises_vmess_error_or_waits(
    fast_body: BodyPaths, sec: int, opt: int, garbage: list[bytes]
) -> None:
    """Random bytes (a prober, a corrupted stream) never crash either reader path: each
    feed returns (usually nothing) or raises VmessError."""
    r = fast_body.reader(sec, opt, KEY, IV)
    for piece in garbage:
        try:
            r.feed(piece)
        except VmessError:
            return


def test_uninitialised_context_is_refused() -> None:
    if not body_mod.accelerator_available():
        pytest.skip("v2py._chunkcrypt is not built here")
    from v2py._chunkcrypt import Aead

    ctx = Aead.__new__(Aead)
    with pytest.raises(ValueError):
        ctx.seal(b"x", 10, bytes(10), 0, None, False, bytes)
    with pytest.raises(ValueError):
        ctx.open(b"x", 0, bytearray(10), 0, bytes(10), 0, None, False)
