"""The SOCKS inbound's handshake in push mode (in the stream's receive callbacks) and in
read mode (a stream that cannot push) give the same request, pipelined payload, end and
reply bytes, however the client's bytes are split."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.servers import socks_inbound
from v2py.errors import ProtocolError
from v2py.protocol.socks5 import AuthMethod, RequestReceived, Socks5ServerConnection
from v2py.proxy.socks_inbound import _HandshakeTarget
from v2py.transport.stream import PushTarget

GREETING = b"\x05\x01\x02"
AUTH = b"\x01\x05alice\x02pw"
REQUEST = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"
WIRE = GREETING + AUTH + REQUEST + PAYLOAD
#: The address the streams below report as their local end.
LOCAL = ("127.0.0.1", 1080)
#: method 02 chosen, RFC 1929 success, the CONNECT accepted (bound to LOCAL).
REPLIES = b"\x05\x02\x01\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


class _ReadStream:
    """Hands the pieces out through ``read`` (cannot push)."""

    can_push = False
    local = LOCAL

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)
        self.written = bytearray()

    async def read(self, max_bytes: int = 65536) -> bytes:
        await asyncio.sleep(0)
        return self._pieces.pop(0) if self._pieces else b""

    def write(self, data: bytes) -> None:
        self.written += data

    async def rest(self) -> bytes:
        """What the handshake left unread."""
        return b"".join(self._pieces)


class _PushStream:
    """Pushes the pieces from loop callbacks, as a TCP stream's data_received does."""

    can_push = True
    local = LOCAL

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)
        self._target: PushTarget | None = None
        self.written = bytearray()
        self.left: list[bytes] = []  # what arrived after push stopped (stays for read)

    def start_push(self, target: PushTarget) -> None:
        self._target = target
        asyncio.get_running_loop().call_soon(self._next)

    def stop_push(self) -> None:
        self._target = None

    def _next(self) -> None:
        if not self._pieces:
            if self._target is not None:
                self._target.pushed_eof()
            return
        piece = self._pieces.pop(0)
        if self._target is None:
            self.left.append(piece)
        else:
            self._target.pushed_data(piece)
        asyncio.get_running_loop().call_soon(self._next)

    def write(self, data: bytes) -> None:
        self.written += data

    async def rest(self) -> bytes:
        """What arrived after push mode stopped (it stays in the stream for the relay)."""
        await asyncio.sleep(0.01)
        return b"".join(self.left + self._pieces)


def _core() -> Socks5ServerConnection:
    return Socks5ServerConnection(auth_method=AuthMethod.PASSWORD, accounts={"alice": "pw"})


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


async def _both(pieces: list[bytes]) -> tuple[tuple[object, ...], tuple[object, ...]]:
    inbound = socks_inbound()
    results: list[tuple[object, ...]] = []
    streams: tuple[_ReadStream | _PushStream, ...] = (_ReadStream(pieces), _PushStream(pieces))
    for stream in streams:
        try:
            async with asyncio.timeout(5):
                request, pending, _ended = await inbound._handshake(stream, _core())  # type: ignore[arg-type]
            pending += await stream.rest()
            results.append(("ok", request, pending, bytes(stream.written)))
        except ProtocolError as exc:
            results.append(("refused", str(exc), bytes(stream.written)))
    return results[0], results[1]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=12))
def test_push_and_read_modes_agree(cuts: list[int]) -> None:
    by_read, by_push = asyncio.run(_both(_split(WIRE, cuts)))
    assert by_read == by_push
    status, request, pending, written = by_push
    assert status == "ok"
    assert isinstance(request, RequestReceived)
    assert (request.address, request.port, request.username) == ("example.com", 443, "alice")
    assert written == REPLIES
    assert pending == PAYLOAD


@pytest.mark.parametrize(
    "wire",
    [
        GREETING + AUTH[:4],  # the end during the handshake
        b"\x05\x01\x00",  # no acceptable method: the refusal is written
        GREETING + b"\x01\x05alice\x02no",  # wrong password
    ],
)
async def test_refusals_agree(wire: bytes) -> None:
    by_read, by_push = await _both([wire[:2], wire[2:]])
    assert by_read == by_push
    assert by_push[0] == "refused"


async def test_connect_reply_leaves_from_the_receive_callback() -> None:
    """The reply to CONNECT is written as the request arrives, before the serving task
    wakes (4.34 answers before it dispatches)."""
    stream = _PushStream([])
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    target = _HandshakeTarget(stream, _core(), done, LOCAL)  # type: ignore[arg-type]
    target.pushed_data(GREETING + AUTH + REQUEST)
    assert bytes(stream.written) == REPLIES
    assert done.done() and target.request is not None


async def test_udp_associate_is_not_answered_by_the_handshake() -> None:
    stream = _PushStream([])
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    core = Socks5ServerConnection(auth_method=AuthMethod.NO_AUTH, udp_enabled=True)
    target = _HandshakeTarget(stream, core, done, LOCAL)  # type: ignore[arg-type]
    target.pushed_data(b"\x05\x01\x00" + b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    assert bytes(stream.written) == b"\x05\x00"  # the greeting's answer only
    assert done.done() and target.request is not None
