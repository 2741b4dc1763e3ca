"""UDP datagrams over VMess: one chunk each, dropped exactly where 4.34 drops them
(a chunk over its 2048-byte buffer, padding included: common/crypto/auth.go), without
4.34's follow-on desynchronisation (issue 12, defect 5)."""

from __future__ import annotations

import random

import pytest

from v2py.protocol.vmess.body import BodyReader, BodyWriter, ShakeMask
from v2py.protocol.vmess.constants import SecurityType

KEY = bytes(range(16))
IV = bytes(range(16, 32))


def rng(n: int) -> bytes:
    return random.Random(n).randbytes(n)


@pytest.mark.parametrize(
    "security,option,overhead,padded",
    [
        (SecurityType.AES_128_GCM, 0x0D, 16, True),
        (SecurityType.AES_128_GCM, 0x05, 16, False),
        (SecurityType.CHACHA20_POLY1305, 0x0D, 16, True),
        (SecurityType.LEGACY, 0x05, 4, False),
        (SecurityType.NONE, 0x05, 0, False),
    ],
)
def test_limit_follows_the_padding_of_each_chunk(
    security: int, option: int, overhead: int, padded: bool
) -> None:
    writer = BodyWriter(security, option, KEY, IV, packet=True, rng=rng)
    reader = BodyReader(security, option, KEY, IV, packet=True)
    shadow = ShakeMask(IV)  # the writer's mask stream, to know each chunk's padding
    sent: list[bytes] = []
    wire = bytearray()
    for i in range(200):
        pad = shadow.peek(1)[0] % 64 if padded else 0
        limit = 2048 - 2 - overhead - pad
        size = limit + (1 if i % 3 == 0 else 0) - (i % 5)
        assert writer.packet_fits(size) == (size <= limit)
        if writer.packet_fits(size):
            data = bytes([i % 256]) * size
            wire += writer.seal_packet(data)
            sent.append(data)
            shadow.skip(2 if padded else 1)
    # A dropped datagram leaves the stream in step: every sent one decodes.
    assert reader.feed_packets(bytes(wire)) == sent
    assert len(sent) < 200


def test_gcm_padded_limits() -> None:
    writer = BodyWriter(SecurityType.AES_128_GCM, 0x0D, KEY, IV, packet=True, rng=rng)
    assert writer.packet_fits(1967)  # fits whatever the padding
    assert not writer.packet_fits(2031)  # never fits
