"""The reverse proxy: bridges and portals (v2ray-core 4.34 ``app/reverse``;
``docs/reverse.md``).

A **bridge** (behind NAT) dispatches connections of its own to the TCP destination
``domain:0`` with the inbound tag ``tag`` (its routing sends them to the portal's
server) and serves Mux.Cool over each, as a mux *server*: every session it receives
is dispatched with the inbound tag ``tag`` (routing sends them to the local
service), except the portal's control session (``reverse.internal.v2ray.com``),
whose messages say whether the connection stays ACTIVE or DRAINs.

A **portal** is an outbound tagged ``tag``. A connection routed to it whose
destination is the domain ``domain`` is a bridge's connection: the portal becomes a
mux *client* over it (with a control session and a heartbeat every 2 s). Any other
connection routed to it becomes a mux session on the least busy bridge connection.

The pure parts (control message, worker rules) are in ``v2py.protocol.reverse``; the
mux machinery is ``app/mux_server.py`` (bridge) and ``app/mux_client.py``'s
``MuxWorker`` (portal). Difference from 4.34: a portal never picks a bridge
connection that has closed (4.34 keeps it in its list for up to 30 s and fails the
sessions it picks it for meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from v2py.app.chain import PipeStream, stream_pair
from v2py.app.mux_client import (
    IDLE_TICK_S,
    PICK_ATTEMPTS,
    MuxWorker,
    relay_over,
    relay_packets_over,
)
from v2py.app.mux_endpoint import MuxSubStream
from v2py.app.mux_server import Dispatch, MuxServerConnection
from v2py.app.packet import PacketLink, fed_link
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.relay import relay
from v2py.app.session import Session, SessionLogger, session_logger
from v2py.common.net import Destination, tcp, udp
from v2py.config.reverse import ReverseConfig
from v2py.errors import LocalProtocolError
from v2py.protocol.reverse import (
    BRIDGE_MONITOR_INTERVAL_S,
    DRAIN_AFTER_SESSIONS,
    HEARTBEAT_INTERVAL_S,
    INTERNAL_DOMAIN,
    ControlError,
    ControlState,
    bridge_needs_worker,
    decode_control,
    encode_control,
    new_control,
    pick_worker,
)
from v2py.transport.multiplex import cancel_and_wait
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

if TYPE_CHECKING:
    from v2py.app.reverse_relay import PortalRelayServer

__all__ = ["Bridge", "BridgeWorker", "Portal", "PortalWorker", "Reverse"]

log = logging.getLogger(__name__)

#: Bound on waiting for a worker's tasks at close.
CLOSE_WAIT_S = 2.0


def _is_domain(destination: Destination | None, domain: str) -> bool:
    """4.34 ``isDomain``: a domain address equal to ``domain`` (any port and network)."""
    return destination is not None and destination.is_domain and destination.address == domain


# --------------------------------------------------------------------------------------
# bridge


class BridgeWorker:
    """One connection of a bridge towards the portal, served as Mux.Cool (4.34
    ``BridgeWorker``). ``dispatcher`` carries the connection itself (routed by the
    bridge tag) and the sessions the portal opens on it."""

    def __init__(self, tag: str, domain: str, dispatcher: Dispatch, timeouts: Timeouts) -> None:
        self.state: ControlState | int = ControlState.ACTIVE
        ours, theirs = stream_pair()
        self._end = ours
        self.session = Session(
            inbound_tag=tag, source=None, destination=tcp(domain, 0), internal=True
        )
        self._control_tasks: set[asyncio.Task[None]] = set()
        self.connection = MuxServerConnection(
            self.session, self._end, dispatcher, timeouts, claim=self._claim
        )
        loop = asyncio.get_running_loop()
        self._link_task = loop.create_task(self._carry(dispatcher, theirs))
        self._serve_task = loop.create_task(self._serve())

    async def _carry(self, dispatcher: Dispatch, theirs: PipeStream) -> None:
        try:
            await dispatcher.dispatch(self.session, theirs)
        except asyncio.CancelledError:
            theirs.abort(ConnectionResetError("reverse bridge closed"))
            raise
        except Exception as exc:  # the connection failed: the worker is over
            session_logger(log, self.session).info("reverse: bridge connection failed: %s", exc)
            theirs.abort(ConnectionResetError(f"reverse bridge connection: {exc}"))
        else:
            theirs.close()

    async def _serve(self) -> None:
        try:
            await self.connection.serve()
        finally:
            self._end.close()

    def _claim(self, sub: MuxSubStream) -> bool:
        """Every session but the portal's control session (``reverse.internal.v2ray.com``,
        any network) is dispatched with the bridge tag as inbound tag (the mux server
        copies it from the connection's session). The control session is read here and
        never answered: 4.34's bridge sends nothing on it, not even End, when the portal
        ends it or the connection ends [verified]."""
        if not _is_domain(sub.destination, INTERNAL_DOMAIN):
            return False
        sub.never_end()
        task = asyncio.get_running_loop().create_task(self._read_control(sub))
        self._control_tasks.add(task)
        task.add_done_callback(self._control_tasks.discard)
        return True

    async def _read_control(self, sub: MuxSubStream) -> None:
        # Over UDP each datagram is a message; over TCP each read is taken as one.
        try:
            if sub.is_packet:
                while (data := await sub.read_datagram()) is not None:
                    self.control_received(data)
            else:
                while data := await sub.read(READ_CHUNK_BYTES):
                    self.control_received(data)
        except OSError:
            pass  # the connection was aborted
        finally:
            sub.finish(error=False)  # sends nothing (never_end)

    def control_received(self, data: bytes) -> None:
        """A control message from the portal (one datagram): take its state."""
        try:
            control = decode_control(data)
        except ControlError as exc:
            session_logger(log, self.session).info("reverse: bad control message: %s", exc)
            return
        if control.state != self.state:
            session_logger(log, self.session).debug("reverse: control state %s", control.state)
            self.state = control.state

    @property
    def closed(self) -> bool:
        """The connection's input ended (4.34 closes the mux server worker once its
        link reader ends) or its serving stopped."""
        return self._end.input_ended or self._serve_task.done() or self._link_task.done()

    @property
    def active(self) -> bool:
        """Counted as a worker: ACTIVE and not closed (4.34 ``IsActive``)."""
        return self.state == ControlState.ACTIVE and not self.closed

    @property
    def sessions(self) -> int:
        """Sessions open on the connection, the control session included."""
        return self.connection.endpoint.active_sessions

    @property
    def done(self) -> bool:
        """Nothing of the worker runs any more."""
        return self._serve_task.done() and self._link_task.done()

    async def aclose(self) -> None:
        await cancel_and_wait(
            (self._serve_task, self._link_task, *self._control_tasks), CLOSE_WAIT_S
        )


class Bridge:
    """One ``reverse.bridges[]`` entry (4.34 ``Bridge``): every 2 s, drops the
    connections that are no longer active and opens one more when none is left or
    they carry more than 16 sessions each on average."""

    def __init__(
        self,
        tag: str,
        domain: str,
        dispatcher: Dispatch,
        policy: PolicyTable,
        *,
        interval: float = BRIDGE_MONITOR_INTERVAL_S,
    ) -> None:
        self.tag = tag
        self.domain = domain
        self.dispatcher = dispatcher
        self.policy = policy
        self.interval = interval
        #: The connections counted as workers (4.34 ``Bridge.workers``).
        self.workers: list[BridgeWorker] = []
        self._running: set[BridgeWorker] = set()  # every worker not finished, for close
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def monitor(self) -> None:
        """One check (4.34 ``Bridge.monitor``); :meth:`start` runs it periodically."""
        self.workers = [w for w in self.workers if w.active]
        self._running = {w for w in self._running if not w.done}
        if bridge_needs_worker([w.sessions for w in self.workers]):
            worker = BridgeWorker(self.tag, self.domain, self.dispatcher, self.policy.for_level(0))
            self.workers.append(worker)
            self._running.add(worker)

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self.monitor()
        finally:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    async def start(self) -> None:
        """Check at once, then every ``interval`` seconds."""
        self._tick()

    async def aclose(self) -> None:
        """Stop checking and close every connection."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        workers, self._running, self.workers = self._running, set(), []
        for worker in workers:
            await worker.aclose()


