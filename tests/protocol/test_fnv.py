"""The fast FNV-1a agrees with the pure reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from v2py.common.fnv import fnv1a32, fnv1a32_py


def test_known_values() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(bytearray(b"a")) == fnv1a32(memoryview(b"xa")[1:]) == 0xE40C292C


@given(st.binary(max_size=4096))
def test_fast_matches_reference(data: bytes) -> None:
    assert fnv1a32(data) == fnv1a32_py(data)
