"""Large user tables (vmess.md 4.2, 5.3): the last of 5,000 users gets in, and what it costs.

A 4.34 server accepts both header formats for every user, whatever its alterId. AEAD
matching tries users in order (one AES block + CRC each), so the last user is the
worst case; legacy matching looks the auth up in a hashed per-second table.

The cost test measures server-side time per handshake in the pure core (header bytes
in, ``RequestReceived`` out) for 10, 1,000 and 5,000 users and reports it via
``record_property`` (and stdout under ``-s``).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable

import pytest

from tests.support.vmess_probe import (
    new_client,
    v2py_vmess_server,
    vmess_exchange,
)
from v2py.errors import VmessError
from v2py.protocol.vmess import RequestReceived, UserValidator, VmessServerConnection, VmessUser

#: The type of pytest's ``record_property`` fixture.
RecordProperty = Callable[[str, object], None]

USER_COUNTS = (10, 1_000, 5_000)
BIG_TABLE = 5_000
SAMPLES = 20
#: The band a 4.34 legacy client's timestamps fall into (now + [-30, +29], vmess.md 4.1).
LEGACY_CLIENT_BAND_BUCKETS = 61
#: Generous ceilings (ms): catch a complexity regression, not a slow CI machine.
MAX_AEAD_MS = 100.0
MAX_LEGACY_WARM_MS = 200.0
PAYLOAD = b"last-user" * 50


def _users(n: int, seed: int) -> list[VmessUser]:
    """``n`` users, alterId 0 and 4 alternating, the last one with alterId 4."""
    gen = random.Random(seed)
    return [
        VmessUser(id=gen.randbytes(16), alter_id=4 if (n - 1 - i) % 2 == 0 else 0, email=f"u{i}")
        for i in range(n)
    ]


@pytest.mark.parametrize("aead", [True, False], ids=["aead", "legacy"])
async def test_last_of_5000_users_accepted(echo_server: tuple[str, int], aead: bool) -> None:
    users = _users(BIG_TABLE, seed=BIG_TABLE)
    assert users[-1].alter_id == 4 and users[-2].alter_id == 0
    async with v2py_vmess_server(users) as server:
        # The last user (alterId 4) and the last alterId-0 user, in the same header format.
        for account in (users[-1], users[-2]):
            core = new_client(account, aead=aead, now=time.time(), target=echo_server)
            core.send_data(PAYLOAD)
            got = await vmess_exchange(server.port, core, core.data_to_send(), expect=len(PAYLOAD))
            assert got == PAYLOAD


def _handshake_ms(validator: UserValidator, packet: bytes, now: float) -> tuple[float, object]:
    core = VmessServerConnection(validator, now=now, rng=os.urandom)
    started = time.perf_counter()
    event: object
    try:
        core.receive_data(packet)
        event = core.next_event()
    except VmessError as exc:
        event = exc
    return (time.perf_counter() - started) * 1e3, event


@pytest.mark.parametrize("n_users", USER_COUNTS)
def test_handshake_cost(n_users: int, record_property: RecordProperty) -> None:
    users = _users(n_users, seed=n_users)
    last = users[-1]
    now = time.time()
    started = time.perf_counter()
    validator = UserValidator(now, os.urandom)
    for account in users:
        validator.add_user(account)
    load_ms = (time.perf_counter() - started) * 1e3

    def packets(aead: bool) -> list[bytes]:
        out = []
        for _ in range(SAMPLES):
            core = new_client(last, aead=aead, now=now)
            out.append(core.data_to_send())
        return out

    def accepted(event: object) -> bool:
        return isinstance(event, RequestReceived) and event.user is last

    # AEAD: the last user is matched after trying every other user.
    aead_times = []
    for packet in packets(True):
        ms, event = _handshake_ms(validator, packet, now)
        assert accepted(event), event
        aead_times.append(ms)

    # Legacy, cold: the first legacy handshake builds the buckets it has to search.
    legacy = packets(False)
    legacy_cold_ms, event = _handshake_ms(validator, legacy[0], now)
    assert accepted(event), event
    # Legacy, warm: the client band is in the table (the inbound warms it in the background).
    validator.prefill(LEGACY_CLIENT_BAND_BUCKETS)
    legacy_times = []
    for packet in legacy[1:]:
        ms, event = _handshake_ms(validator, packet, now)
        assert accepted(event), event
        legacy_times.append(ms)

    # A refused probe (random bytes): every user's AEAD key, then the legacy table, here
    # fully warm (as the inbound's background warm-up leaves it within seconds).
    validator.prefill_budget(10**9)
    refused_first_ms, event = _handshake_ms(validator, os.urandom(64), now)
    assert isinstance(event, VmessError) and event.drain
    refused_times = []
    for _ in range(5):
        ms, event = _handshake_ms(validator, os.urandom(64), now)
        assert isinstance(event, VmessError) and event.drain
        refused_times.append(ms)

    numbers = {
        "users": n_users,
        "load_ms": round(load_ms, 2),
        "aead_last_user_ms": round(statistics.median(aead_times), 3),
        "legacy_first_ms": round(legacy_cold_ms, 3),
        "legacy_last_user_ms": round(statistics.median(legacy_times), 3),
        "refused_first_ms": round(refused_first_ms, 3),
        "refused_ms": round(statistics.median(refused_times), 3),
    }
    for key, value in numbers.items():
        record_property(key, value)
    print(f"\nhandshake cost (median of {SAMPLES}, server side, pure core): {numbers}")
    assert numbers["aead_last_user_ms"] < MAX_AEAD_MS
    assert numbers["legacy_last_user_ms"] < MAX_LEGACY_WARM_MS
