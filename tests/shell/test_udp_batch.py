"""transport/udp_batch.py on loopback: runs of datagrams go out in GSO sends and come in
coalesced (GRO), and each arrives as the datagram it was; odd sizes and a kernel
without GSO fall back to one datagram per call."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from v2py.transport.udp_batch import BatchDatagramTransport, open_batch_endpoint


class _Sink(asyncio.DatagramProtocol):
    def __init__(self, want: int) -> None:
        self.got: list[bytes] = []
        self.want = want
        self.done = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)
        if len(self.got) >= self.want and not self.done.done():
            self.done.set_result(None)


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


async def _exchange(datagrams: list[bytes], *, gso: bool = True) -> tuple[list[bytes], int]:
    """(datagrams received, sendmsg calls)."""
    sink = _Sink(len(datagrams))
    receiver = await open_batch_endpoint(sink, _bound())
    sender = await open_batch_endpoint(asyncio.DatagramProtocol(), _bound())
    sender._gso = gso
    sends = 0
    real_sendmsg = sender._sock.sendmsg

    def counting_sendmsg(*args: Any) -> int:
        nonlocal sends
        sends += 1
        return real_sendmsg(*args)

    sender._sock = _Wrapped(sender._sock, sendmsg=counting_sendmsg)  # type: ignore[assignment]
    real_recvmsg = receiver._sock.recvmsg

    def counting_recvmsg(*args: Any) -> Any:
        reads.append(1)
        return real_recvmsg(*args)

    reads: list[int] = []
    receiver._sock = _Wrapped(receiver._sock, recvmsg=counting_recvmsg)  # type: ignore[assignment]
    try:
        sender.send_many(datagrams, receiver.get_extra_info("sockname"))
        async with asyncio.timeout(5):
            await sink.done
    finally:
        sender.close()
        receiver.close()
    if gso and receiver._gro:  # GSO sends over loopback arrive coalesced: fewer reads
        assert len(reads) < len(datagrams)
    return sink.got, sends


class _Wrapped:
    def __init__(self, sock: socket.socket, **overrides: Any) -> None:
        self._sock = sock
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def test_runs_go_out_in_one_send_and_arrive_datagram_by_datagram() -> None:
    datagrams = [os.urandom(1400) for _ in range(100)] + [os.urandom(300)]
    got, sends = await _exchange(datagrams)
    assert got == datagrams
    # 46 of 1400 bytes fill one send (65,000 bytes at most): 46 + 46 + 8 and the short one
    assert sends == 3


async def test_mixed_sizes_keep_their_order_and_boundaries() -> None:
    sizes = [1200, 1200, 50, 1200, 900, 900, 900, 1, 1400]
    datagrams = [os.urandom(n) for n in sizes]
    got, _ = await _exchange(datagrams)
    assert got == datagrams


async def test_without_gso_every_datagram_is_sent_alone() -> None:
    datagrams = [os.urandom(1000) for _ in range(10)]
    got, sends = await _exchange(datagrams, gso=False)
    assert got == datagrams and sends == 0


async def test_a_refused_gso_send_falls_back_for_good() -> None:
    sink = _Sink(5)
    receiver = await open_batch_endpoint(sink, _bound())
    sender = await open_batch_endpoint(asyncio.DatagramProtocol(), _bound())

    def refuse(*_: Any) -> int:
        raise OSError(22, "Invalid argument")

    sender._sock = _Wrapped(sender._sock, sendmsg=refuse)  # type: ignore[assignment]
    datagrams = [os.urandom(700) for _ in range(5)]
    try:
        sender.send_many(datagrams, receiver.get_extra_info("sockname"))
        async with asyncio.timeout(5):
            await sink.done
        assert sink.got == datagrams and not sender._gso
    finally:
        sender.close()
        receiver.close()


@pytest.mark.parametrize("count", [1, 2, 65])
async def test_close_reports_connection_lost_once(count: int) -> None:
    lost: list[object] = []

    class _Proto(asyncio.DatagramProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)

    transport = await open_batch_endpoint(_Proto(), _bound())
    assert isinstance(transport, BatchDatagramTransport)
    for _ in range(count):
        transport.close()
    await asyncio.sleep(0)
    assert lost == [None] and transport.is_closing()
