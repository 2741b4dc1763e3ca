"""Fuzz target: Mux.Cool frames and the session table (``v2py.protocol.mux``;
v2ray-core ``common/mux/{frame,reader,session,server,client}.go``).

Both roles parse the same frames; the server also opens sessions from New frames.
The target feeds fuzzer bytes in fuzzer-chosen reads and answers the way the shells
do (data back on a new session, End on some), so the send side runs against
whatever state the peer's frames made.

Invariants: ``receive_data`` raises nothing; ``next_event`` raises nothing but
:class:`~v2py.errors.MuxError`, and once it has it keeps raising it; delivered data
never exceeds the bytes fed; the live session table never exceeds the 16-bit id
space and is empty after EOF; replies stay proportional to the frames received.

Run by hand: ``python -m fuzz.mux_frames -max_total_time=300``.
"""

from __future__ import annotations

from fuzz._harness import FuzzInput, bounded, check, instrumented, main

with instrumented("v2py"):
    from v2py.common.net import Destination, Network
    from v2py.errors import MuxError
    from v2py.protocol.mux import (
        ConnectionEnded,
        DataReceived,
        FrameMetadata,
        MuxConnection,
        MuxOption,
        MuxRole,
        MuxStatus,
        SessionEnded,
        SessionOpened,
        encode_frame,
    )

#: Largest reply a single received frame can cause (an End frame, or echoed data).
REPLY_PER_BYTE = 4
REPLY_SLACK = 256


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    flags = inp.u8()
    role = MuxRole.SERVER if flags & 1 else MuxRole.CLIENT
    conn = MuxConnection(role)
    if role is MuxRole.CLIENT:
        for port in range(inp.u8() % 4):
            network = Network.UDP if port & 1 else Network.TCP
            sid = conn.open_session(Destination(network, "127.0.0.1", 1000 + port))
            conn.send_data(sid, b"hi")
    conn.data_to_send()
    pieces = inp.pieces()
    if flags & 2:
        pieces.append(b"")
    fed = 0
    delivered = 0
    replied = 0
    error: MuxError | None = None
    for piece in pieces:
        conn.receive_data(piece)
        fed += len(piece)
        try:
            while (event := conn.next_event()) is not None:
                if isinstance(event, SessionOpened):
                    check(role is MuxRole.SERVER, "a client opened a session")
                    if conn.is_sendable(event.session_id):
                        conn.send_data(event.session_id, b"ok")
                        if flags & 4:
                            conn.send_end(event.session_id, error=bool(flags & 8))
                elif isinstance(event, DataReceived):
                    delivered += len(event.data)
                elif isinstance(event, SessionEnded):
                    if conn.is_sendable(event.session_id):
                        conn.send_end(event.session_id)
                else:
                    check(isinstance(event, ConnectionEnded), f"unexpected event {event!r}")
                    check(conn.active_sessions == 0, "sessions live after EOF")
        except MuxError as exc:
            error = exc
        replied += len(conn.data_to_send())
        check(conn.active_sessions <= 0x10000, f"{conn.active_sessions} live sessions")
        if error is not None:
            check(conn.failed, "MuxError without failed")
            try:
                conn.next_event()
            except MuxError:
                pass
            else:
                raise AssertionError("MuxError not raised again")
            break
    bounded(delivered, fed, factor=1, slack=0, what="delivered")
    bounded(replied, fed, factor=REPLY_PER_BYTE, slack=REPLY_SLACK, what="replies")
    stats = conn.statistics()
    check(stats.active_sessions == conn.active_sessions, "statistics disagree")


def seeds() -> list[bytes]:
    def frame(sid: int, status: MuxStatus, data: bytes | None = None, **kw: object) -> bytes:
        option = MuxOption.DATA if data is not None else MuxOption(0)
        meta = FrameMetadata(session_id=sid, status=status, option=option, **kw)  # type: ignore[arg-type]
        return encode_frame(meta, data)

    new_tcp = frame(
        1, MuxStatus.NEW, b"GET /", destination=Destination(Network.TCP, "example.com", 80)
    )
    new_udp = frame(
        2, MuxStatus.NEW, b"\x00" * 30, destination=Destination(Network.UDP, "8.8.8.8", 53)
    )
    keep = frame(1, MuxStatus.KEEP, b"more")
    end = frame(1, MuxStatus.END)
    alive = frame(0, MuxStatus.KEEP_ALIVE)

    def framed(flags: int, *reads: bytes) -> bytes:
        out = bytes([flags])
        if not flags & 1:
            out += b"\x02"
        for r in reads:
            for i in range(0, len(r), 255):
                out += bytes([len(r[i : i + 255])]) + r[i : i + 255]
        return out

    return [
        framed(1, new_tcp, keep + end),
        framed(3, new_udp + alive, new_tcp),
        framed(5, new_tcp + new_tcp),
        framed(0, keep, frame(2, MuxStatus.KEEP, b"x" * 40), end),
        framed(
            1, frame(3, MuxStatus.NEW, b"z" * 300, destination=Destination(Network.UDP, "::1", 53))
        ),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
