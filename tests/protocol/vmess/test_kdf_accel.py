"""The C KDF (``v2py._chunkcrypt.kdf``) equals the pure-Python nested HMAC (spec 5.1)."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

kdf_mod = importlib.import_module("v2py.protocol.vmess.kdf")
chunkcrypt = pytest.importorskip("v2py._chunkcrypt", reason="C accelerator not built here")

elements = st.binary(min_size=0, max_size=130)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=0, max_size=80), path=st.lists(elements, max_size=4))
def test_c_kdf_equals_python(key: bytes, path: list[bytes]) -> None:
    assert chunkcrypt.kdf(key, *path) == kdf_mod.kdf_python(key, *path)


def test_kdf_uses_the_accelerator_and_falls_back_for_deep_paths() -> None:
    key = bytes(range(16))
    deep = [bytes([i]) for i in range(9)]  # beyond the C path limit of 8
    assert kdf_mod.kdf(key, *deep) == kdf_mod.kdf_python(key, *deep)
    assert kdf_mod.kdf(key, b"AES Auth ID Encryption") == chunkcrypt.kdf(
        key, b"AES Auth ID Encryption"
    )


def test_c_kdf_rejects_oversized_input() -> None:
    with pytest.raises(ValueError):
        chunkcrypt.kdf(b"k", b"x" * 2000)
    with pytest.raises(TypeError):
        chunkcrypt.kdf()
