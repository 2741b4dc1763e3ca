"""Routing ``attrs`` expressions (protocol/attrs.py) and the attributes the HTTP inbound
gives a plain request (protocol/http_proxy.py ``ForwardPlan.attributes``)."""

from __future__ import annotations

import pytest

from v2py.protocol.attrs import compile_attrs
from v2py.protocol.http_proxy import make_proxy_request, plan_forward_request

ATTRS = {":method": "GET", ":path": "/api/v1", "user-agent": "", "x-a": "b,c"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("attrs[':method'] == 'GET'", True),
        ("attrs[':method'] != 'GET'", False),
        ("attrs[':path'].startswith('/api/') and attrs['user-agent'] == ''", True),
        ("not attrs[':path'].endswith('/v1')", False),
        ("'x-a' in attrs", True),
        ("'x-b' not in attrs", True),
        ("attrs['x-b'] == 'z'", False),  # a missing key: an error, not satisfied
        ("attrs['x-b'] == 'z' or True", False),  # the error ends the whole expression
        ("True or attrs['x-b'] == 'z'", True),  # short-circuit: never evaluated
        ("attrs.get('x-b', 'none') == 'none'", True),
        ("attrs['x-a'].split(',') == ['b', 'c']", True),
        ("len(attrs) == 4", True),
        ("attrs[':method'] in ('GET', 'HEAD')", True),
        ("attrs[':method'].lower() == 'get'", True),
        ("attrs[':path'] < 1", False),  # comparing str with int: an error
        ("attrs[':path'][0] == '/'", True),
        ("attrs[':path'].find('v1')", True),  # 5: truthy
        ("attrs[':path'].count('z')", False),
        ("None", False),
        ("attrs", True),
    ],
)
def test_expressions(code: str, expected: bool) -> None:
    assert compile_attrs(code).matches(ATTRS) is expected


def test_len_of_a_string_counts_utf8_bytes_as_starlark() -> None:
    attrs = {"x-name": "café", "x-raw": "\udce9"}  # a lone byte kept as a surrogate escape
    assert compile_attrs("len(attrs['x-name']) == 5").matches(attrs) is True
    assert compile_attrs("len(attrs['x-raw']) == 1").matches(attrs) is True
    assert compile_attrs("len(['a', 'bb']) == 2").matches(attrs) is True


def test_sessions_without_attributes_never_match() -> None:
    assert compile_attrs("True").matches(None) is False
    assert compile_attrs("True").matches({}) is True


@pytest.mark.parametrize(
    "code",
    [
        "attrs.__class__",
        "attrs.get.__self__",
        "[x for x in attrs]",
        "lambda: 1",
        "__import__('os')",
        "attrs[':path'] is None",
        "1 < 2 < 3",
        "b'x' in attrs",
        "f'{attrs}'",
        "attrs.get(key='x')",
        "len(*attrs)",
        "attrs[':path'][::-1]",
        "x := 1",
        "'a' * 10**9",
    ],
)
def test_outside_the_subset_is_refused(code: str) -> None:
    with pytest.raises(ValueError):
        compile_attrs(code)


def test_plain_request_attributes_as_4_34() -> None:
    request = make_proxy_request(
        "post",
        "http://h.test/a%20b/c?q=1",
        "HTTP/1.1",
        [
            ("Host", "other.test"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
            ("Connection", "X-Gone, keep-alive"),
            ("X-Gone", "y"),
            ("Proxy-Connection", "keep-alive"),
            ("Keep-Alive", "5"),
            ("Pragma", "no-cache"),
        ],
    )
    assert plan_forward_request(request, chunked=False, length=0).attributes == {
        ":method": "POST",
        ":path": "/a b/c",
        "x-multi": "1",  # the first value; X-Gone and Keep-Alive went with Connection
        "pragma": "no-cache",
        "cache-control": "no-cache",
        "user-agent": "",
    }


def test_non_ascii_header_values_compare_and_count_as_starlark_bytes() -> None:
    """4.34 hands Starlark the header's bytes: a UTF-8 literal equals them and ``len``
    counts bytes (v2py's header values are kept as latin-1 text elsewhere)."""
    raw = "café".encode().decode("latin-1")  # how the HTTP parser hands the value on
    request = make_proxy_request("get", "http://h.test/", "HTTP/1.1", [("X-Name", raw)])
    attributes = plan_forward_request(request, chunked=False, length=0).attributes
    assert compile_attrs("attrs['x-name'] == 'café'").matches(attributes) is True
    assert compile_attrs("len(attrs['x-name']) == 5").matches(attributes) is True


@pytest.mark.parametrize(
    ("code", "value", "expected"),
    [
        ("attrs['x'][0] == 'é'[0]", "éa", True),  # a string indexes its UTF-8 bytes
        ("attrs['x'][2] == 'a'", "éa", True),
        ("len(attrs['x'][0]) == 1", "éa", True),
        ("attrs['x'].find('a') == 2", "éa", True),  # byte offsets, as Starlark's
        ("attrs['x'].rfind('a', 0, 3) == 2", "éa", True),
        ("attrs['x'].find('a', None) == 2", "éa", True),
        ("attrs['x'].find('a', '0') == 2", "éa", False),  # Starlark: not an int, an error
        ("attrs['x'][3] == 'a'", "éa", False),  # out of range: an error, not satisfied
        ("attrs['x'][True] == 'a'", "éa", False),
        ("attrs['x'].split(',')[1] == 'b'", "a,b", True),
    ],
)
def test_strings_are_bytes_when_indexed(code: str, value: str, expected: bool) -> None:
    assert compile_attrs(code).matches({"x": value}) is expected


@pytest.mark.parametrize("literal", ["'\\xc3'", "'\\303'", "'a\\x80'"])
def test_high_byte_escapes_are_refused(literal: str) -> None:
    with pytest.raises(ValueError, match="byte escapes"):
        compile_attrs(f"attrs['x'] == {literal}")
    assert compile_attrs("attrs['x'] == '\\x41'").matches({"x": "A"})
