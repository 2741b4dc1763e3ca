"""``v2py tlsping``'s reading of the certificates a TLS 1.2 server sends in the clear
(the interop test compares the whole command with 4.34's ``v2ctl tlsping``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from v2py.tlsping_cli import certificates_in_flight


def _records(flight: bytes, cuts: list[int]) -> bytes:
    out = b""
    start = 0
    for end in [*sorted(set(cuts)), len(flight)]:
        if end <= start:
            continue
        out += b"\x16\x03\x03" + (end - start).to_bytes(2, "big") + flight[start:end]
        start = end
    return out


def _flight(certs: list[bytes]) -> bytes:
    body = b"".join(len(c).to_bytes(3, "big") + c for c in certs)
    message = bytes([11]) + (len(body) + 3).to_bytes(3, "big") + len(body).to_bytes(3, "big")
    hello = bytes([2]) + (4).to_bytes(3, "big") + b"\x03\x03\x00\x00"
    return hello + message + body


@given(
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=200), max_size=6),
)
def test_certificates_read_across_any_record_split(certs: list[bytes], cuts: list[int]) -> None:
    records = _records(_flight(certs), cuts)
    assert certificates_in_flight(records + b"\x14\x03\x03\x00\x01\x01") == certs


def test_cut_short_or_no_handshake_is_no_certificates() -> None:
    records = _records(_flight([b"\x30\x01A"]), [7])
    assert certificates_in_flight(records[:-1]) == []
    assert certificates_in_flight(b"\x15\x03\x03\x00\x02\x02\x28") == []


@given(st.binary(max_size=300))
def test_any_bytes_give_a_list(data: bytes) -> None:
    assert isinstance(certificates_in_flight(data), list)
