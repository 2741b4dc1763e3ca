"""Fuzzing the VMess server with random and mutated first packets (STYLE 6, vmess.md 7).

Invariants: nothing but ``VmessError`` ever escapes the server core; the server never
produces a reply byte for a refused first packet; its tables stay bounded; and a real
client is served during and after the storm.

* ``test_core_fuzz``: 100,000 inputs through ``VmessServerConnection`` in-process.
* ``test_listener_fuzz``: 100,000 of them over loopback TCP, 200 at a time, at a running
  v2py VMess inbound, while a v2py client keeps doing echo round trips through it.

Inputs come from one seeded generator: pure random bytes, and real first packets
(AEAD and legacy headers, several body securities) mutated by bit flips, byte
overwrites, truncation and splicing; the in-process run adds fresh packets mutated
after sealing and structure-aware ones (plaintext fields mutated, FNV fixed, sealed).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator

from tests.support.v2ray import free_port
from tests.support.vmess_probe import (
    STEP_TIMEOUT_S,
    first_packet,
    roundtrip,
    rss_bytes,
    user,
    v2py_vmess_client,
    v2py_vmess_server,
    wait_close,
)
from v2py.common.fnv import fnv1a32
from v2py.errors import VmessError
from v2py.protocol.vmess import (
    RequestHeader,
    RequestReceived,
    SecurityType,
    ServerState,
    UserValidator,
    VmessServerConnection,
    VmessUser,
)
from v2py.protocol.vmess.header import (
    choose_legacy_identity,
    encode_request_plaintext,
    request_plaintext_needed,
    seal_aead_request,
    seal_legacy_request,
)
from v2py.protocol.vmess.validator import ReplayFilter, SessionHistory

#: The type of pytest's ``record_property`` fixture.
RecordProperty = Callable[[str, object], None]

FUZZ_SEED = 0x5EED_F022
CORE_INPUTS = 100_000
CORE_NOW = 1_700_000_000.0
TCP_INPUTS = 100_000
TCP_CONCURRENCY = 200
TCP_HANDSHAKE_S = 0.5
#: Fraction of TCP probes that keep their side open (the server must time them out).
TCP_KEEP_OPEN = 0.05
SEED_PACKETS = 48
MAX_RANDOM_LEN = 600
#: RSS growth allowed over each stage (the replay filter alone may hold ~100k AuthIDs).
MAX_RSS_GROWTH = 64 * 1024 * 1024
SECURITIES = (
    SecurityType.AES_128_GCM,
    SecurityType.CHACHA20_POLY1305,
    SecurityType.NONE,
    SecurityType.LEGACY,
)
USERS = (
    ("b831381d-6324-4d53-ad4f-8cda48b30811", 0),
    ("27848739-7e62-4138-9fd3-098a63964b6b", 4),
    ("a3482e88-686a-4a58-8126-99c9df64b7bf", 1),
)
_TERMINAL_OK = {
    ServerState.AUTH,
    ServerState.AEAD_LENGTH,
    ServerState.AEAD_HEADER,
    ServerState.LEGACY_HEADER,
    ServerState.BODY,
}


class Corpus:
    """Seeded generator of first packets for one server's users."""

    def __init__(
        self, gen: random.Random, users: list[VmessUser], now: float, target: tuple[str, int]
    ) -> None:
        self.gen = gen
        self.users = users
        self.now = now
        self.target = target
        self.seeds = [self.real_packet() for _ in range(SEED_PACKETS)]

    def real_packet(self) -> bytes:
        g = self.gen
        account = g.choice(self.users)
        return first_packet(
            account,
            aead=g.random() < 0.5,
            now=self.now,
            rng=g.randbytes,
            security=g.choice(SECURITIES),
            target=self.target,
            payload=g.randbytes(g.randrange(0, 400)),
        )

    def mutate(self, packet: bytes) -> tuple[str, bytes]:
        g = self.gen
        b = bytearray(packet)
        kind = g.choice(("flip", "flip", "byte", "truncate", "splice", "insert"))
        if kind == "flip":
            for _ in range(g.randrange(1, 4)):
                bit = g.randrange(len(b) * 8)
                b[bit // 8] ^= 1 << (bit % 8)
        elif kind == "byte":
            b[g.randrange(len(b))] = g.randrange(256)
        elif kind == "truncate":
            del b[g.randrange(len(b)) :]
        elif kind == "splice":
            other = g.choice(self.seeds)
            b = b[: g.randrange(len(b) + 1)] + other[g.randrange(len(other)) :]
        else:
            at = g.randrange(len(b) + 1)
            b[at:at] = g.randbytes(g.randrange(1, 32))
        return kind, bytes(b)

    def structured(self) -> bytes:
        """A well-sealed header whose plaintext fields were mutated (FNV usually fixed)."""
        g = self.gen
        account = g.choice(self.users)
        header = RequestHeader(
            body_iv=g.randbytes(16),
            body_key=g.randbytes(16),
            response_auth=g.randrange(256),
            option=g.choice((0x01, 0x05, 0x0D, g.randrange(256))),
            security=g.choice(SECURITIES),
            command=1,
            address=g.choice(("127.0.0.1", "::1", "example.com")),
            port=g.randrange(65536),
        )
        pt = bytearray(encode_request_plaintext(header, g.randbytes(g.randrange(16))))
        for _ in range(g.randrange(1, 4)):
            pos = g.randrange(33, len(pt))
            pt[pos] = g.randrange(256)
        if g.random() < 0.2:
            del pt[g.randrange(len(pt)) :]
        else:
            body = bytes(pt[:-4])
            need = request_plaintext_needed(body + bytes(4))
            body = (body + g.randbytes(max(0, need - 4 - len(body))))[: max(need - 4, 0)]
            pt = bytearray(body + fnv1a32(body).to_bytes(4, "big"))
            if g.random() < 0.1:
                pt[-1] ^= 0xFF
        if g.random() < 0.5:
            return seal_aead_request(account.cmd_key, bytes(pt), int(self.now), g.randbytes)
        id16, ts = choose_legacy_identity(account, int(self.now), g.randbytes)
        return seal_legacy_request(account.cmd_key, id16, bytes(pt), ts)

    def next_input(self, *, fresh: bool) -> tuple[str, bytes]:
        """One input; ``fresh`` allows new (possibly valid) packets, else only refusables."""
        g = self.gen
        r = g.random()
        if r < 0.25:
            return "random", g.randbytes(g.randrange(MAX_RANDOM_LEN))
        if fresh and r < 0.40:
            return "structured", self.structured()
        if fresh and r < 0.55:
            kind, data = self.mutate(self.real_packet())
            return "fresh-" + kind, data
        if r < 0.60:
            return "replay", g.choice(self.seeds)
        return self.mutate(g.choice(self.seeds))

    def inputs(self, n: int, *, fresh: bool) -> Iterator[tuple[str, bytes]]:
        for _ in range(n):
            yield self.next_input(fresh=fresh)


def _users() -> list[VmessUser]:
    return [user(uuid, alter_id) for uuid, alter_id in USERS]


def _feed(core: VmessServerConnection, data: bytes, gen: random.Random) -> None:
    """Feed ``data`` whole or in up to three pieces at random split points."""
    cuts = sorted(gen.randrange(len(data) + 1) for _ in range(gen.randrange(3)))
    start = 0
    for cut in [*cuts, len(data)]:
        if cut > start:
            core.receive_data(data[start:cut])
        start = cut


def test_core_fuzz(record_property: RecordProperty) -> None:
    gen = random.Random(FUZZ_SEED)
    now = CORE_NOW  # the core takes time as input: a fixed clock makes the run reproducible
    users = _users()
    validator = UserValidator(now, gen.randbytes)
    for account in users:
        validator.add_user(account)
    corpus = Corpus(gen, users, now, ("127.0.0.1", 9))
    outcomes: Counter[str] = Counter()
    escaped: list[tuple[str, bytes, BaseException]] = []
    rss_start = 0
    started = time.perf_counter()
    for i, (kind, data) in enumerate(corpus.inputs(CORE_INPUTS, fresh=True)):
        if i == CORE_INPUTS // 10:
            rss_start = rss_bytes()
        core = VmessServerConnection(
            validator, now=now, rng=gen.randbytes, disable_insecure=gen.random() < 0.2
        )
        try:
            _feed(core, data, gen)
            events = []
            while (event := core.next_event()) is not None:
                events.append(event)
            accepted = sum(isinstance(e, RequestReceived) for e in events)
            assert accepted == (1 if core.state is ServerState.BODY else 0)
            assert core.state in _TERMINAL_OK
            outcomes["accepted" if accepted else "incomplete"] += 1
        except VmessError as exc:
            outcomes["drain" if exc.drain else "close"] += 1
            assert core.state is ServerState.FAILED
            assert 0 <= core.drain_remaining <= core.drain_budget
            core.receive_data(b"more")  # a failed core ignores input
            core.receive_data(b"")
        except Exception as exc:  # anything else is a bug in the core
            escaped.append((kind, data, exc))
        assert core.data_to_send() == b"", "the server must never volunteer bytes"
    elapsed = time.perf_counter() - started
    growth = rss_bytes() - rss_start
    print(
        f"\ncore fuzz: {CORE_INPUTS} inputs in {elapsed:.1f} s "
        f"({CORE_INPUTS / elapsed:,.0f}/s); outcomes {dict(outcomes)}; "
        f"RSS growth over the last 90%: {growth / 2**20:.1f} MiB"
    )
    record_property("core_fuzz_inputs", CORE_INPUTS)
    record_property("core_fuzz_seconds", round(elapsed, 2))
    record_property("core_fuzz_outcomes", dict(outcomes))
    record_property("core_fuzz_rss_growth_bytes", growth)
    assert not escaped, [(k, d.hex(), f"{type(e).__name__}: {e}") for k, d, e in escaped[:5]]
    assert growth < MAX_RSS_GROWTH
    assert len(validator) == len(users)
    # Every kind of outcome was reached: the corpus is not trivially rejected.
    assert {"accepted", "drain", "close", "incomplete"} <= set(outcomes)


def test_replay_filter_is_bounded_and_expires() -> None:
    """Capacity bounds it; a key is refused 120..240 s, accepted again after (vmess.md 5.3)."""
    capacity = 1_000
    replay = ReplayFilter(0.0, interval=120, capacity=capacity)
    accepted = sum(replay.check(i.to_bytes(16, "big"), 1.0) for i in range(5 * capacity))
    assert accepted == capacity  # a full generation refuses, it never grows
    first = (0).to_bytes(16, "big")
    assert not replay.check(first, 119.0)
    assert not replay.check(first, 120.0)  # one generation cleared, the other still has it
    assert not replay.check(first, 239.0)
    assert replay.check(first, 240.0)  # both generations cleared since first use


def test_session_history_is_purged() -> None:
    """Entries live 3 minutes; the 30 s cleanup keeps the table to recent sessions."""
    history = SessionHistory(0.0)
    for i in range(10_000):
        assert history.add_if_not_exists(b"u" * 16, i.to_bytes(16, "big"), b"iv" * 8, i * 0.01)
    assert not history.add_if_not_exists(b"u" * 16, (5).to_bytes(16, "big"), b"iv" * 8, 179.0)
    assert history.add_if_not_exists(b"u" * 16, b"k" * 16, b"iv" * 8, 400.0)
    assert len(history) == 1


async def _probe_once(port: int, data: bytes, keep_open: bool) -> bytes:
    async with asyncio.timeout(STEP_TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if not keep_open and writer.can_write_eof():
            writer.write_eof()
        received, closed, _, _ = await wait_close(reader, timeout=TCP_HANDSHAKE_S + 5)
        assert closed, "the server must close a refused connection"
        return received
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_listener_fuzz(echo_server: tuple[str, int], record_property: RecordProperty) -> None:
    gen = random.Random(FUZZ_SEED + 1)
    users = _users()
    dead_port = free_port()  # seeds point here; the server's outbound refuses it anyway
    async with (
        v2py_vmess_server(
            users, handshake=TCP_HANDSHAKE_S, allowed_ports=frozenset({echo_server[1]})
        ) as server,
        v2py_vmess_client(server.port, users[0], echo_server) as client_port,
    ):
        corpus = Corpus(gen, users, time.time(), ("127.0.0.1", dead_port))
        # The seeds are captured first packets: let the server see each once first, so
        # every later input is a replay or a corruption of one.
        for seed in corpus.seeds:
            assert await _probe_once(server.port, seed, keep_open=False) == b""
        refused_before = server.outbound.refused
        assert refused_before == len(corpus.seeds)
        inputs = list(corpus.inputs(TCP_INPUTS, fresh=False))
        keep_open = [gen.random() < TCP_KEEP_OPEN for _ in inputs]

        served = 0
        stop = asyncio.Event()

        async def real_client() -> None:
            nonlocal served
            while not stop.is_set():
                payload = gen.randbytes(2048)
                assert await roundtrip(client_port, payload) == payload
                served += 1

        replies: list[tuple[str, bytes]] = []
        # A fixed pool of probing workers (not one task per input), so that the RSS
        # growth measured below is the server's, not 100k pending test tasks.
        next_input = iter(range(len(inputs)))

        async def worker() -> None:
            for i in next_input:
                kind, data = inputs[i]
                got = await _probe_once(server.port, data, keep_open[i])
                if got:
                    replies.append((kind, got))

        rss_start = rss_bytes()
        started = time.perf_counter()
        async with asyncio.timeout(120), asyncio.TaskGroup() as group:
            client_task = group.create_task(real_client())
            async with asyncio.TaskGroup() as probes:
                for _ in range(TCP_CONCURRENCY):
                    probes.create_task(worker())
            stop.set()
            await client_task
        elapsed = time.perf_counter() - started
        growth = rss_bytes() - rss_start
        payload = b"after the storm" * 100
        assert await roundtrip(client_port, payload) == payload
    print(
        f"\nlistener fuzz: {TCP_INPUTS} connections ({TCP_CONCURRENCY} concurrent, "
        f"{sum(keep_open)} left open) in {elapsed:.1f} s; real-client round trips meanwhile: "
        f"{served}; RSS growth {growth / 2**20:.1f} MiB"
    )
    record_property("listener_fuzz_connections", TCP_INPUTS)
    record_property("listener_fuzz_seconds", round(elapsed, 2))
    record_property("listener_fuzz_client_roundtrips", served)
    record_property("listener_fuzz_rss_growth_bytes", growth)
    assert not replies, [(k, r[:32].hex()) for k, r in replies[:5]]
    assert server.outbound.refused == refused_before, "no fuzz input may pass as a request"
    assert served >= 3
    assert growth < MAX_RSS_GROWTH
