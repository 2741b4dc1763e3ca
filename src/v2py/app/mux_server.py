"""Serving Mux.Cool on every inbound (v2ray-core common/mux/server.go;
``docs/spec/transports.md`` sections 1.4-1.6).

4.34 wraps the dispatcher of every inbound in a mux server: a request whose
destination address is the domain ``v1.mux.cool`` (any port, any inbound protocol:
VMess command 3 arrives as ``v1.mux.cool:0``) is not routed; its stream carries Mux.Cool
frames and each sub-connection is dispatched like an ordinary connection, with the
outer connection's inbound tag, user, level, source and sniffing settings. So
routing, sniffing, the access log, stats and the outbound's policy timeouts apply
per sub-connection.

The outer connection lives while frames arrive or responses leave, up to the
level's ``connIdle`` without either (4.34 has no mux keepalive). A frame that breaks
the protocol aborts every session (End with the error option) and reading stops;
the connection closes when the client sends anything more or goes idle, as 4.34.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from v2py.app.log import AccessMessage
from v2py.app.mux_endpoint import MuxEndpoint, MuxSubStream
from v2py.app.packet import PacketLink, fed_link
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.relay import ActivityTimer
from v2py.app.session import Session, session_logger
from v2py.errors import MuxError, ProtocolError
from v2py.protocol.mux import MUX_COOL_HOST, MuxRole
from v2py.transport.multiplex import cancel_and_wait
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

log = logging.getLogger(__name__)

#: Bound on waiting for the sub-connection tasks once the connection is torn down.
TEARDOWN_TIMEOUT_S = 5.0


class Dispatch(Protocol):
    """The dispatcher that sub-connections are handed to."""

    async def dispatch(self, session: Session, stream: Stream) -> None: ...

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None: ...


def is_mux_request(session: Session) -> bool:
    """Whether ``session`` names the mux pseudo-destination (any port, any network)."""
    dest = session.destination
    return dest is not None and dest.address == MUX_COOL_HOST


class MuxServer:
    """A dispatcher that serves ``v1.mux.cool`` requests itself and passes every other
    one to ``inner`` (4.34 ``mux.Server``)."""

    def __init__(self, inner: Dispatch, policy: PolicyTable) -> None:
        self.inner = inner
        self.policy = policy
        #: The mux connections being served now.
        self.connections: set[MuxServerConnection] = set()

    async def dispatch(self, session: Session, stream: Stream) -> None:
        if not is_mux_request(session):
            await self.inner.dispatch(session, stream)
            return
        connection = MuxServerConnection(
            session, stream, self.inner, self.policy.for_level(session.level)
        )
        self.connections.add(connection)
        try:
            await connection.serve()
        finally:
            self.connections.discard(connection)

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None:
        await self.inner.dispatch_packets(session, link)


class MuxServerConnection:
    """One mux connection on the server: reads frames, runs one task per session."""

    def __init__(
        self,
        outer: Session,
        stream: Stream,
        dispatcher: Dispatch,
        timeouts: Timeouts,
        *,
        claim: Callable[[MuxSubStream], bool] | None = None,
    ) -> None:
        """``claim``: offered each new session first; one it takes (True) is the
        caller's own (a reverse bridge's control session): not dispatched, not waited
        for when the client has finished sending."""
        self.outer = outer
        self._claim = claim
        self.stream = stream
        self.dispatcher = dispatcher
        self.timeouts = timeouts
        self._slog = session_logger(log, outer)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: ActivityTimer | None = None
        # A stream that can push (VMess over TCP) is read from its I/O callbacks, and
        # sessions then push too: no task switch per frame.
        push: Any = stream if getattr(stream, "can_push", False) else None
        self._push_stream = push
        self.endpoint = MuxEndpoint(
            MuxRole.SERVER,
            emit=self._emit,
            drain=stream.drain,
            on_open=self._on_open,
            session_buffer=timeouts.buffer_size,
            peer=stream.peer,
            local=stream.local,
            write_paused=(lambda: bool(push.write_paused)) if push is not None else None,
            when_writable=push.when_writable if push is not None else None,
        )

    def _emit(self, data: bytes) -> None:
        if self._timer is not None:
            self._timer.touch()
        self.stream.write(data)

    async def serve(self) -> None:
        """Serve until the client ends the connection (and every session is done), the
        connection idles out, or the client breaks the protocol."""
        task = asyncio.current_task()
        assert task is not None
        self._timer = timer = ActivityTimer(task, self.timeouts.conn_idle)
        endpoint = self.endpoint
        stream = self.stream
        try:
            if self._push_stream is not None:
                if not await self._pushed_input(timer):
                    return
            else:
                while True:
                    if endpoint.paused:
                        await endpoint.wait_room()
                    data = await stream.read(READ_CHUNK_BYTES)
                    timer.touch()
                    try:
                        endpoint.feed(data)
                    except MuxError as exc:
                        self._slog.info("mux: %s; all sessions aborted", exc)
                        # 4.34 stops reading; the connection ends with the client's next
                        # write (or EOF) or the idle timer.
                        await stream.read(1)
                        return
                    if not data:
                        break
            # The client finished sending: responses may still be on their way.
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            if not timer.expired:
                raise
            with contextlib.suppress(Exception):
                task.uncancel()
            self._slog.info("mux: connection idle, closing")
        except (OSError, ProtocolError) as exc:
            self._slog.info("mux: connection ends: %s", exc)
        finally:
            timer.cancel()
            endpoint.abort(ConnectionResetError("mux connection closed"))
            await self._teardown()

    async def _pushed_input(self, timer: ActivityTimer) -> bool:
        """Feed the pushed input until its end (True) or a protocol error (False: the
        connection is over once anything more arrives)."""
        stream = self._push_stream
        endpoint = self.endpoint
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        slog = self._slog

        def resume() -> None:
            if not done.done():
                stream.resume_push()

        class Feeder:
            def pushed_data(self, data: bytes | bytearray) -> None:
                if done.done():
                    return
                timer.touch()
                try:
                    endpoint.feed(data)
                except MuxError as exc:
                    slog.info("mux: %s; all sessions aborted", exc)
                    done.set_result(False)
                    return
                except Exception as exc:  # never raise into the I/O callback
                    done.set_exception(exc)
                    return
                if endpoint.paused:
                    stream.pause_push()
                    endpoint.when_room(resume)

            def pushed_eof(self) -> None:
                if not done.done():
                    endpoint.feed(b"")
                    done.set_result(True)

            def pushed_error(self, exc: BaseException) -> None:
                if not done.done():
                    done.set_exception(exc)

        stream.start_push(Feeder())
        try:
            ok = await done
        finally:
            stream.stop_push()
        if not ok:
            # 4.34 stops reading; the connection ends with the client's next write (or
            # EOF) or the idle timer.
            await self.stream.read(1)
        return ok

    async def _teardown(self) -> None:
        await cancel_and_wait(self._tasks, TEARDOWN_TIMEOUT_S)

    # -- sessions -------------------------------------------------------------------
    def _on_open(self, sub: MuxSubStream) -> None:
        if self._claim is not None and self._claim(sub):
            return
        outer = self.outer
        session = Session(
            inbound_tag=outer.inbound_tag,
            source=outer.source,
            destination=sub.destination,
            user_email=outer.user_email,
            level=outer.level,
            sniffing=outer.sniffing,
        )
        # 4.34's mux server logs its sub-connections with the inbound's source as a
        # destination (common/mux/server.go); over mKCP 4.34 would print udp: here. With
        # no source (a reverse bridge's link) the From is nil and prints as nothing.
        source = f"tcp:{session.source_text()}" if outer.source is not None else ""
        session.access = AccessMessage(source, str(sub.destination or ""), outer.user_email)
        task = asyncio.get_running_loop().create_task(self._serve_session(session, sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_session(self, session: Session, sub: MuxSubStream) -> None:
        error = True
        try:
            if sub.is_packet:
                await self._serve_packets(session, sub)
                error = False
            else:
                await self.dispatcher.dispatch(session, sub)
                # A relay that completed sent End itself (write_eof); one that timed
                # out or was cut did not: End with the error option, as 4.34.
                error = not sub.end_sent
        except Exception as exc:  # one session's failure never ends the others
            session_logger(log, session).info("mux: session %d ends: %s", sub.session_id, exc)
        finally:
            sub.finish(error=error)

    async def _serve_packets(self, session: Session, sub: MuxSubStream) -> None:
        async with fed_link(sub) as link:
            await self.dispatcher.dispatch_packets(session, link)
