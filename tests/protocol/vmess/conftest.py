"""Fixtures of the VMess core tests."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest

from v2py.protocol.vmess import body as body_mod
from v2py.protocol.vmess.body import BodyImpl, BodyReader, BodyWriter


@dataclass(frozen=True)
class BodyPaths:
    """Writers and readers of one body implementation."""

    impl: BodyImpl
    writer: Any
    reader: Any


def _paths(request: pytest.FixtureRequest) -> BodyPaths:
    impl = BodyImpl(request.param)
    if impl is BodyImpl.C_BATCH and not body_mod.accelerator_available():
        pytest.skip("v2py._chunkcrypt is not built here")
    return BodyPaths(
        impl=impl,
        writer=functools.partial(BodyWriter, impl=impl),
        reader=functools.partial(BodyReader, impl=impl),
    )


@pytest.fixture(params=[impl.value for impl in BodyImpl])
def body(request: pytest.FixtureRequest) -> BodyPaths:
    """Runs a test on each body implementation (C batches if built, in place, generic):
    all must give the very same bytes."""
    return _paths(request)


@pytest.fixture(params=[BodyImpl.C_BATCH.value, BodyImpl.IN_PLACE.value])
def fast_body(request: pytest.FixtureRequest) -> BodyPaths:
    """The batch implementations only (compared against ``BodyImpl.GENERIC``)."""
    return _paths(request)
