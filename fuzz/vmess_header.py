"""Fuzz target: the VMess server core's request header, legacy and AEAD
(``v2py.protocol.vmess.server``; v2ray-core ``proxy/vmess/encoding/server.go``).

Random bytes never authenticate, so besides raw input the target builds real
headers: a fuzzer-chosen command section (every field, the padding nibble, the
checksum right or wrong, or fully raw bytes) sealed for a registered user with the
AEAD header (at a fuzzer-chosen clock offset) or the legacy header (HMAC auth + CFB),
followed by a body sealed with the header's own key, IV, security and options, or
by raw bytes; optionally with damaged header bytes, ``disableInsecureEncryption``, and
the same bytes replayed on a second connection (replay filter, session history, taint).
The result is cut into fuzzer-chosen reads.

Invariants: ``receive_data`` raises nothing but :class:`~v2py.errors.VmessError`,
and only after entering FAILED; after a failure nothing is queued for the client (a
4.34 server never answers a bad request) and ``drain_remaining`` never exceeds the
drain budget; at most one ``RequestReceived`` and one ``StreamEnded``; body data never
exceeds the bytes fed; an accepted request's response (header, data, end) is built
without error.

Run by hand: ``python -m fuzz.vmess_header -max_total_time=300``.
"""

from __future__ import annotations

import random

from fuzz._harness import FuzzInput, bounded, check, instrumented, main, split

with instrumented("v2py"):
    from v2py.common.fnv import fnv1a32
    from v2py.errors import VmessError
    from v2py.protocol.vmess.account import VmessUser, parse_uuid
    from v2py.protocol.vmess.body import BodyWriter
    from v2py.protocol.vmess.constants import RequestCommand, SecurityType
    from v2py.protocol.vmess.events import (
        DatagramReceived,
        DataReceived,
        RequestReceived,
        StreamEnded,
    )
    from v2py.protocol.vmess.header import seal_aead_request, seal_legacy_request
    from v2py.protocol.vmess.server import ServerState, VmessServerConnection
    from v2py.protocol.vmess.validator import UserValidator

NOW = 1_700_000_000
USER = VmessUser(id=parse_uuid("b831381d-6324-4d53-ad4f-8cda48b30811"), alter_id=1)
ADDRESSES = (
    b"\x01\x7f\x00\x00\x01",
    b"\x03" + bytes(15) + b"\x01",
    b"\x02\x0bexample.com",
    b"\x02\x09127.0.0.1",
    b"\x02\x05[::1]",
)


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _plaintext(inp: FuzzInput) -> bytes:
    """A command section with fuzzer-chosen fields (or raw bytes)."""
    kind = inp.u8()
    if kind & 0x80:
        return inp.take(inp.u8() + inp.u8())
    pad_len = inp.u8() & 0x0F
    security = inp.u8()
    if not kind & 0x40:
        security = (security % 6) & 0x0F  # mostly the known values
    command = inp.u8()
    if not kind & 0x20:
        command = 1 + command % 3
    head = (
        bytes([inp.u8() if kind & 0x10 else 1])
        + inp.take(32).ljust(32, b"\0")  # body IV, body key
        + bytes([inp.u8(), inp.u8() & (0xFF if kind & 0x08 else 0x0F)])  # V, option
        + bytes([(pad_len << 4) | (security & 0x0F), 0, command])
    )
    if command != RequestCommand.MUX:
        head += inp.take(2).rjust(2, b"\0")
        head += inp.take(inp.u8()) if kind & 0x04 else inp.choice(ADDRESSES)
    head += inp.take(pad_len).ljust(pad_len, b"\0")
    checksum = fnv1a32(head)
    if kind & 0x02:
        checksum ^= 1 + inp.u8()
    return head + checksum.to_bytes(4, "big")


def _body(inp: FuzzInput, pt: bytes) -> bytes:
    """Body bytes sealed with the header's own parameters (or raw ones)."""
    if inp.flag() or len(pt) < 38:
        return inp.take(inp.u16() % 4096)
    security = pt[35] & 0x0F
    security = SecurityType.LEGACY if security == SecurityType.UNKNOWN else security
    try:
        writer = BodyWriter(
            security,
            pt[34],
            pt[17:33],
            pt[1:17],
            packet=pt[37] == RequestCommand.UDP,
            rng=_rng(0).randbytes,
        )
    except ValueError:  # a security or option pair the server refuses first
        return inp.take(inp.u16() % 4096)
    out = bytearray()
    for _ in range(inp.u8() % 4):
        payload = inp.take(inp.u16() % 3000)
        if pt[37] == RequestCommand.UDP:
            if payload and writer.packet_fits(len(payload)):
                out += writer.seal_packet(payload)
        else:
            out += writer.seal(payload)
    if inp.flag():
        out += writer.seal_end()
    return bytes(out)


