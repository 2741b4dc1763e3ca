"""Client <-> server core round trips, replay, taint, time window, failure
handling and fuzzing (docs/spec/vmess.md sections 4-8)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2py.errors import LocalProtocolError, VmessError
from v2py.protocol.vmess import (
    DatagramReceived,
    DataReceived,
    RequestCommand,
    RequestReceived,
    ResponseReceived,
    SecurityType,
    ServerState,
    StreamEnded,
    SwitchAccount,
    UserValidator,
    VmessClientConnection,
    VmessEvent,
    VmessServerConnection,
    VmessUser,
)
from v2py.protocol.vmess.header import (
    RequestHeader,
    encode_request_plaintext,
    legacy_auth,
    seal_aead_request,
    seal_legacy_request,
)

NOW = 1_700_000_000.0
SECURITIES = [
    SecurityType.AES_128_GCM,
    SecurityType.CHACHA20_POLY1305,
    SecurityType.NONE,
    SecurityType.LEGACY,
]
Rng = Callable[[int], bytes]


def make_rng(seed: int = 7) -> Rng:
    return random.Random(seed).randbytes


def setup(
    alter_id: int = 2, seed: int = 7, now: float = NOW
) -> tuple[VmessUser, UserValidator, Rng]:
    rng = make_rng(seed)
    user = VmessUser(rng(16), alter_id=alter_id, email="a@example.com")
    v = UserValidator(now, rng)
    v.add_user(user)
    v.add_user(VmessUser(rng(16), alter_id=1, email="other@example.com"))
    return user, v, rng


def drain(conn: VmessServerConnection | VmessClientConnection) -> list[VmessEvent]:
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def client(
    user: VmessUser,
    rng: Rng,
    *,
    sec: SecurityType = SecurityType.AES_128_GCM,
    aead: bool = True,
    udp: bool = False,
    now: float = NOW,
) -> VmessClientConnection:
    return VmessClientConnection(
        user,
        sec,
        command=RequestCommand.UDP if udp else RequestCommand.TCP,
        address="example.com",
        port=443,
        now=now,
        rng=rng,
        use_aead=aead,
    )


def feed(conn: VmessServerConnection | VmessClientConnection, wire: bytes, mode: str) -> None:
    if mode == "whole":
        conn.receive_data(wire)
    else:
        for i in range(len(wire)):
            conn.receive_data(wire[i : i + 1])


def body_of(events: list[VmessEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


@pytest.mark.parametrize("sec", SECURITIES)
@pytest.mark.parametrize("aead", [True, False])
@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_roundtrip(sec: SecurityType, aead: bool, udp: bool, mode: str) -> None:
    user, v, rng = setup()
    c = client(user, rng, sec=sec, aead=aead, udp=udp)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    up = b"u" * 5000
    if udp:
        c.send_datagram(b"first")
        c.send_datagram(up[:1500])
    else:
        c.send_data(up)
    c.send_eof()
    feed(s, c.data_to_send(), mode)
    ev = drain(s)
    assert isinstance(ev[0], RequestReceived)
    assert ev[0].user is user and ev[0].aead is aead
    h = ev[0].header
    assert (h.address, h.port, h.security) == ("example.com", 443, sec)
    assert isinstance(ev[-1], StreamEnded)
    if udp:
        assert [e.data for e in ev if isinstance(e, DatagramReceived)] == [b"first", up[:1500]]
    else:
        assert body_of(ev) == up
    cmd = SwitchAccount("", 21110, bytes(range(16)), 8, 0, 2)
    s.set_response_command(cmd)
    if udp:
        s.send_datagram(b"reply")
    else:
        s.send_data(b"d" * 7000)
    s.send_eof()
    feed(c, s.data_to_send(), mode)
    ev2 = drain(c)
    assert ev2[0] == ResponseReceived(command=cmd)
    assert isinstance(ev2[-1], StreamEnded)
    if udp:
        assert [e.data for e in ev2 if isinstance(e, DatagramReceived)] == [b"reply"]
    else:
        assert body_of(ev2) == b"d" * 7000
    assert s.data_to_send() == b"" and c.data_to_send() == b""


def test_one_data_event_per_receive_call() -> None:
    user, v, rng = setup()
    c = client(user, rng)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    c.send_data(bytes(65536))
    s.receive_data(c.data_to_send())
    ev = drain(s)
    assert [type(e) for e in ev] == [RequestReceived, DataReceived]
    assert len(body_of(ev)) == 65536


def test_response_header_with_eof_only() -> None:
    user, v, rng = setup()
    c = client(user, rng)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    s.receive_data(c.data_to_send())
    drain(s)
    with pytest.raises(LocalProtocolError):
        VmessServerConnection(v, now=NOW, rng=rng).send_data(b"x")
    s.send_eof()
    c.receive_data(s.data_to_send())
    assert drain(c) == [ResponseReceived(command=None), StreamEnded()]
    with pytest.raises(LocalProtocolError):
        s.set_response_command(None)


def test_response_ended_before_data_is_the_bare_header() -> None:
    """4.34 writes the header alone (no end marker) when the response ends first."""
    user, v, rng = setup()
    c = client(user, rng)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    s.receive_data(c.data_to_send())
    drain(s)
    assert not s.response_started
    s.end_before_data()
    assert s.response_started
    c.receive_data(s.data_to_send())
    assert drain(c) == [ResponseReceived(command=None)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sec=st.sampled_from(SECURITIES),
    aead=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=10),
)
def test_roundtrip_hypothesis_splits(sec: SecurityType, aead: bool, cuts: list[int]) -> None:
    user, v, rng = setup()
    c = client(user, rng, sec=sec, aead=aead)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    c.send_data(b"q" * 4000)
    c.send_eof()
    wire = c.data_to_send()
    pts = sorted({x % (len(wire) + 1) for x in cuts} | {0, len(wire)})
    for a, b in zip(pts, pts[1:], strict=False):
        s.receive_data(wire[a:b])
    ev = drain(s)
    assert body_of(ev) == b"q" * 4000
    s.send_data(b"r" * 3000)
    s.send_eof()
    back = s.data_to_send()
    pts = sorted({x % (len(back) + 1) for x in cuts} | {0, len(back)})
    for a, b in zip(pts, pts[1:], strict=False):
        c.receive_data(back[a:b])
    assert body_of(drain(c)) == b"r" * 3000


# ---------------------------------------------------------------- failures


def test_unknown_user_drains() -> None:
    _, v, rng = setup()
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s.receive_data(bytes(16))
    assert ei.value.drain and not ei.value.tainted
    assert s.state is ServerState.FAILED
    assert s.drain_remaining == s.drain_budget - 16
    assert 54 <= s.drain_budget <= 3265 + 54 + 63
    s.receive_data(b"ignored")
    assert s.data_to_send() == b""


def test_aead_replay_drains() -> None:
    user, v, rng = setup()
    wire = client(user, rng).data_to_send()
    s1 = VmessServerConnection(v, now=NOW, rng=rng)
    s1.receive_data(wire)
    assert isinstance(drain(s1)[0], RequestReceived)
    s2 = VmessServerConnection(v, now=NOW + 5, rng=rng)
    with pytest.raises(VmessError) as ei:
        s2.receive_data(wire)
    assert ei.value.drain


def test_aead_duplicate_session_closes_without_drain() -> None:
    user, v, rng = setup()
    c = client(user, rng)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    s.receive_data(c.data_to_send())
    h = c.request
    pt = encode_request_plaintext(h, b"")
    again = seal_aead_request(user.cmd_key, pt, int(NOW), rng)  # fresh AuthID, same key/iv
    s2 = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s2.receive_data(again)
    assert not ei.value.drain


def test_legacy_duplicate_burns_taint() -> None:
    user, v, rng = setup()
    c = client(user, rng, aead=False)
    wire = c.data_to_send()
    s1 = VmessServerConnection(v, now=NOW, rng=rng)
    s1.receive_data(wire)
    assert isinstance(drain(s1)[0], RequestReceived)
    s2 = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s2.receive_data(wire)  # replayed legacy header: duplicate session
    assert ei.value.drain and not ei.value.tainted
    # the same 16-byte auth with a fresh key/iv is now refused as tainted
    pt = encode_request_plaintext(
        RequestHeader(rng(16), rng(16), 1, 0x0D, 3, 1, "1.2.3.4", 80), b""
    )
    ts = next(
        t
        for t in range(int(NOW) - 40, int(NOW) + 40)
        if any(legacy_auth(i, t) == wire[:16] for i in user.all_ids)
    )
    fresh = wire[:16] + seal_legacy_request(user.cmd_key, user.id, pt, ts)[16:]
    s3 = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s3.receive_data(fresh)
    assert ei.value.drain and ei.value.tainted


def test_legacy_bad_checksum_burns_and_drains() -> None:
    user, v, rng = setup()
    pt = bytearray(
        encode_request_plaintext(RequestHeader(rng(16), rng(16), 1, 0x0D, 3, 1, "1.2.3.4", 80), b"")
    )
    pt[-1] ^= 1
    wire = seal_legacy_request(user.cmd_key, user.alter_id_list[0], bytes(pt), int(NOW))
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s.receive_data(wire)
    assert ei.value.drain
    assert v.lookup_legacy(wire[:16]).tainted  # type: ignore[union-attr]


def test_aead_bad_checksum_closes() -> None:
    user, v, rng = setup()
    pt = bytearray(
        encode_request_plaintext(RequestHeader(rng(16), rng(16), 1, 0x0D, 3, 1, "1.2.3.4", 80), b"")
    )
    pt[-1] ^= 1
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s.receive_data(seal_aead_request(user.cmd_key, bytes(pt), int(NOW), rng))
    assert not ei.value.drain


def test_aead_tampered_header_drains() -> None:
    user, v, rng = setup()
    wire = bytearray(client(user, rng).data_to_send())
    wire[40] ^= 1  # inside the sealed header payload
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s.receive_data(bytes(wire))
    assert ei.value.drain


def raw_request(
    user: VmessUser, rng: Rng, *, option: int = 0x0D, security: int = 3, aead: bool = True
) -> bytes:
    h = RequestHeader(rng(16), rng(16), 1, option, security, 1, "1.2.3.4", 80)
    pt = encode_request_plaintext(h, b"")
    if aead:
        return seal_aead_request(user.cmd_key, pt, int(NOW), rng)
    return seal_legacy_request(user.cmd_key, user.alter_id_list[0], pt, int(NOW))


@pytest.mark.parametrize(
    ("option", "security"),
    [(0x08, 3), (0x09, 3), (0x0D, 2), (0x0D, 6), (0x0D, 15)],
)
def test_bad_option_or_security_closes(option: int, security: int) -> None:
    user, v, rng = setup()
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError) as ei:
        s.receive_data(raw_request(user, rng, option=option, security=security))
    assert not ei.value.drain
    assert s.data_to_send() == b""


@pytest.mark.parametrize("security", [0, 1, 5])
def test_disable_insecure(security: int) -> None:
    user, v, rng = setup()
    s = VmessServerConnection(v, now=NOW, rng=rng, disable_insecure=True)
    with pytest.raises(VmessError) as ei:
        s.receive_data(raw_request(user, rng, security=security, option=0x05))
    assert not ei.value.drain
    ok = VmessServerConnection(v, now=NOW, rng=rng, disable_insecure=True)
    ok.receive_data(raw_request(user, rng, security=3))
    assert isinstance(ok.next_event(), RequestReceived)


def test_security_unknown_is_legacy() -> None:
    user, v, rng = setup()
    s = VmessServerConnection(v, now=NOW, rng=rng)
    s.receive_data(raw_request(user, rng, security=0, option=0x01))
    ev = s.next_event()
    assert isinstance(ev, RequestReceived) and ev.header.security == 0
    s.send_data(b"x")
    assert s.data_to_send()


def test_eof_during_header() -> None:
    user, v, rng = setup()
    s = VmessServerConnection(v, now=NOW, rng=rng)
    s.receive_data(client(user, rng).data_to_send()[:30])
    with pytest.raises(VmessError):
        s.receive_data(b"")


def test_client_rejects_bad_response() -> None:
    user, v, rng = setup()
    for aead in (True, False):
        c = client(user, rng, aead=aead)
        with pytest.raises(VmessError):
            c.receive_data(bytes(300))
        assert c.next_event() is None
        c.receive_data(b"more")  # ignored after failure
        c2 = client(user, rng, aead=aead)
        with pytest.raises(VmessError):
            c2.receive_data(b"")


@pytest.mark.parametrize("aead", [True, False])
def test_client_v_mismatch(aead: bool) -> None:
    from v2py.protocol.vmess.header import (
        encode_response_plaintext,
        new_cfb_encryptor,
        response_keys,
        seal_aead_response,
    )

    user, v, rng = setup()
    c = client(user, rng, aead=aead)
    key, iv = response_keys(c.request.body_key, c.request.body_iv, aead)
    hdr = encode_response_plaintext(c.request.response_auth ^ 1)
    wire = seal_aead_response(key, iv, hdr) if aead else new_cfb_encryptor(key, iv).update(hdr)
    with pytest.raises(VmessError):
        c.receive_data(wire)


# ---------------------------------------------------------------- time window


@pytest.mark.parametrize("aead", [True, False])
@pytest.mark.parametrize(
    ("skew", "ok"), [(0, True), (60, True), (-60, True), (150, False), (-150, False)]
)
def test_time_window(aead: bool, skew: int, ok: bool) -> None:
    user, v, rng = setup()
    c = client(user, rng, aead=aead, now=NOW + skew)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    wire = c.data_to_send()
    if ok:
        s.receive_data(wire)
        assert isinstance(s.next_event(), RequestReceived)
    else:
        with pytest.raises(VmessError) as ei:
            s.receive_data(wire)
        assert ei.value.drain


def test_legacy_window_follows_update() -> None:
    user, v, rng = setup()
    later = NOW + 600
    v.update(later)
    c = client(user, rng, aead=False, now=later)
    s = VmessServerConnection(v, now=later, rng=rng)
    s.receive_data(c.data_to_send())
    assert isinstance(s.next_event(), RequestReceived)
    old = client(user, rng, aead=False, now=NOW)
    s2 = VmessServerConnection(v, now=later, rng=rng)
    with pytest.raises(VmessError):
        s2.receive_data(old.data_to_send())


def test_validator_users_and_prefill() -> None:
    user, v, rng = setup()
    assert v.get_user("A@example.com") is user
    with pytest.raises(ValueError):
        v.add_user(VmessUser(bytes(16), email="a@EXAMPLE.com"))
    assert v.prefill(10) > 0
    assert v.prefill(1000) == 0
    assert v.remove_user("a@example.com") is user
    assert v.get_user("a@example.com") is None
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError):
        s.receive_data(client(user, rng).data_to_send())
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with pytest.raises(VmessError):
        s.receive_data(client(user, rng, aead=False).data_to_send())


def test_replay_filter_generations() -> None:
    from v2py.protocol.vmess.validator import ReplayFilter

    f = ReplayFilter(0.0)
    assert f.check(b"a", 0.0)
    assert not f.check(b"a", 119.0)
    assert not f.check(b"a", 130.0)  # one generation cleared, still in the other
    assert f.check(b"a", 250.0)


# ---------------------------------------------------------------- fuzz


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), split=st.integers(min_value=0, max_value=400))
def test_fuzz_server_only_vmess_errors(data: bytes, split: int) -> None:
    _, v, rng = setup(seed=3)
    s = VmessServerConnection(v, now=NOW, rng=rng)
    try:
        s.receive_data(data[:split])
        s.receive_data(data[split:])
        s.receive_data(b"")
    except VmessError:
        pass
    assert s.data_to_send() == b""
    while (e := s.next_event()) is not None:
        assert not isinstance(e, RequestReceived)


@settings(max_examples=100, deadline=None)
@given(
    pos=st.integers(min_value=0, max_value=200),
    flip=st.integers(min_value=1, max_value=255),
    aead=st.booleans(),
)
def test_fuzz_server_bitflips(pos: int, flip: int, aead: bool) -> None:
    user, v, rng = setup(seed=4)
    wire = bytearray(client(user, rng, aead=aead).data_to_send())
    wire[pos % len(wire)] ^= flip
    s = VmessServerConnection(v, now=NOW, rng=rng)
    with contextlib.suppress(VmessError):
        s.receive_data(bytes(wire))
    assert s.data_to_send() == b""
