"""The fast IP literal helpers agree with the standard library's ``ipaddress``."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.common.net import canonical_ip, ip_text, is_ip, normalize_address, pack_ip


def reference(text: str) -> bytes | None:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3.4",
        "255.255.255.255",
        "0.0.0.0",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3",
        "1.2.3.4.5",
        " 1.2.3.4",
        "1.2.3.4 ",
        "+1.2.3.4",
        "1_0.2.3.4",
        "\u0661.2.3.4",
        "",
        "...",
        "1..2.3",
        "::1",
        "[::1]",
        "::ffff:1.2.3.4",
        "2001:db8::",
        "g::1",
        "fe80::1%eth0",
        "example.com",
    ],
)
def test_pack_ip_matches_ipaddress(text: str) -> None:
    assert pack_ip(text) == reference(text)
    assert is_ip(text) == (reference(text) is not None)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=3, max_size=5), st.sampled_from(["", "0", " "]))
def test_dotted_quads_match(octets: list[int], prefix: str) -> None:
    text = ".".join(prefix + str(o) for o in octets)
    assert pack_ip(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16))
def test_ip_text_is_canonical(raw: bytes) -> None:
    assert ip_text(raw) == str(ipaddress.ip_address(raw))
    assert normalize_address(ip_text(raw)) == ip_text(raw)


def test_normalize_address() -> None:
    assert normalize_address("[::1]") == "::1"
    assert normalize_address("0:0::1") == "::1"
    assert normalize_address("example.com") == "example.com"


@pytest.mark.parametrize(
    "text", ["1.2.3.4", "01.2.3.4", "0:0::1", "fe80::1%eth0", "::ffff:1.2.3.4", "x.com", ""]
)
def test_canonical_ip_matches_ipaddress_text(text: str) -> None:
    try:
        expected: str | None = str(ipaddress.ip_address(text))
    except ValueError:
        expected = None
    assert canonical_ip(text) == expected
    assert normalize_address(text) == (expected or text)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="0123456789.x+- \x00\u0661\u00b2", max_size=18))
def test_arbitrary_text_matches_ipaddress(text: str) -> None:
    assert pack_ip(text) == reference(text)