def _serve(
    validator: UserValidator, reads: list[bytes], rng: random.Random, disable_insecure: bool
) -> None:
    """One connection of the server core fed ``reads``, with the invariant checks."""
    core = VmessServerConnection(
        validator, now=NOW, rng=rng.randbytes, disable_insecure=disable_insecure
    )
    fed = 0
    requests = ended = body = 0
    failed = False
    for piece in reads:
        try:
            core.receive_data(piece)
        except VmessError:
            failed = True
        fed += len(piece)
        while (event := core.next_event()) is not None:
            if isinstance(event, RequestReceived):
                requests += 1
                header = event.header
                check(0 <= header.port <= 0xFFFF, f"port {header.port}")
                check(header.command in (1, 2, 3), f"command {header.command}")
            elif isinstance(event, (DataReceived, DatagramReceived)):
                body += len(event.data)
            else:
                check(isinstance(event, StreamEnded), f"unexpected event {event!r}")
                ended += 1
        if failed:
            check(core.state is ServerState.FAILED, f"VmessError in state {core.state}")
            check(not core.data_to_send(), "bytes queued for a refused client")
            check(
                0 <= core.drain_remaining <= core.drain_budget,
                f"drain {core.drain_remaining} of {core.drain_budget}",
            )
            break
    check(requests <= 1 and ended <= 1, f"{requests} requests, {ended} ends")
    bounded(body, fed, factor=1, slack=0, what="body")
    if requests and not failed:
        accepted = core.header
        check(accepted is not None and core.user is not None, "request without header/user")
        if accepted is not None and accepted.command == RequestCommand.UDP:
            core.send_datagram(b"reply")
        else:
            core.send_data(b"reply")
        core.send_eof()
        check(len(core.data_to_send()) > 0, "no response bytes")


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    first = inp.u8()
    mode = (first & 0x03) % 3
    disable_insecure = bool(first & 0x04)
    replay = bool(first & 0x08)  # the same bytes again on a second connection
    rng = _rng(len(data))
    validator = UserValidator(NOW, rng.randbytes, legacy_band_s=1)
    validator.add_user(USER)
    if mode == 0:
        wire = inp.take(inp.u16())
    else:
        pt = _plaintext(inp)
        offset = (inp.u8() % 11 - 5) * 30  # -150 .. +150 s: both sides of the window
        if mode == 1:
            header = seal_aead_request(USER.cmd_key, pt, NOW + offset, rng.randbytes)
        else:
            auth_id = USER.id if inp.flag() else USER.alter_id_list[0]
            header = seal_legacy_request(USER.cmd_key, auth_id, pt, NOW + offset // 5)
        if first & 0x10:  # damage the sealed header (AEAD tags, legacy checksum)
            damaged = bytearray(header)
            for _ in range(1 + inp.u8() % 3):
                damaged[inp.u16() % len(damaged)] ^= inp.u8() or 1
            header = bytes(damaged)
        wire = header + _body(inp, pt)
    reads = split(wire, inp)
    if inp.flag():
        reads.append(b"")
    _serve(validator, reads, rng, disable_insecure)
    if replay:
        _serve(validator, reads, rng, disable_insecure)


def seeds() -> list[bytes]:
    def fields(kind: int, security: int, command: int, option: int, address: int) -> bytes:
        # the command byte is read as 1 + byte % 3
        out = bytes([kind, 3, security, command - 1]) + bytes(range(1, 33))
        out += bytes([0x5A, option])
        if command != RequestCommand.MUX:
            out += b"\x01\xbb" + bytes([address])
        return out + b"pad" + b"\x05"  # 3 padding bytes, clock offset index 5 (0 s)

    good = []
    for mode in (1, 2):
        for security, option, command in (
            (3, 0x0D, 1),
            (4, 0x05, 1),
            (1, 0x01, 1),
            (5, 0x01, 2),
            (3, 0x0D, 3),
            (0, 0x00, 1),
        ):
            head = bytes([mode]) + fields(0, security, command, option, 0)
            if mode == 2:
                head += b"\x01"
            # a sealed body: two payloads and the end marker
            head += b"\x00\x02" + b"\x00\x05hello" + b"\x00\x03abc" + b"\x01"
            good.append(head)
    replayed = [bytes([good[0][0] | 0x08]) + good[0][1:], bytes([good[6][0] | 0x0C]) + good[6][1:]]
    # damaged: after the clock offset (and the legacy id flag) one flip at byte 20
    damaged = []
    for seed, cut in ((good[0], 1 + 4 + 32 + 2 + 3 + 3 + 1), (good[6], 1 + 4 + 32 + 2 + 3 + 3 + 2)):
        damaged.append(bytes([seed[0] | 0x10]) + seed[1:cut] + b"\x00\x00\x14\x01" + seed[cut:])
    return [*good, *replayed, *damaged, b"\x00\x00\x40" + bytes(64)]


if __name__ == "__main__":
    main(test_one_input, seeds)
