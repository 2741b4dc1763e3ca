"""Replayed VMess first packets against the v2py inbound (vmess.md 4.3, 5.3, 7).

A replayed AEAD first packet (AuthID seen before, within 120 s) is refused with
drain: the server answers nothing, reads on until its drain budget is consumed and
then closes; with fewer bytes it sits silent until the handshake timeout. A replayed
legacy header (same body key/IV) burns the auth entry's taint fuse, so even a fresh
request presenting the same 16-byte auth is refused afterwards ("ErrTainted").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.socks import socks5_connect
from tests.support.v2ray import free_ports, run_v2ray
from tests.support.vmess_probe import (
    STEP_TIMEOUT_S,
    CapturingRelay,
    body_chunk,
    new_client,
    probe,
    user,
    v2py_vmess_server,
    vmess_exchange,
    wait_close,
)
from v2py.protocol.vmess import UserValidator, VmessUser
from v2py.protocol.vmess.header import (
    encode_request_plaintext,
    legacy_auth,
    seal_aead_request,
    seal_legacy_request,
)

# This UUID gives the v2py server a drain budget near 3,000 bytes, far above any
# first packet, so "fewer bytes than the budget" and "the whole budget" are distinct.
UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
HANDSHAKE_S = 1.2
PAYLOAD = b"replay-probe-payload"
#: The drain budget is base + rolled, rolled < 64 (vmess.md 7).
DRAIN_ROLL_SPAN = 64
#: How long "still open" must hold before the budget is reached (well under HANDSHAKE_S).
STILL_OPEN_S = 0.3
#: A close caused by drain completion must come well before the handshake timeout.
PROMPT_CLOSE_S = 0.4
LOG_NAME = "v2py.proxy.vmess_inbound"


def _drain_bounds(validator: UserValidator) -> tuple[int, int]:
    """[lo, hi] of the per-connection drain budget of this server."""
    lo = validator.drain_size(lambda n: bytes(n))
    return lo, lo + DRAIN_ROLL_SPAN - 1


async def _assert_timeout_close(port: int, data: bytes) -> None:
    """Fewer bytes than the budget: silence, then close at the handshake timeout."""
    result = await probe(port, [data], wait=HANDSHAKE_S + 3)
    assert result.received == b""
    assert result.closed
    assert HANDSHAKE_S - 0.2 <= result.close_delay <= HANDSHAKE_S + 1.0, result.close_delay


async def _assert_drain_close(port: int, data: bytes, lo: int, hi: int) -> float:
    """Drain: still open at lo-1 bytes, closed promptly once hi bytes were sent."""
    assert len(data) < lo
    async with asyncio.timeout(STEP_TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data + os.urandom(lo - 1 - len(data)))
        await writer.drain()
        received, closed, _, _ = await wait_close(reader, timeout=STILL_OPEN_S)
        assert received == b"" and not closed, "closed before the drain budget was consumed"
        writer.write(os.urandom(hi - lo + 1))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        received, closed, _, delay = await wait_close(reader, timeout=HANDSHAKE_S + 1)
        assert received == b""
        assert closed and delay < PROMPT_CLOSE_S, delay
        return delay
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await writer.wait_closed()


async def test_aead_replay_is_drained(echo_server: tuple[str, int]) -> None:
    skew = [0.0]
    account = user(UUID, 0)
    async with v2py_vmess_server(
        [account], handshake=HANDSHAKE_S, clock=lambda: time.time() + skew[0]
    ) as server:
        lo, hi = _drain_bounds(server.inbound.validator)
        core = new_client(account, aead=True, now=time.time(), target=echo_server)
        core.send_data(PAYLOAD)
        packet = core.data_to_send()
        # The original is served (the echo comes back through the tunnel).
        assert await vmess_exchange(server.port, core, packet, expect=len(PAYLOAD)) == PAYLOAD
        # Replay, fewer bytes than the drain budget: silent until the handshake timeout.
        await _assert_timeout_close(server.port, packet)
        # Replay followed by enough bytes: closes as soon as the budget is consumed.
        await _assert_drain_close(server.port, packet, lo, hi)
        # Still refused 110 s later (the AuthID is within its 120 s window).
        skew[0] = 110.0
        await _assert_drain_close(server.port, packet, lo, hi)


async def test_aead_duplicate_session_closes_without_drain(echo_server: tuple[str, int]) -> None:
    """Fresh AuthID, but the body key/IV of an earlier request: close at once (vmess.md 7)."""
    account = user(UUID, 0)
    async with v2py_vmess_server([account], handshake=HANDSHAKE_S) as server:
        lo, _ = _drain_bounds(server.inbound.validator)
        now = time.time()
        core = new_client(account, aead=True, now=now, target=echo_server)
        core.send_data(PAYLOAD)
        assert (
            await vmess_exchange(server.port, core, core.data_to_send(), expect=len(PAYLOAD))
            == PAYLOAD
        )
        plaintext = encode_request_plaintext(core.request, b"")
        again = seal_aead_request(account.cmd_key, plaintext, int(now), os.urandom)
        assert len(again) < lo
        result = await probe(server.port, [again], wait=HANDSHAKE_S + 1)
        assert result.received == b""
        assert result.closed and result.close_delay < PROMPT_CLOSE_S, result.close_delay


def _find_legacy_identity(account: VmessUser, auth: bytes, now: float) -> tuple[bytes, int]:
    """The (id, ts) that produced a legacy auth (ts is within now ± 30 s, vmess.md 4.1)."""
    for ts in range(int(now) - 31, int(now) + 31):
        for id16 in account.all_ids:
            if legacy_auth(id16, ts) == auth:
                return id16, ts
    raise AssertionError("auth not produced by this account")


async def test_legacy_replay_taints_auth(
    echo_server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG_NAME)
    account = user(UUID, 4)
    async with v2py_vmess_server([account], handshake=HANDSHAKE_S) as server:
        lo, hi = _drain_bounds(server.inbound.validator)
        now = time.time()
        core = new_client(account, aead=False, now=now, target=echo_server)
        core.send_data(PAYLOAD)
        packet = core.data_to_send()
        assert await vmess_exchange(server.port, core, packet, expect=len(PAYLOAD)) == PAYLOAD

        # Same header again (same auth, key and IV): duplicate session -> fuse burnt + drain.
        await _assert_drain_close(server.port, packet, lo, hi)
        caplog.clear()

        # A fresh request (new key/IV, correct checksum) presenting the same auth.
        id16, ts = _find_legacy_identity(account, packet[:16], now)
        fresh = new_client(account, aead=True, now=now, target=echo_server).request
        assert (fresh.body_key, fresh.body_iv) != (core.request.body_key, core.request.body_iv)
        header = seal_legacy_request(
            account.cmd_key, id16, encode_request_plaintext(fresh, b""), ts
        )
        assert header[:16] == packet[:16]
        await _assert_timeout_close(server.port, header)
        assert "invalid user" in caplog.text
        assert "ErrTainted" in caplog.text

        # The fuse is per auth entry: another second's auth for the same user still works.
        other_ts = ts - 1
        ok = new_client(account, aead=True, now=now, target=echo_server)
        ok_header = seal_legacy_request(
            account.cmd_key, id16, encode_request_plaintext(ok.request, b""), other_ts
        )
        chunk = body_chunk(ok, PAYLOAD)
        result = await probe(server.port, [ok_header + chunk], wait=PROMPT_CLOSE_S)
        # Accepted: the tunnel opens and the echo comes back (response header + chunk).
        assert len(result.received) > len(PAYLOAD)


@pytest.mark.interop
async def test_real_client_first_packet_replayed(echo_server: tuple[str, int]) -> None:
    """Capture what a real v2ray client sends first, replay it at the v2py server."""
    account = user(UUID, 0)
    async with (
        v2py_vmess_server([account], handshake=HANDSHAKE_S) as server,
        CapturingRelay(server.port) as tap,
    ):
        lo, hi = _drain_bounds(server.inbound.validator)
        (socks_port,) = free_ports(1)
        config = vmess_client_config(socks_port, tap.port, UUID, 0, "aes-128-gcm")
        async with run_v2ray(config, wait_tcp=[socks_port]):
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks5_connect(socks_port, *echo_server)
                writer.write(PAYLOAD)
                await writer.drain()
                assert await reader.readexactly(len(PAYLOAD)) == PAYLOAD
                writer.close()
                await tap.connections[0].done.wait()
        # Everything the client sent: AEAD header, the payload chunk, the end marker.
        first = bytes(tap.connections[0].upstream)
        assert len(first) > 16 + 18 + 8 + 49 + 16 + len(PAYLOAD)
        await _assert_timeout_close(server.port, first)
        await _assert_drain_close(server.port, first, lo, hi)


def _v2ray_server_config(port: int, alter_id: int) -> dict[str, object]:
    return vmess_server_config(port, UUID, alter_id, handshake_s=1, loglevel="info")


#: v2ray's handshake policy above is 1 s; its refusal must come by then (plus slack).
V2RAY_CLOSE_BY_S = 1.0 + 1.0


@pytest.mark.interop
async def test_v2ray_server_refuses_replay_silently(echo_server: tuple[str, int]) -> None:
    """The reference: a 4.34 server answers a replayed AEAD first packet with silence + close."""
    (port,) = free_ports(1)
    account = user(UUID, 0)
    async with run_v2ray(_v2ray_server_config(port, 0), wait_tcp=[port]):
        core = new_client(account, aead=True, now=time.time(), target=echo_server)
        core.send_data(PAYLOAD)
        packet = core.data_to_send()
        assert await vmess_exchange(port, core, packet, expect=len(PAYLOAD)) == PAYLOAD
        result = await probe(port, [packet], wait=V2RAY_CLOSE_BY_S + 2)
        assert result.received == b""
        assert result.closed and result.close_delay <= V2RAY_CLOSE_BY_S


@pytest.mark.interop
async def test_v2ray_server_taints_legacy_auth(echo_server: tuple[str, int]) -> None:
    """The reference for the taint fuse: same sequence as against v2py, same outcome."""
    (port,) = free_ports(1)
    account = user(UUID, 4)
    async with run_v2ray(_v2ray_server_config(port, 4), wait_tcp=[port]) as v2ray:
        now = time.time()
        core = new_client(account, aead=False, now=now, target=echo_server)
        core.send_data(PAYLOAD)
        packet = core.data_to_send()
        assert await vmess_exchange(port, core, packet, expect=len(PAYLOAD)) == PAYLOAD
        replay = await probe(port, [packet], wait=V2RAY_CLOSE_BY_S + 2)
        assert replay.received == b"" and replay.closed

        id16, ts = _find_legacy_identity(account, packet[:16], now)
        fresh = new_client(account, aead=True, now=now, target=echo_server).request
        header = seal_legacy_request(
            account.cmd_key, id16, encode_request_plaintext(fresh, b""), ts
        )
        tainted = await probe(port, [header], wait=V2RAY_CLOSE_BY_S + 2)
        assert tainted.received == b"" and tainted.closed
        assert tainted.close_delay <= V2RAY_CLOSE_BY_S

        ok = new_client(account, aead=True, now=now, target=echo_server).request
        ok_header = seal_legacy_request(
            account.cmd_key, id16, encode_request_plaintext(ok, b""), ts - 1
        )
        # (4.34 answers a header-only request that then half-closes with silence, so the
        # control is judged by the log: the request was received.)
        await probe(port, [ok_header], half_close=True, wait=V2RAY_CLOSE_BY_S + 2)
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while v2ray.log().count("received request for") < 2:
                await asyncio.sleep(0.05)
        log = v2ray.log()
        assert "invalid user" in log and "ErrTainted" in log
