"""The per-loop budget of bulk work per event-loop iteration, shared by every transport.

An asyncio callback that does bulk work never yields: with 100 busy connections one
loop iteration ran every connection's bulk step back to back (hundreds of ms), and a new
connection waits about one iteration for each of its steps (accept, handshake, dial,
reply), so its first byte took seconds while Go's scheduler keeps V2Ray at 0.05-0.3 s.
:class:`Turns` bounds what bulk work all connections of one loop do per iteration:
work over the budget is held by its owner and done at a later iteration, oldest first.
Small work (a new or interactive connection) is never held.

Two kinds of owners take part in the same budget, in bytes: the push relay
(``app/relay.py``, bytes relayed) and mKCP streams (``transport/mkcp.py``, datagrams
taken in and sent, each counted as ``DATAGRAM_TURN_BYTES`` because a datagram through
the Python mKCP core costs about as much loop time as relaying that many bytes).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Protocol

__all__ = ["SMALL_BYTES", "TICK_BYTES", "TurnTaker", "Turns", "turns_of"]

#: Bulk bytes (or their equivalent) all owners of one event loop move per loop iteration.
TICK_BYTES = 1024 * 1024
#: Arrivals smaller than this are relayed at once even over the iteration's budget.
SMALL_BYTES = 16 * 1024


class TurnTaker(Protocol):
    """An owner of held work, called back by :class:`Turns` when its turn comes."""

    def take_turn(self) -> int:
        """Do the held work; return its size in budget bytes (0 if there was none)."""
        ...


class Turns:
    """The per-loop budget of bulk bytes per iteration, and the owners waiting for it.

    ``admit`` (or ``busy`` then ``charge``) is asked from I/O and timer callbacks; a
    refused owner holds its work and calls ``wait``. ``_tick`` runs first thing in the
    next iteration (``call_soon``): it renews the budget and gives waiting owners their
    turn, oldest first, until the budget is spent; the rest wait for the next tick.
    """

    __slots__ = ("_loop", "_spent", "_waiting", "_armed", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._spent = 0
        self._waiting: deque[TurnTaker] = deque()
        self._armed = False

    @property
    def busy(self) -> bool:
        """True once this iteration's budget is spent: bulk work should wait."""
        return self._spent >= TICK_BYTES

    def admit(self, size: int) -> bool:
        """Charge ``size`` and say yes, unless it is bulk and the budget is spent."""
        if size >= SMALL_BYTES and self._spent >= TICK_BYTES:
            return False
        self._spent += size
        self._arm()
        return True

    def charge(self, size: int) -> None:
        """Count ``size`` bytes of work done outside a turn."""
        self._spent += size
        self._arm()

    def wait(self, taker: TurnTaker) -> None:
        """Queue ``taker`` for a turn at a later iteration."""
        self._waiting.append(taker)
        self._arm()

    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._armed = False
        self._spent = 0
        waiting = self._waiting
        while waiting and self._spent < TICK_BYTES:
            self._spent += waiting.popleft().take_turn()
        if waiting or self._spent:
            self._arm()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()


def turns_of(loop: asyncio.AbstractEventLoop) -> Turns:
    """The budget of ``loop`` (one per loop, made on first use)."""
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = Turns(loop)
    return turns
