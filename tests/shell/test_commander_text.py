"""v2ctl's text format: golang/protobuf 1.3 MarshalTextString / UnmarshalText."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.app.commander.proto import log_command_pb2 as logpb
from v2py.app.commander.proto import stats_command_pb2 as pb
from v2py.app.commander.text import TextParseError, marshal_text, unmarshal_text


def test_get_stats_bytes_as_4_34() -> None:
    resp = pb.GetStatsResponse(stat=pb.Stat(name="inbound>>>api>>>traffic>>>uplink", value=401))
    # [verified] bytes from v2ctl against 4.34, minus the newline v2ctl's Println adds
    assert (
        marshal_text(resp)
        == 'stat: <\n  name: "inbound>>>api>>>traffic>>>uplink"\n  value: 401\n>\n'
    )


def test_zero_values_are_omitted_and_empty_is_empty() -> None:
    resp = pb.QueryStatsResponse(stat=[pb.Stat(name="a"), pb.Stat(name="b", value=2)])
    assert marshal_text(resp) == 'stat: <\n  name: "a"\n>\nstat: <\n  name: "b"\n  value: 2\n>\n'
    assert marshal_text(pb.QueryStatsResponse()) == ""
    assert marshal_text(logpb.RestartLoggerResponse()) == ""


def test_non_ascii_bytes_are_octal() -> None:
    resp = pb.GetStatsResponse(stat=pb.Stat(name='测试\n"\\\t\x01'))
    assert marshal_text(resp) == (
        'stat: <\n  name: "\\346\\265\\213\\350\\257\\225\\n\\"\\\\\\t\\001"\n>\n'
    )


def test_sys_stats_flat_in_field_order() -> None:
    resp = pb.SysStatsResponse(NumGoroutine=18, NumGC=1, Alloc=5, Uptime=5)
    assert marshal_text(resp) == "NumGoroutine: 18\nNumGC: 1\nAlloc: 5\nUptime: 5\n"


@pytest.mark.parametrize(
    ("text", "pattern", "reset"),
    [
        ("", "", False),
        ('pattern: "" reset: false', "", False),
        ("pattern: 'user>>>' reset: true", "user>>>", True),
        ('pattern: "a" "b", reset: 1', "ab", True),
        ("reset: t # comment\n", "", True),
        ("reset: True; pattern: 'x\\101'", "xA", True),
    ],
)
def test_parse_query(text: str, pattern: str, reset: bool) -> None:
    req = pb.QueryStatsRequest()
    unmarshal_text(text, req)
    assert (req.pattern, req.reset) == (pattern, reset)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # [verified] wording of v2ctl against 4.34
        ("bogus: 1", 'line 1.0: unknown field name "bogus" in command.QueryStatsRequest'),
        ('pattern: "x', "line 1.9: unmatched quote"),
        ('pattern: "in" pattern: "out"', 'line 1.14: non-repeated field "pattern" was repeated'),
        ("reset: maybe", "line 1.7: invalid bool: maybe"),
        ('pattern "x"', 'line 1.8: expected \':\', found "\\"x\\""'),
        ("pattern: x", "line 1.9: invalid string: x"),
        ("pattern:", "line 1.7: unexpected EOF"),
    ],
)
def test_parse_errors(text: str, error: str) -> None:
    with pytest.raises(TextParseError) as info:
        unmarshal_text(text, pb.QueryStatsRequest())
    assert str(info.value) == error


@given(st.text(max_size=40), st.booleans())
def test_round_trip_through_text(pattern: str, reset: bool) -> None:
    req = pb.QueryStatsRequest(pattern=pattern, reset=reset)
    parsed = pb.QueryStatsRequest()
    unmarshal_text(marshal_text(req), parsed)
    assert parsed == req
