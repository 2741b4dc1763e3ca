"""Mux.Cool codec and session table (v2ray-core common/mux; captured 4.34 frames)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.common.net import Destination, Network, tcp, udp
from v2py.errors import LocalProtocolError, MuxError, RemoteProtocolError
from v2py.protocol.mux import (
    MAX_PACKET_BYTES,
    STREAM_CHUNK_BYTES,
    ConnectionEnded,
    DataReceived,
    FrameMetadata,
    MuxConnection,
    MuxEvent,
    MuxOption,
    MuxRole,
    MuxStatus,
    SessionEnded,
    SessionOpened,
    decode_metadata,
    encode_frame,
)

H = bytes.fromhex

# Frames a 4.34 client sent (hex captured on loopback, docs/spec/transports.md 1.2).
NEW_EXAMPLE = H("0014 0001 01 01 01 0050 02 0b 6578616d706c652e636f6d 0007 68656c6c6f2d31")
NEW_V4_NO_DATA = H("000c 0002 01 00 01 01bb 01 0a010203")
NEW_V6_META = H("0018 0001 01 01 01 20fb 03 20010db8000000000000000000000001")
NEW_UDP_META = H("000c 0002 01 01 02 0035 01 7f000001")
END = H("0004 0001 03 00")
END_ERROR = H("0004 0001 03 02")


def drain(conn: MuxConnection) -> tuple[list[MuxEvent], MuxError | None]:
    events: list[MuxEvent] = []
    try:
        while (event := conn.next_event()) is not None:
            events.append(event)
    except MuxError as exc:
        return events, exc
    return events, None


def feed(conn: MuxConnection, chunks: list[bytes]) -> tuple[list[MuxEvent], MuxError | None]:
    events: list[MuxEvent] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        got, error = drain(conn)
        events += got
        if error is not None:
            return events, error
    return events, None


def merged(
    events: list[MuxEvent], packet_sessions: frozenset[int] = frozenset({2})
) -> list[MuxEvent]:
    """Coalesce consecutive DataReceived of one stream session (feeding splits them)."""
    out: list[MuxEvent] = []
    for event in events:
        last = out[-1] if out else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.session_id == event.session_id
            and event.session_id not in packet_sessions
        ):
            out[-1] = DataReceived(session_id=event.session_id, data=last.data + event.data)
        else:
            out.append(event)
    return out


def splits(data: bytes) -> list[list[bytes]]:
    return [[data], [data[i : i + 1] for i in range(len(data))]]


# -- metadata codec ------------------------------------------------------------------


def test_captured_new_frames_decode() -> None:
    meta = decode_metadata(NEW_EXAMPLE[2:22])
    assert meta == FrameMetadata(
        session_id=1,
        status=MuxStatus.NEW,
        option=MuxOption.DATA,
        destination=tcp("example.com", 80),
    )
    assert decode_metadata(NEW_V4_NO_DATA[2:]).destination == tcp("10.1.2.3", 443)
    assert decode_metadata(NEW_V6_META[2:]).destination == tcp("2001:db8::1", 8443)
    assert decode_metadata(NEW_UDP_META[2:]).destination == udp("127.0.0.1", 53)


def test_captured_frames_encode_identically() -> None:
    new = FrameMetadata(session_id=1, status=MuxStatus.NEW, destination=tcp("example.com", 80))
    assert encode_frame(new, b"hello-1") == NEW_EXAMPLE
    new2 = FrameMetadata(session_id=2, status=MuxStatus.NEW, destination=tcp("10.1.2.3", 443))
    assert encode_frame(new2) == NEW_V4_NO_DATA
    new6 = FrameMetadata(session_id=1, status=MuxStatus.NEW, destination=tcp("2001:db8::1", 8443))
    assert encode_frame(new6, b"x") == NEW_V6_META + H("0001") + b"x"
    end = FrameMetadata(session_id=1, status=MuxStatus.END)
    assert encode_frame(end) == END
    assert (
        encode_frame(FrameMetadata(session_id=1, status=MuxStatus.END, option=MuxOption.ERROR))
        == END_ERROR
    )
    keep = FrameMetadata(session_id=1, status=MuxStatus.KEEP)
    assert encode_frame(keep, b"\0" * 8192) == H("0004 0001 02 01 2000") + b"\0" * 8192


def test_trailing_metadata_is_ignored() -> None:
    # Xray appends an XUDP GlobalID to New and an address to Keep; 4.34 reads past them.
    extra = bytes(8)
    meta = NEW_V4_NO_DATA[2:] + extra
    assert decode_metadata(meta).destination == tcp("10.1.2.3", 443)
    assert decode_metadata(H("0001 02 00") + extra).status is MuxStatus.KEEP


def test_domain_that_is_an_ip_becomes_the_ip() -> None:
    raw = b"1.2.3.4"
    meta = H("0001 01 00 01 0050 02") + bytes((len(raw),)) + raw
    assert decode_metadata(meta).destination == tcp("1.2.3.4", 80)
    raw6 = b"[::1]"
    meta6 = H("0001 01 00 01 0050 02") + bytes((len(raw6),)) + raw6
    assert decode_metadata(meta6).destination == tcp("::1", 80)


def test_v4_mapped_v6_is_v4() -> None:
    meta = H("0001 01 00 01 0050 03") + bytes(10) + b"\xff\xff" + bytes((9, 8, 7, 6))
    assert decode_metadata(meta).destination == tcp("9.8.7.6", 80)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        (H("000102"), "metadata of 3"),
        (H("0001 05 00"), "unknown status"),
        (H("0001 00 00"), "unknown status"),
        (H("0001 01 00 01 0050"), "New metadata"),
        (H("0001 01 00 03 0050 01 7f000001"), "unknown network"),
        (H("0001 01 00 01 0050 04 7f000001"), "unknown address type"),
        (H("0001 01 00 01 0050 01 7f0000"), "truncated IPv4"),
        (H("0001 01 00 01 0050 03 7f000001"), "truncated IPv6"),
        (H("0001 01 00 01 0050 02 05 6162"), "truncated domain"),
        (H("0001 01 00 01 0050 02 00"), "empty domain"),
        (H("0001 01 00 01 0050 02 03 612f62"), "invalid domain"),
    ],
)
def test_bad_metadata(meta: bytes, reason: str) -> None:
    with pytest.raises(MuxError, match=reason):
        decode_metadata(meta)


addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str).filter(lambda a: not a.startswith("::ffff:")),
    st.from_regex(r"[a-z_-][0-9A-Za-z._-]{0,40}", fullmatch=True),
)
destinations = st.builds(
    Destination, st.sampled_from([Network.TCP, Network.UDP]), addresses, st.integers(0, 65535)
)


@given(
    sid=st.integers(0, 65535),
    status=st.sampled_from(list(MuxStatus)),
    error=st.booleans(),
    dest=destinations,
    data=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_frame_round_trip(
    sid: int, status: MuxStatus, error: bool, dest: Destination, data: bytes | None
) -> None:
    option = MuxOption.ERROR if error else MuxOption.NONE
    meta = FrameMetadata(
        session_id=sid,
        status=status,
        option=option,
        destination=dest if status is MuxStatus.NEW else None,
    )
    frame = encode_frame(meta, data)
    meta_len = int.from_bytes(frame[:2], "big")
    decoded = decode_metadata(frame[2 : 2 + meta_len])
    want_option = option | (MuxOption.DATA if data is not None else MuxOption.NONE)
    assert decoded == FrameMetadata(
        session_id=sid, status=status, option=want_option, destination=meta.destination
    )
    rest = frame[2 + meta_len :]
    if data is None:
        assert rest == b""
    else:
        assert rest == len(data).to_bytes(2, "big") + data


def test_encode_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(FrameMetadata(session_id=1, status=MuxStatus.NEW))
    with pytest.raises(LocalProtocolError):
        encode_frame(FrameMetadata(session_id=1, status=MuxStatus.KEEP), bytes(65536))
    with pytest.raises(LocalProtocolError):
        encode_frame(
            FrameMetadata(session_id=1, status=MuxStatus.NEW, destination=tcp("a" * 256, 1))
        )


# -- server session table ------------------------------------------------------------------


def server_stream() -> bytes:
    return (
        NEW_EXAMPLE
        + encode_frame(FrameMetadata(session_id=1, status=MuxStatus.KEEP), b"more")
        + NEW_UDP_META
        + H("000b")
        + b"0123456789a"
        + encode_frame(FrameMetadata(session_id=2, status=MuxStatus.KEEP), b"dgram")
        + END
    )


SERVER_EVENTS: list[MuxEvent] = [
    SessionOpened(session_id=1, destination=tcp("example.com", 80)),
    DataReceived(session_id=1, data=b"hello-1more"),
    SessionOpened(session_id=2, destination=udp("127.0.0.1", 53)),
    DataReceived(session_id=2, data=b"0123456789a"),
    DataReceived(session_id=2, data=b"dgram"),
    SessionEnded(session_id=1, error=False),
]


@pytest.mark.parametrize("chunks", splits(server_stream()))
def test_server_events_whole_and_byte_at_a_time(chunks: list[bytes]) -> None:
    conn = MuxConnection(MuxRole.SERVER)
    events, error = feed(conn, chunks)
    assert error is None
    # datagrams are never split or merged
    assert [e for e in events if isinstance(e, DataReceived) and e.session_id == 2] == [
        DataReceived(session_id=2, data=b"0123456789a"),
        DataReceived(session_id=2, data=b"dgram"),
    ]
    assert merged(events) == SERVER_EVENTS
    assert conn.active_sessions == 1
    assert conn.total_sessions == 2
    assert conn.data_to_send() == b""


@given(st.lists(st.integers(0, len(server_stream())), max_size=8))
def test_server_events_at_any_split(cuts: list[int]) -> None:
    data = server_stream()
    points = sorted(set(cuts))
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)]) if b > a]
    conn = MuxConnection(MuxRole.SERVER)
    events, error = feed(conn, chunks)
    assert error is None
    assert merged(events) == SERVER_EVENTS


def test_keep_with_data_for_unknown_session_is_answered_with_end() -> None:
    conn = MuxConnection(MuxRole.SERVER)
    conn.receive_data(encode_frame(FrameMetadata(session_id=7, status=MuxStatus.KEEP), b"zz"))
    assert drain(conn) == ([], None)
    assert conn.data_to_send() == H("0004 0007 03 00")
    assert conn.statistics().unknown_session_frames == 1


def test_no_end_ping_pong() -> None:
    # End and Keep without data for unknown sessions get no answer (4.34; a peer that
    # answered End with Keep+End would loop forever).
    conn = MuxConnection(MuxRole.SERVER)
    conn.receive_data(END + END_ERROR + H("0004 0009 02 00") + H("0004 0009 04 00"))
    assert drain(conn) == ([], None)
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("status", list(MuxStatus))
@pytest.mark.parametrize("option", [0, 1, 2, 3, 0xFC, 0xFF])
@pytest.mark.parametrize("known", [False, True])
def test_every_status_and_option(status: MuxStatus, option: int, known: bool) -> None:
    """Each status x option x (known/unknown session) is a legal transition."""
    conn = MuxConnection(MuxRole.SERVER)
    prefix = NEW_V4_NO_DATA if known else b""  # opens session 2
    head = H("0002") + bytes((status, option))
    if status is MuxStatus.NEW:
        head += H("01 0050 01 7f000001")
    frame = len(head).to_bytes(2, "big") + head
    if option & MuxOption.DATA:
        frame += H("0003") + b"abc"
    conn.receive_data(prefix + frame + NEW_EXAMPLE)  # a later frame still parses
    events, error = drain(conn)
    assert error is None
    events = [e for e in events if not (isinstance(e, SessionOpened) and e.session_id == 1)]
    events = [e for e in events if not (isinstance(e, DataReceived) and e.session_id == 1)]
    if known:
        assert events[0] == SessionOpened(session_id=2, destination=tcp("10.1.2.3", 443))
        events = events[1:]
    has_data = bool(option & MuxOption.DATA)
    error_bit = bool(option & MuxOption.ERROR)
    out = conn.data_to_send()
    if status is MuxStatus.NEW:
        opened = SessionOpened(session_id=2, destination=tcp("127.0.0.1", 80))
        want: list[MuxEvent] = [SessionEnded(session_id=2, error=True)] if known else []
        want.append(opened)
        if has_data:
            want.append(DataReceived(session_id=2, data=b"abc"))
        assert events == want
        assert out == b""
    elif status is MuxStatus.KEEP:
        if known and has_data:
            assert events == [DataReceived(session_id=2, data=b"abc")]
        else:
            assert events == []
        assert out == (H("0004 0002 03 00") if has_data and not known else b"")
    elif status is MuxStatus.END:
        assert events == ([SessionEnded(session_id=2, error=error_bit)] if known else [])
        assert out == b""
        assert not conn.is_live(2)
    else:
        assert events == []
        assert out == b""


@pytest.mark.parametrize(
    "frame",
    [
        H("0201") + bytes(513),  # MetaLen > 512
        H("0003 000102"),  # MetaLen < 4
        H("0004 0001 07 00"),  # unknown status
        H("0006 0001 01 00 01 00"),  # New shorter than 8
        H("000c 0001 01 00 09 0050 01 7f000001"),  # unknown network
    ],
)
def test_fatal_frames_end_the_connection(frame: bytes) -> None:
    conn = MuxConnection(MuxRole.SERVER)
    conn.receive_data(NEW_EXAMPLE + frame + NEW_V4_NO_DATA)
    events, error = drain(conn)
    assert isinstance(error, MuxError)
    assert isinstance(error, RemoteProtocolError)
    assert merged(events) == [  # what came before the bad frame
        SessionOpened(session_id=1, destination=tcp("example.com", 80)),
        DataReceived(session_id=1, data=b"hello-1"),
    ]
    assert conn.failed
    with pytest.raises(MuxError):
        conn.next_event()
    conn.receive_data(NEW_V4_NO_DATA)  # ignored
    with pytest.raises(MuxError):
        conn.next_event()


def test_metadata_length_512_is_allowed() -> None:
    conn = MuxConnection(MuxRole.SERVER)
    conn.receive_data(H("0200 0001 02 00") + bytes(508))
    assert drain(conn) == ([], None)


def test_oversized_datagram_ends_only_its_session() -> None:
    conn = MuxConnection(MuxRole.SERVER)
    big = bytes(MAX_PACKET_BYTES + 1)
    ok = bytes(MAX_PACKET_BYTES)
    data = (
        NEW_UDP_META[: -0 or None]
        + H("0001")
        + b"x"
        + encode_frame(FrameMetadata(session_id=2, status=MuxStatus.KEEP), big)
        + encode_frame(FrameMetadata(session_id=2, status=MuxStatus.KEEP), ok)
        + NEW_EXAMPLE
    )
    for chunks in splits(data)[:1] + [[data[:5], data[5:100], data[100:]]]:
        conn = MuxConnection(MuxRole.SERVER)
        events, error = feed(conn, chunks)
        assert error is None
        assert merged(events) == [
            SessionOpened(session_id=2, destination=udp("127.0.0.1", 53)),
            DataReceived(session_id=2, data=b"x"),
            SessionEnded(session_id=2, error=True),
            SessionOpened(session_id=1, destination=tcp("example.com", 80)),
            DataReceived(session_id=1, data=b"hello-1"),
        ]
        # End+E for the refused session, then End for the Keep that followed it
        assert conn.data_to_send() == END_ERROR[:2] + H("0002 03 02") + H("0004 0002 03 00")
    assert conn.statistics().refused_packets == 1


def test_stream_data_up_to_65535_in_one_frame() -> None:
    conn = MuxConnection(MuxRole.SERVER)
    payload = bytes(range(256)) * 255 + bytes(255)
    conn.receive_data(NEW_V4_NO_DATA + H("0004 0002 02 01") + len(payload).to_bytes(2, "big"))
    conn.receive_data(payload)
    events, _ = drain(conn)
    assert merged(events)[1] == DataReceived(session_id=2, data=payload)


def test_eof_ends_and_reports_truncation() -> None:
    conn = MuxConnection(MuxRole.SERVER)
    conn.receive_data(NEW_EXAMPLE[:-3])
    conn.receive_data(b"")
    events, error = drain(conn)
    assert error is None
    assert events[-1] == ConnectionEnded(truncated=True)
    assert conn.active_sessions == 0
    conn.receive_data(b"more")  # ignored
    assert drain(conn) == ([], None)
    clean = MuxConnection(MuxRole.SERVER)
    clean.receive_data(b"")
    assert drain(clean) == ([ConnectionEnded(truncated=False)], None)


@settings(max_examples=300)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_give_events_or_mux_error(data: bytes, step: int) -> None:
    for role in MuxRole:
        conn = MuxConnection(role)
        for i in range(0, len(data), step):
            conn.receive_data(data[i : i + step])
            try:
                while conn.next_event() is not None:
                    pass
            except MuxError:
                break
        conn.data_to_send()


# -- client -------------------------------------------------------------------------


def test_client_sends_new_with_first_payload_then_keeps() -> None:
    conn = MuxConnection(MuxRole.CLIENT)
    sid = conn.open_session(tcp("example.com", 80))
    assert sid == 1
    assert conn.data_to_send() == b""  # nothing until the first payload
    conn.send_data(sid, b"hello-1")
    assert conn.data_to_send() == NEW_EXAMPLE
    burst = bytes(20000)
    conn.send_data(sid, burst)
    out = conn.data_to_send()
    sizes = []
    pos = 0
    while pos < len(out):
        assert out[pos : pos + 6] == H("0004 0001 02 01")
        size = int.from_bytes(out[pos + 6 : pos + 8], "big")
        sizes.append(size)
        pos += 8 + size
    assert sizes == [STREAM_CHUNK_BYTES, STREAM_CHUNK_BYTES, 20000 - 2 * STREAM_CHUNK_BYTES]
    conn.send_end(sid)
    assert conn.data_to_send() == END
    conn.send_end(sid)  # once only
    assert conn.data_to_send() == b""
    assert conn.active_sessions == 0
    with pytest.raises(LocalProtocolError):
        conn.send_data(sid, b"late")


def test_client_new_without_data_and_end_before_any_data() -> None:
    conn = MuxConnection(MuxRole.CLIENT)
    conn.open_session(tcp("example.com", 80))
    sid = conn.open_session(tcp("10.1.2.3", 443))
    assert sid == 2
    conn.send_data(sid, b"")
    assert conn.data_to_send() == NEW_V4_NO_DATA
    conn.send_end(1, error=True)  # New first, then End+E
    assert (
        conn.data_to_send()
        == encode_frame(
            FrameMetadata(session_id=1, status=MuxStatus.NEW, destination=tcp("example.com", 80))
        )
        + END_ERROR
    )


def test_client_udp_one_frame_per_datagram() -> None:
    conn = MuxConnection(MuxRole.CLIENT)
    conn.open_session(tcp("example.com", 80))
    sid = conn.open_session(udp("127.0.0.1", 53))
    conn.send_data(sid, b"0123456789a")
    conn.send_data(sid, bytes(9000))
    out = conn.data_to_send()
    assert out.startswith(NEW_UDP_META + H("000b") + b"0123456789a")
    assert out[len(NEW_UDP_META) + 13 :] == H("0004 0002 02 01 2328") + bytes(9000)


def test_client_ignores_new_and_replies_end_to_unknown_keep() -> None:
    conn = MuxConnection(MuxRole.CLIENT)
    sid = conn.open_session(tcp("example.com", 80))
    conn.receive_data(
        NEW_EXAMPLE + encode_frame(FrameMetadata(session_id=sid, status=MuxStatus.KEEP), b"resp")
    )
    conn.receive_data(encode_frame(FrameMetadata(session_id=5, status=MuxStatus.KEEP), b"?"))
    conn.receive_data(END)
    events, error = drain(conn)
    assert error is None
    assert merged(events) == [
        DataReceived(session_id=1, data=b"resp"),
        SessionEnded(session_id=1, error=False),
    ]
    assert conn.data_to_send() == H("0004 0005 03 00")
    assert conn.is_sendable(1) and not conn.is_live(1)
    assert conn.active_sessions == 0
    assert conn.total_sessions == 1


def test_client_misuse() -> None:
    server = MuxConnection(MuxRole.SERVER)
    with pytest.raises(LocalProtocolError):
        server.open_session(tcp("a", 1))
    client = MuxConnection(MuxRole.CLIENT)
    with pytest.raises(LocalProtocolError):
        client.open_session(tcp("a b", 1).with_address("é"))
    client.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        client.open_session(tcp("a", 1))


def test_server_answers_after_client_end() -> None:
    server = MuxConnection(MuxRole.SERVER)
    server.receive_data(NEW_EXAMPLE + END)
    drain(server)
    assert not server.is_live(1) and server.is_sendable(1)
    server.send_data(1, b"late reply")
    server.send_end(1)
    assert server.data_to_send() == (
        encode_frame(FrameMetadata(session_id=1, status=MuxStatus.KEEP), b"late reply") + END
    )


def test_stop_sending_keeps_receiving_and_never_ends() -> None:
    """A session we never answer (a reverse bridge's control session): its data is
    still delivered, nothing is ever sent for it, not even End."""
    server = MuxConnection(MuxRole.SERVER)
    server.receive_data(NEW_EXAMPLE)
    drain(server)
    server.stop_sending(1)
    assert server.is_live(1) and not server.is_sendable(1)
    assert 1 not in server.sendable_session_ids()
    server.send_end(1, error=True)  # a no-op now
    with pytest.raises(LocalProtocolError):
        server.send_data(1, b"x")
    assert server.data_to_send() == b""
    server.receive_data(encode_frame(FrameMetadata(session_id=1, status=MuxStatus.KEEP), b"m"))
    assert drain(server) == ([DataReceived(session_id=1, data=b"m")], None)


@given(
    payloads=st.lists(
        st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=20000)), max_size=12
    ),
    step=st.integers(1, 5000),
)
@settings(max_examples=60)
def test_client_server_pair(payloads: list[tuple[int, bytes]], step: int) -> None:
    client = MuxConnection(MuxRole.CLIENT)
    server = MuxConnection(MuxRole.SERVER)
    dests = [tcp("example.com", 80), udp("1.2.3.4", 53), tcp("::1", 22), tcp("x-y_z.test", 9)]
    sids = [client.open_session(d) for d in dests]
    sent: dict[int, list[bytes]] = {s: [] for s in sids}
    for index, data in payloads:
        sid = sids[index]
        if dests[index].network is Network.UDP:
            data = data[:MAX_PACKET_BYTES]
        client.send_data(sid, data)
        sent[sid].append(data)
    wire = client.data_to_send()
    got: dict[int, list[bytes]] = {s: [] for s in sids}
    opened = []
    for i in range(0, len(wire), step):
        server.receive_data(wire[i : i + step])
        events, error = drain(server)
        assert error is None
        for event in events:
            if isinstance(event, SessionOpened):
                opened.append((event.session_id, event.destination))
            elif isinstance(event, DataReceived):
                got[event.session_id].append(event.data)
    for sid, dest in zip(sids, dests, strict=True):
        if dest.network is Network.UDP:
            assert got[sid] == sent[sid]
        else:
            assert b"".join(got[sid]) == b"".join(sent[sid])
    first_sends = list(dict.fromkeys(sids[index] for index, _ in payloads))
    assert [s for s, _ in opened] == first_sends
    assert all(dests[sids.index(s)] == d for s, d in opened)