# --------------------------------------------------------------------------------------
# portal


class _BridgeCarrier:
    """Carries a portal worker's frames over the bridge's connection (the stream the
    portal was handed for it)."""

    def __init__(self, tag: str, stream: Stream, timeouts: Timeouts) -> None:
        self.tag = tag
        self._stream = stream
        self._timeouts = timeouts

    async def handle(self, session: Session, stream: Stream) -> None:
        await relay(stream, self._stream, self._timeouts)

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        raise LocalProtocolError("a bridge connection carries no datagrams")


class PortalWorker:
    """A mux client over one bridge connection, with its control session and
    heartbeat (4.34 ``PortalWorker``): a control message at once and every
    ``interval`` seconds; after more than 256 sessions, DRAIN and the control
    session ends."""

    def __init__(
        self,
        tag: str,
        stream: Stream,
        timeouts: Timeouts,
        *,
        rng: Callable[[int], bytes],
        interval: float,
        idle_tick: float,
    ) -> None:
        self.mux = MuxWorker(
            _BridgeCarrier(tag, stream, timeouts), 0, idle_tick=idle_tick, max_sessions=None
        )
        self.draining = False
        self._rng = rng
        self._interval = interval
        self._timer: asyncio.TimerHandle | None = None
        self.control: MuxSubStream = self.mux.open(udp(INTERNAL_DOMAIN, 0))
        self.heartbeat()

    @property
    def closed(self) -> bool:
        return self.mux.closed

    @property
    def active_sessions(self) -> int:
        """Sessions open on the connection, the control session included."""
        return self.mux.endpoint.active_sessions

    def heartbeat(self) -> None:
        """Send one control message; re-arms itself until the connection closes or
        drains."""
        self._timer = None
        if self.mux.closed or self.draining:
            return
        state = ControlState.ACTIVE
        if self.mux.endpoint.total_sessions > DRAIN_AFTER_SESSIONS:
            self.draining = True
            state = ControlState.DRAIN
        message = encode_control(new_control(state, self._rng))
        try:
            if message:  # 4.34 writes nothing for an empty message
                self.control.write(message)
        except OSError:
            return
        if self.draining:
            self.control.finish(error=False)
            return
        self._timer = asyncio.get_running_loop().call_later(self._interval, self.heartbeat)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def aclose(self) -> None:
        self.stop()
        await self.mux.aclose()


