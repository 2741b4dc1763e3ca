"""Traffic counters: names, when they exist, query/reset semantics, counting streams."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.app.session import Session
from v2py.app.stats import (
    Counter,
    CountingStream,
    StatsManager,
    StatsPolicy,
    TrafficStats,
    counter_name,
    counting_send,
    wrap,
)
from v2py.config.model import ApiConfig

ALL_ON = StatsPolicy.from_levels({0: (True, True)}, inbound=(True, True), outbound=(True, True))


def test_counter_names_are_4_34s() -> None:
    assert counter_name("user", "Alice@Example.com", "uplink") == (
        "user>>>Alice@Example.com>>>traffic>>>uplink"
    )
    assert counter_name("inbound", "测试", "downlink") == "inbound>>>测试>>>traffic>>>downlink"


def test_counter_set_returns_old_value() -> None:
    c = Counter("x")
    assert c.add(5) == 5
    assert c.set(0) == 5
    assert c.value == 0


def test_query_is_plain_substring_and_reset_returns_old_values() -> None:
    m = StatsManager()
    m.get_or_register("inbound>>>vmess-in>>>traffic>>>uplink").add(3)
    m.get_or_register("inbound>>>vmess-in>>>traffic>>>downlink").add(4)
    m.get_or_register("user>>>a>>>traffic>>>uplink").add(1)
    assert m.query("inbound>>>.*") == []  # no regexes in 4.34
    assert sorted(m.query(">>>vmess-in>>>")) == [
        ("inbound>>>vmess-in>>>traffic>>>downlink", 4),
        ("inbound>>>vmess-in>>>traffic>>>uplink", 3),
    ]
    assert len(m.query("")) == 3
    assert sorted(v for _, v in m.query("", reset=True)) == [1, 3, 4]
    assert all(v == 0 for _, v in m.query(""))
    assert len(m) == 3  # counters are never deleted


def test_no_stats_object_means_no_counters() -> None:
    stats = TrafficStats(None, ALL_ON)
    assert not stats.enabled
    assert stats.inbound_counters("in") == (None, None)
    assert stats.user_counters("a@b", 0) == (None, None)


def test_counters_exist_only_as_the_policy_says() -> None:
    m = StatsManager()
    policy = StatsPolicy.from_levels({0: (True, False), 1: (False, False)}, inbound=(False, True))
    stats = TrafficStats(m, policy)
    up, down = stats.inbound_counters("in")
    assert up is None and down is not None
    assert stats.outbound_counters("out") == (None, None)
    assert stats.inbound_counters("") == (None, None)  # an empty tag never counts
    up, down = stats.user_counters("Bob@X", 0)
    assert up is not None and up.name == "user>>>Bob@X>>>traffic>>>uplink" and down is None
    assert stats.user_counters("c@d", 1) == (None, None)  # level 1: switches off
    assert stats.user_counters("c@d", 7) == (None, None)  # undefined level: off
    assert stats.user_counters("", 0) == (None, None)  # no email, no counter
    assert sorted(c.name for c in m) == [
        "inbound>>>in>>>traffic>>>downlink",
        "user>>>Bob@X>>>traffic>>>uplink",
    ]


def test_user_counters_are_created_once() -> None:
    m = StatsManager()
    stats = TrafficStats(m, ALL_ON)
    a = stats.user_counters("a", 0)
    assert stats.user_counters("a", 0) == a
    assert len(m) == 2


class _Pipe:
    """A minimal in-memory Stream: reads from a queue, records writes."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.written = bytearray()

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            return b""
        data = self.chunks.pop(0)
        return data[:max_bytes]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    def write_eof(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None

    @property
    def peer(self) -> tuple[str, int] | None:
        return ("127.0.0.1", 1)

    @property
    def local(self) -> tuple[str, int] | None:
        return None


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.binary(max_size=500))
def test_counting_stream_counts_every_byte(chunks: list[bytes], out: bytes) -> None:
    up, down = Counter("up"), Counter("down")
    inner = _Pipe(chunks)
    stream = CountingStream(inner, read=up, write=down)

    async def run() -> bytes:
        got = b""
        while data := await stream.read():
            got += data
        stream.write(out)
        return got

    assert asyncio.run(run()) == b"".join(chunks)
    assert up.value == sum(map(len, chunks))
    assert down.value == len(out) and bytes(inner.written) == out


def test_wrap_without_counters_is_the_stream_itself() -> None:
    inner = _Pipe([])
    assert wrap(inner, read=None, write=None) is inner


class _Target:
    def __init__(self) -> None:
        self.data = b""
        self.eof = False

    def pushed_data(self, data: bytes | bytearray) -> None:
        self.data += data

    def pushed_eof(self) -> None:
        self.eof = True

    def pushed_error(self, exc: BaseException) -> None:
        raise AssertionError(exc)


class _PushPipe(_Pipe):
    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.can_push = True

    def start_push(self, target: _Target) -> None:
        for c in self.chunks:
            target.pushed_data(c)
        target.pushed_eof()


def test_counting_stream_counts_in_push_mode() -> None:
    up = Counter("up")
    stream = CountingStream(_PushPipe([b"ab", b"cde"]), read=up, write=None)
    assert stream.can_push
    target = _Target()
    stream.start_push(target)
    assert target.data == b"abcde" and target.eof and up.value == 5


def test_wrap_stream_counts_session_user() -> None:
    m = StatsManager()
    stats = TrafficStats(m, ALL_ON)
    session = Session(inbound_tag="in", source=None, user_email="Alice@Example.com", level=0)
    inner = _Pipe([b"x" * 10])
    stream = stats.wrap_stream(session, inner)

    async def run() -> None:
        await stream.read()
        stream.write(b"y" * 7)

    asyncio.run(run())
    assert dict(m.query("user>>>")) == {
        "user>>>Alice@Example.com>>>traffic>>>uplink": 10,
        "user>>>Alice@Example.com>>>traffic>>>downlink": 7,
    }


def test_counting_send() -> None:
    sent: list[bytes] = []
    c = Counter("d")
    send = counting_send(sent.append, c)
    send(b"abc")
    assert sent == [b"abc"] and c.value == 3
    assert counting_send(sent.append, None) == sent.append


@pytest.mark.parametrize(
    ("raw", "services"),
    [
        (
            {"tag": "api", "services": ["HandlerService", "statsservice", "Bogus"]},
            ("HandlerService", "StatsService"),
        ),
        ({"tag": "api"}, ()),
        ({"tag": "api", "services": ["LOGGERSERVICE", "loggerService"]}, ("LoggerService",)),
    ],
)
def test_api_config_services(raw: dict[str, object], services: tuple[str, ...]) -> None:
    assert ApiConfig.model_validate(raw).services == services
