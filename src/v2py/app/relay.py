"""Bidirectional copy between two streams with V2Ray's policy timeouts.

connIdle closes a connection with no traffic in either direction; once one
direction has ended, the other gets uplinkOnly / downlinkOnly seconds
(v2ray-core common/signal.ActivityTimer as used by every proxy handler).

Two ways to copy, same semantics: when both streams can push (TCP, and VMess or
sniffing layers over TCP: :class:`~v2py.transport.stream.PushStream`), each arrival
is written on from the I/O callback itself (no task switch per read, so a
request/response crosses the process in fewer loop iterations); otherwise (mKCP) a
child task and the body each loop over ``read`` / ``write`` / ``drain``.

Fairness of the push mode: a read callback that writes on at once never yields, and
libuv (uvloop) reads a ready socket up to 32 times per event-loop iteration (asyncio's
selector loop once). With 100 bulk downloads each iteration moved hundreds of MB
before the loop looked at anything else, so a new connection's accept, handshake and
first byte waited seconds per step (7-10 s to its first byte; Go's scheduler keeps
V2Ray at 0.05-0.24 s). Two limits fix that:

* a pump takes a *turn* of at most ``TURN_BYTES``: past it, its source pauses until the
  next loop iteration (``call_soon``), so one connection gets about one socket read
  per iteration (libuv's 32-read burst is cut short);
* a per-loop budget (:class:`~v2py.transport.turns.Turns`, ``TICK_BYTES``) bounds the
  bulk bytes *all* push relays (and mKCP streams) move in one iteration. An arrival
  over the budget is held (its source paused) and relayed at a later iteration, oldest
  first. With 100 sealing downloads one
  iteration had still taken ~200 ms (100 reads of 256 KiB, each sealed and written),
  and every step of a new connection (accept, handshake read, dial, reply) waits for
  about one iteration; with the budget an iteration takes a few ms whatever the number
  of bulk connections. Arrivals under ``SMALL_BYTES`` (interactive traffic) are always
  relayed at once, and handshakes, which do not go through here, are never held.

Throughput is unchanged: the same bytes move, in more, shorter iterations.

The end of one direction is passed on only to a stream whose ``write_eof`` is a proxy
protocol's own end of data (a VMess end chunk, a Mux.Cool End, a chain link closing:
``relays_end``, see :func:`~v2py.transport.stream.passes_end`). A transport connection
(TCP, TLS, WebSocket, domain socket, HTTP/2, QUIC, mKCP) is never half-closed: 4.34's
proxies never call ``CloseWrite`` (freedom, socks, http, dokodemo-door copy and return),
so a target whose client half-closed sees its end only when the relay ends (the other
direction's ``downlinkOnly`` / ``uplinkOnly`` timer, or both directions done), and so
does a client whose target finished first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from v2py.app.idle import IdleTimer
from v2py.app.policy import Timeouts
from v2py.transport.stream import Stream, passes_end
from v2py.transport.turns import SMALL_BYTES, TICK_BYTES, Turns, turns_of

__all__ = ["RELAY_READ_BYTES", "SMALL_BYTES", "TICK_BYTES", "TURN_BYTES", "relay"]

#: Largest read per copy step: a whole uvloop read (256,000 bytes) passes unsplit.
RELAY_READ_BYTES = 256 * 1024
#: Bytes a push-mode direction relays before it yields to the rest of the loop (one
#: full uvloop read; see the module docstring).
TURN_BYTES = 256 * 1024
# TICK_BYTES (the per-iteration budget) and SMALL_BYTES (arrivals never held) live in
# transport/turns.py: mKCP streams spend the same budget.


def _nothing() -> None:
    """A callback that does nothing (released timers and pumps)."""


class ActivityTimer(IdleTimer):
    """Cancels ``task`` after ``timeout`` seconds without ``touch()`` (an
    :class:`~v2py.app.idle.IdleTimer` whose end is the relay task's cancellation)."""

    def __init__(self, task: asyncio.Task[object], timeout: float) -> None:
        self._task = task
        self._directions = 2  # copy directions still running (end_direction)
        self.expired = False
        # task.get_loop(), not get_running_loop(): a getpid() syscall on 3.11
        super().__init__(task.get_loop(), timeout, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def cancel(self) -> None:
        """Never fire; also drops the bound ``_expire`` the timer holds of itself, so
        the timer, its task and what the task's coroutine held are freed at once
        rather than by the cycle collector (every user cancels it when done)."""
        super().cancel()
        self._on_idle = _nothing

    def end_direction(self, then: float) -> None:
        """A copy direction ended: the other one gets ``then`` idle seconds; once both
        have ended the relay is over and there is nothing left to time."""
        self._directions -= 1
        if self._directions > 0:
            self.set_timeout(then)


async def _copy(src: Stream, dst: Stream, timer: ActivityTimer, then: float) -> None:
    """Copy until ``src`` ends, pass the end on to ``dst`` (``passes_end``), then
    allow ``then`` idle seconds."""
    read = src.read
    write = dst.write
    drain = dst.drain
    touch = timer.touch
    while True:
        data = await read(RELAY_READ_BYTES)
        if not data:
            break
        touch()
        write(data)
        await drain()
    if passes_end(dst):
        dst.write_eof()
    timer.end_direction(then)


class _Pump:
    """One direction of a push relay: ``src`` pushes into here, we write to ``dst``."""

    __slots__ = (
        "_relay",
        "_src",
        "_dst",
        "_then",
        "_writable",
        "_end_turn",
        "_turn",
        "_held",
        "_stash",
        "_eof_held",
        "_pass_end",
    )

    def __init__(self, relay: _PushRelay, src: Any, dst: Any, then: float) -> None:
        self._relay = relay
        self._src = src
        self._dst = dst
        self._then = then
        self._writable = self._on_writable  # one bound method per pump, not per pause
        self._end_turn = self._on_next_turn
        self._turn = 0  # bytes relayed in this turn
        self._held = False  # src paused: for a turn, for the budget, or until dst is writable
        self._stash: bytes | bytearray | None = None  # an arrival waiting for the budget
        self._eof_held = False  # the end arrived behind the stash: pass it on after it
        self._pass_end = passes_end(dst)

    def pushed_data(self, data: bytes | bytearray) -> None:
        relay = self._relay
        if relay.finished:
            return
        if self._stash is not None or not relay.turns.admit(len(data)):
            if self._stash is None:
                self._stash = data
                relay.turns.wait(self)
            else:  # more from the same read, delivered before the pause took effect
                self._stash = bytes(self._stash) + bytes(data)
            if not self._held:
                self._held = True
                self._src.pause_push()
            return
        self._deliver(data)

    def take_turn(self) -> int:
        """Relay the held arrival (called by :class:`Turns`); returns its size."""
        data, self._stash = self._stash, None
        if data is None or self._relay.finished:
            return 0
        self._held = False
        self._deliver(data)
        if self._eof_held:
            self._eof_held = False
            self._end()
        elif not self._held:
            self._src.resume_push()
        return len(data)

    def _deliver(self, data: bytes | bytearray) -> None:
        relay = self._relay
        relay.timer.touch()
        dst = self._dst
        try:
            dst.write(data)
        except BaseException as exc:
            relay.fail(exc)
            return
        if dst.write_paused:
            self._turn = 0
            self._held = True
            self._src.pause_push()
            dst.when_writable(self._writable)
            return
        turn = self._turn + len(data)
        if turn < TURN_BYTES:
            self._turn = turn
        elif not self._held:
            # Yield: the rest of the loop runs before this source is read again.
            self._turn = 0
            self._held = True
            self._src.pause_push()
            relay.loop.call_soon(self._end_turn)

    def _on_next_turn(self) -> None:
        if self._stash is not None:
            return  # waiting for the budget: take_turn resumes
        if self._held and not self._relay.finished and not self._dst.write_paused:
            self._held = False
            self._src.resume_push()
        elif self._held and not self._relay.finished:
            self._dst.when_writable(self._writable)

    def _on_writable(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._relay.fail(exc)
        elif not self._relay.finished and self._stash is None:
            self._held = False
            self._src.resume_push()

    def pushed_eof(self) -> None:
        if self._stash is not None:
            self._eof_held = True  # after the held arrival (take_turn)
            return
        self._end()

    def _end(self) -> None:
        relay = self._relay
        if relay.finished:
            return
        if self._pass_end:
            try:
                self._dst.write_eof()
            except BaseException as exc:
                relay.fail(exc)
                return
        relay.timer.end_direction(self._then)
        relay.direction_done()

    def pushed_error(self, exc: BaseException) -> None:
        self._relay.fail(exc)

    def release(self) -> None:
        """Drop the pump's own bound methods once the relay has finished (they are
        never used then): without the self-reference the pump, its streams and
        everything they hold are freed at once instead of by the cycle collector."""
        self._writable = _ignore_writable
        self._end_turn = _nothing


def _ignore_writable(exc: BaseException | None) -> None:
    """A released pump's writable callback (see :meth:`_Pump.release`)."""


class _PushRelay:
    """Both directions of a push relay and the future the relaying task waits on."""

    def __init__(self, task: asyncio.Task[Any], timer: ActivityTimer) -> None:
        self.timer = timer
        self.finished = False
        self._left = 2
        self.loop = task.get_loop()
        self.turns: Turns = turns_of(self.loop)
        self.done: asyncio.Future[None] = self.loop.create_future()

    def direction_done(self) -> None:
        self._left -= 1
        if self._left == 0 and not self.finished:
            self.finished = True
            if not self.done.done():
                self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            if not self.done.done():
                self.done.set_exception(exc)


async def _push_relay(
    inbound: Any, outbound: Any, timeouts: Timeouts, task: asyncio.Task[Any], timer: ActivityTimer
) -> None:
    state = _PushRelay(task, timer)
    down = _Pump(state, inbound, outbound, timeouts.downlink_only)
    up = _Pump(state, outbound, inbound, timeouts.uplink_only)
    try:
        inbound.start_push(down)
        if not state.finished:
            outbound.start_push(up)
        await state.done
    finally:
        state.finished = True
        inbound.stop_push()
        outbound.stop_push()
        down.release()
        up.release()


async def _task_relay(
    inbound: Stream, outbound: Stream, timeouts: Timeouts, timer: ActivityTimer
) -> None:
    try:
        # Uplink in a child task, downlink in this one: the group still cancels the
        # body when the child fails (and the child when the body does), with one task
        # and no wrapper coroutines less per connection.
        async with asyncio.TaskGroup() as group:
            group.create_task(_copy(inbound, outbound, timer, timeouts.downlink_only))
            await _copy(outbound, inbound, timer, timeouts.uplink_only)
    except BaseExceptionGroup as group_error:
        # Surface the first real failure (OSError, ProtocolError) as itself.
        raise group_error.exceptions[0] from None


async def relay(inbound: Stream, outbound: Stream, timeouts: Timeouts) -> bool:
    """Copy both ways until both directions end or a policy timeout fires.

    ``inbound`` is the client side, ``outbound`` the server side. Returns False when
    a timeout ended the relay. Never closes either stream (the caller owns them).
    """
    task = asyncio.current_task()
    assert task is not None
    timer = ActivityTimer(task, timeouts.conn_idle)
    try:
        if getattr(inbound, "can_push", False) and getattr(outbound, "can_push", False):
            await _push_relay(inbound, outbound, timeouts, task, timer)
        else:
            await _task_relay(inbound, outbound, timeouts, timer)
    except asyncio.CancelledError:
        if timer.expired:
            # uncancel so that the caller's own cancellation state stays intact
            with contextlib.suppress(Exception):
                task.uncancel()
            return False
        raise
    finally:
        timer.cancel()
    return True