class Portal:
    """One ``reverse.portals[]`` entry: the outbound tagged ``tag`` (4.34 ``Portal``)."""

    def __init__(
        self,
        tag: str,
        domain: str,
        policy: PolicyTable,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        interval: float = HEARTBEAT_INTERVAL_S,
        idle_tick: float = IDLE_TICK_S,
    ) -> None:
        self.tag = tag
        self.domain = domain
        self.policy = policy
        self.rng = rng
        self.interval = interval
        self.idle_tick = idle_tick
        #: The bridge connections (4.34 ``StaticMuxPicker.workers``).
        self.workers: list[PortalWorker] = []
        #: With ``--workers N``: the siblings' portal relay sockets, tried in turn when
        #: this worker has no bridge connection (``app/reverse_relay.py``).
        self.siblings: Sequence[str] = ()

    async def handle(self, session: Session, stream: Stream) -> None:
        dest = session.destination
        if _is_domain(dest, self.domain):
            await self._serve_bridge(session, stream)
            return
        assert dest is not None
        timeouts = self.policy.for_level(session.level)
        sub = self._open_here(dest)
        if sub is None:
            from v2py.app.reverse_relay import forward_stream

            await forward_stream(self.siblings, self.tag, session.level, dest, stream, timeouts)
            return
        await relay_over(stream, sub, timeouts)

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        dest = session.destination
        assert dest is not None
        if _is_domain(dest, self.domain):
            session_logger(log, session).info("reverse: a bridge connection must be TCP")
            return
        timeouts = self.policy.for_level(session.level)
        sub = self._open_here(dest)
        if sub is None:
            from v2py.app.reverse_relay import forward_packets

            await forward_packets(self.siblings, self.tag, session.level, dest, link, timeouts)
            return
        slog = session_logger(log, session)
        await relay_packets_over(link, sub, timeouts, slog, "reverse")

    def _open_here(self, destination: Destination) -> MuxSubStream | None:
        """A session on a bridge connection of this worker; None when it has none but
        sibling workers may (``--workers``). Raises ConnectionRefusedError otherwise."""
        try:
            return self._open(destination)
        except ConnectionRefusedError:
            if not self.siblings:
                raise
            return None

    # -- a sibling worker's connections (--workers) ---------------------------------
    def open_for_sibling(self, destination: Destination) -> MuxSubStream:
        """A session on one of this worker's own bridge connections (never passed on).
        Raises ConnectionRefusedError when it has none."""
        return self._open(destination)

    async def serve_sibling_stream(self, stream: Stream, sub: MuxSubStream, level: int) -> None:
        await relay_over(stream, sub, self.policy.for_level(level))

    async def serve_sibling_packets(self, stream: Stream, sub: MuxSubStream, level: int) -> None:
        from v2py.app.reverse_relay import FramedDatagrams

        async with fed_link(FramedDatagrams(stream)) as link:
            timeouts = self.policy.for_level(level)
            await relay_packets_over(link, sub, timeouts, SessionLogger(log, {}), "reverse")

    async def _serve_bridge(self, session: Session, stream: Stream) -> None:
        worker = PortalWorker(
            self.tag,
            stream,
            self.policy.for_level(session.level),
            rng=self.rng,
            interval=self.interval,
            idle_tick=self.idle_tick,
        )
        self.workers.append(worker)
        session_logger(log, session).info("reverse: bridge connection on portal %r", self.tag)
        try:
            await worker.mux.task
        finally:
            worker.stop()
            with contextlib.suppress(ValueError):
                self.workers.remove(worker)

    def _open(self, destination: Destination) -> MuxSubStream:
        """A session towards ``destination`` on the least busy bridge connection."""
        for _ in range(PICK_ATTEMPTS):
            self.workers = workers = [w for w in self.workers if not w.closed]
            index = pick_worker([(w.draining, w.active_sessions) for w in workers])
            if index is None:
                raise ConnectionRefusedError(f"reverse portal {self.tag!r}: no bridge connection")
            try:
                return workers[index].mux.open(destination)
            except LocalProtocolError:
                workers[index].mux.close()
        raise ConnectionRefusedError(f"reverse portal {self.tag!r}: no bridge connection")

    async def aclose(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            await worker.aclose()


class Reverse:
    """The ``reverse`` app of one instance: its portals (outbounds to add to the
    outbound manager) and bridges (started after the inbounds)."""

    def __init__(self, config: ReverseConfig, dispatcher: Dispatch, policy: PolicyTable) -> None:
        self.bridges = [Bridge(b.tag, b.domain, dispatcher, policy) for b in config.bridges]
        self.portals = [Portal(p.tag, p.domain, policy) for p in config.portals]
        self._relay: PortalRelayServer | None = None

    def relay_across(self, path: str, siblings: Sequence[str]) -> None:
        """``--workers N``: serve this worker's portals to its siblings on ``path`` and
        pass a connection to ``siblings`` (their paths) when no bridge connection is here."""
        from v2py.app.reverse_relay import PortalRelayServer

        for portal in self.portals:
            portal.siblings = siblings
        self._relay = PortalRelayServer(
            path,
            {
                p.tag: (p.open_for_sibling, p.serve_sibling_stream, p.serve_sibling_packets)
                for p in self.portals
            },
        )

    async def start(self) -> None:
        if self._relay is not None:
            await self._relay.start()
        for bridge in self.bridges:
            await bridge.start()

    async def aclose(self) -> None:
        if self._relay is not None:
            self._relay.close()
        for bridge in self.bridges:
            await bridge.aclose()
        for portal in self.portals:
            await portal.aclose()
