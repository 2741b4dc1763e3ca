"""Fair turns (``transport/turns.py``) and mKCP streams taking part in them
(``transport/mkcp.py``): the budget, the order of held work, a bulk stream held once
the budget is spent and served at a later iteration, a fresh stream never held."""

from __future__ import annotations

import asyncio

from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport import mkcp
from v2py.transport.mkcp import KcpStream, dial_kcp, listen_kcp
from v2py.transport.turns import SMALL_BYTES, TICK_BYTES, Turns, turns_of


class Taker:
    def __init__(self, log: list[str], name: str, size: int) -> None:
        self.log, self.name, self.size = log, name, size

    def take_turn(self) -> int:
        self.log.append(self.name)
        return self.size


async def test_turns_budget_and_order() -> None:
    turns = Turns(asyncio.get_running_loop())
    assert not turns.busy
    assert turns.admit(SMALL_BYTES)
    turns.charge(TICK_BYTES)
    assert turns.busy
    assert not turns.admit(SMALL_BYTES)  # bulk waits
    assert turns.admit(SMALL_BYTES - 1)  # small never does
    log: list[str] = []
    for name in "abc":
        turns.wait(Taker(log, name, TICK_BYTES // 2))
    await asyncio.sleep(0)  # one tick: a fresh budget, spent by a and b
    assert log == ["a", "b"]
    await asyncio.sleep(0)
    assert log == ["a", "b", "c"]
    assert turns_of(asyncio.get_running_loop()) is turns_of(asyncio.get_running_loop())


async def _echo(stream: KcpStream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()


async def test_bulk_stream_is_held_over_budget_and_fed_in_order_at_its_turn() -> None:
    loop = asyncio.get_running_loop()
    settings = KcpSettings()
    listener = await listen_kcp("127.0.0.1", 0, settings, _echo)
    try:
        async with asyncio.timeout(10):
            stream = await dial_kcp("127.0.0.1", listener.address[1], settings)
            turns = turns_of(loop)

            # A fresh stream is served at once even when the budget is spent.
            turns.charge(TICK_BYTES)
            stream.write(b"ping")
            assert await stream.read() == b"ping"

            # A bulk one is held: arrivals wait unprocessed for its turn.
            stream._moved = mkcp.BULK_AFTER_DATAGRAMS
            dropped = stream.connection.statistics().datagrams_dropped
            count = mkcp.TURN_DATAGRAMS + 5
            turns.charge(TICK_BYTES)
            for _ in range(count):
                stream._datagram_received(b"not an mKCP datagram")
            assert stream._held
            assert len(stream._inbox) == count
            assert stream.connection.statistics().datagrams_dropped == dropped
            await asyncio.sleep(0)  # one tick: one turn of TURN_DATAGRAMS, in order
            assert stream.connection.statistics().datagrams_dropped == dropped + (
                mkcp.TURN_DATAGRAMS
            )
            assert stream._held and len(stream._inbox) == 5
            while stream._held:
                await asyncio.sleep(0)
            assert stream.connection.statistics().datagrams_dropped == dropped + count

            # The inbox is bounded: beyond it arrivals are dropped, as a full socket would.
            turns.charge(TICK_BYTES)
            for _ in range(mkcp.HELD_DATAGRAMS_MAX + 3):
                stream._datagram_received(b"x")
            assert stream.held_dropped == 3
            while stream._held:
                await asyncio.sleep(0)

            # Still a working connection.
            stream.write(b"pong")
            assert await stream.read() == b"pong"
            stream.close()
            await stream.wait_closed()
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()
