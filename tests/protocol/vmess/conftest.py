"""Fixtures of the VMess core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from v2py.protocol.vmess import body as body_mod


@pytest.fixture(params=["in-place", "accelerated"])
def body_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test on the Python body loops and on the C accelerator (if built): both
    must give the very same bytes. Use with ``pytest.mark.usefixtures("body_path")``."""
    if request.param == "accelerated" and not body_mod.accelerator_available():
        pytest.skip("v2py._chunkcrypt is not built here")
    previous = body_mod.use_accelerator(request.param == "accelerated")
    yield request.param
    body_mod.use_accelerator(previous)
