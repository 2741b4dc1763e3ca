"""Dynamic-port inbound (``allocate.strategy: random``), as v2ray-core
app/proxyman/inbound/dynamic.go. Spec: ``docs/spec/dynamic-port.md``.

The shell around the pure :class:`~v2py.app.ports.PortRotation`: one refresh task
sleeps until the core's timer, feeds it ``now``, and acts on its events. Each
generation is ``concurrency`` workers; a worker is a fresh proxy instance from
``proxy_factory(generation, port)`` (so every port has its own VMess users, spec 3)
plus one listener. A closing TCP generation stops accepting but leaves established
connections running, as 4.34 does [verified in the spec]; they are cancelled
only when the whole inbound closes. An mKCP generation closes outright (its
sessions share the listening UDP socket), as 4.34's kcp listener does.

Under ``v2py run --workers N`` every worker process runs its own copy of this
inbound. They agree without talking: the rotation sits on a grid from the
parent's start instant (``schedule_origin``), each generation's ports come from
``generation_rng(number)`` (derived from a seed the parent drew), listeners use
SO_REUSEPORT, and the factory derives detour users from (generation, port). A
port that some unrelated process holds fails in every worker alike; the residual
risk is a port that becomes busy or free between two workers' binds, which makes
that generation differ between them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from v2py.app.handler import Dispatch, InboundProxy
from v2py.app.ports import GenerationClosed, GenerationOpened, PortRotation, Rng
from v2py.app.session import Session, SniffingSettings
from v2py.transport import Listener, TcpTransport, Transport
from v2py.transport.stream import Stream

__all__ = ["Clock", "DynamicInbound", "DynamicStatistics", "LoopClock", "Worker"]

log = logging.getLogger(__name__)

#: How long close() waits for cancelled connections to finish.
CLOSE_WAIT_S = 5.0


class Clock(Protocol):
    """The time source of the refresh task: monotonic seconds and a way to wait for them."""

    def time(self) -> float:
        """Now, in seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once :meth:`time` has reached ``deadline``."""
        ...


class LoopClock:
    """The running event loop's monotonic clock (production default)."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        # asyncio may fire a timer up to one clock resolution early.
        while (delay := deadline - loop.time()) > 0:
            await asyncio.sleep(delay)


@dataclass(slots=True, kw_only=True)
class Worker:
    """One dynamic port: its own proxy instance and listener."""

    generation: int
    port: int
    proxy: InboundProxy
    listener: Listener


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamicStatistics:
    """Counters of a :class:`DynamicInbound`."""

    generations_opened: int
    generations_closed: int
    ports_opened: int
    bind_failures: int
    #: Closed generations whose established connections are still running.
    draining_listeners: int
    #: Connections accepted so far, per port (ports of closed generations included).
    accepted_by_port: Mapping[int, int]


class DynamicInbound:
    """An inbound that listens on a rotating random subset of its port range.

    :param tag: inbound tag (the detour target name).
    :param proxy_factory: ``proxy_factory(generation, port)`` returns a fresh,
        unstarted proxy instance for one port of one generation.
    :param listen_host: address to listen on.
    :param first_port: lowest port of the range.
    :param last_port: highest port of the range.
    :param refresh_min: minutes between generations (>= 1).
    :param concurrency: ports per generation (>= 1, less than the range size).
    :param transport: what the ports listen on (TCP when None).
    :param sniffing: sniffing settings for sessions of this inbound.
    :param rng: random bytes for port allocation (``os.urandom``).
    :param clock: time source of the refresh task (:class:`LoopClock`).
    :param generation_rng: per-generation port rng (see :class:`PortRotation`).
    :param schedule_origin: refresh grid origin on ``clock`` (see :class:`PortRotation`).
    :param reuse_port: bind with SO_REUSEPORT (worker processes share ports).
    :raises ValueError: on a bad range, refresh or concurrency.
    """

    def __init__(
        self,
        *,
        tag: str,
        proxy_factory: Callable[[int, int], InboundProxy],
        listen_host: str,
        first_port: int,
        last_port: int,
        refresh_min: int,
        concurrency: int,
        transport: Transport | None = None,
        sniffing: SniffingSettings | None = None,
        rng: Rng = os.urandom,
        clock: Clock | None = None,
        generation_rng: Callable[[int], Rng] | None = None,
        schedule_origin: float | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.tag = tag
        self.proxy_factory = proxy_factory
        self.listen_host = listen_host
        self.transport: Transport = transport or TcpTransport()
        self.sniffing = sniffing or SniffingSettings()
        self.clock: Clock = clock or LoopClock()
        self.reuse_port = reuse_port
        self.rotation = PortRotation(
            first_port=first_port,
            last_port=last_port,
            refresh_min=refresh_min,
            concurrency=concurrency,
            rng=rng,
            generation_rng=generation_rng,
            schedule_origin=schedule_origin,
        )
        if not self.rotation.well_sized:
            log.warning(
                "inbound %s: range %d-%d is smaller than 3 x concurrency %d; "
                "generations may open with fewer ports",
                tag or "-",
                first_port,
                last_port,
                concurrency,
            )
        self._dispatcher: Dispatch | None = None
        self._workers: dict[int, list[Worker]] = {}  # generation number -> workers
        self._current: list[Worker] = []
        self._task: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        self._retired: list[Listener] = []
        self._stats = {"opened": 0, "closed": 0, "ports": 0, "bind_failures": 0}
        self._accepted: collections.Counter[int] = collections.Counter()

    # -- introspection ------------------------------------------------------
    @property
    def listening_ports(self) -> frozenset[int]:
        """Ports accepting connections now (current and previous generation)."""
        return frozenset(w.port for ws in self._workers.values() for w in ws)

    @property
    def current_ports(self) -> tuple[int, ...]:
        """Ports of the current generation (detours point here)."""
        return tuple(w.port for w in self._current)

    def statistics(self) -> DynamicStatistics:
        """A snapshot of the counters."""
        return DynamicStatistics(
            generations_opened=self._stats["opened"],
            generations_closed=self._stats["closed"],
            ports_opened=self._stats["ports"],
            bind_failures=self._stats["bind_failures"],
            draining_listeners=len(self._draining),
            accepted_by_port=MappingProxyType(dict(self._accepted)),
        )

    def get_random_worker(self, rng_index: int) -> tuple[InboundProxy, int, int] | None:
        """A worker of the current generation for a detour: (proxy, port, minutes left).

        ``rng_index`` is a random non-negative integer chosen by the caller. Returns
        None when the current generation has no port (spec 2.3: no command is sent).
        """
        if not self._current:
            return None
        worker = self._current[rng_index % len(self._current)]
        return worker.proxy, worker.port, self.rotation.minutes_left(self.clock.time())

    # -- lifecycle ----------------------------------------------------------
    async def start(self, dispatcher: Dispatch) -> None:
        """Open the first generation now and start the refresh task.

        Raises :class:`~v2py.errors.LocalProtocolError` if started twice.
        """
        self._dispatcher = dispatcher
        self.rotation.start(self.clock.time())
        await self._process(self.clock.time())
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"dynamic-inbound-{self.tag or '-'}"
        )

    async def _run(self) -> None:
        while (deadline := self.rotation.get_timer()) is not None:
            await self.clock.sleep_until(deadline)
            try:
                await self._process(self.clock.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed rotation must not end the schedule
                log.exception("inbound %s: rotation failed", self.tag or "-")

    async def _process(self, now: float) -> None:
        self.rotation.handle_timer(now)
        while (event := self.rotation.next_event()) is not None:
            if isinstance(event, GenerationClosed):
                self._close_generation(event.generation.number, event.generation.ports)
            elif isinstance(event, GenerationOpened):
                await self._open_generation(event)

    async def _open_generation(self, event: GenerationOpened) -> None:
        gen = event.generation
        assert self._dispatcher is not None
        workers: list[Worker] = []
        for port in gen.ports:
            proxy = self.proxy_factory(gen.number, port)
            try:
                listener = await self.transport.listen(
                    self.listen_host,
                    port,
                    self._make_handler(proxy, port),
                    reuse_port=self.reuse_port,
                )
            except OSError as exc:
                # 4.34 skips the worker and leaks the port; we skip and release it.
                self.rotation.port_failed(port)
                self._stats["bind_failures"] += 1
                proxy.close()
                log.warning(
                    "inbound %s: cannot listen on %s %s:%d, skipped: %s",
                    self.tag or "-",
                    self.transport.name,
                    self.listen_host,
                    port,
                    exc,
                )
                continue
            await proxy.start(self._dispatcher)
            workers.append(Worker(generation=gen.number, port=port, proxy=proxy, listener=listener))
        self._workers[gen.number] = workers
        self._current = workers
        self._stats["opened"] += 1
        self._stats["ports"] += len(workers)
        ports = ", ".join(str(w.port) for w in workers) or "none"
        log.info(
            "inbound %s: generation %d listening on %s %s ports %s (refresh %d min, lives %d min)",
            self.tag or "-",
            gen.number,
            self.transport.name,
            self.listen_host,
            ports,
            self.rotation.refresh_min,
            2 * self.rotation.refresh_min,
        )
        if len(workers) < event.requested:
            log.warning(
                "inbound %s: generation %d has %d of %d ports",
                self.tag or "-",
                gen.number,
                len(workers),
                event.requested,
            )

    def _close_generation(self, number: int, ports: tuple[int, ...]) -> None:
        workers = self._workers.pop(number, [])
        if self._current is workers:
            self._current = []
        for worker in workers:
            if not self.transport.listener_ends_sessions:
                worker.listener.stop_accepting()
                self._retired.append(worker.listener)
                self._watch_retired(worker.listener)
            else:
                # mKCP sessions share the listener's UDP socket: keeping them would keep
                # the port bound (a later generation could not reuse it), and 4.34's
                # kcp Listener.Close terminates its sessions too.
                worker.listener.close()
            worker.proxy.close()
        self._stats["closed"] += 1
        log.info(
            "inbound %s: generation %d closed ports %s (established connections continue)",
            self.tag or "-",
            number,
            ", ".join(str(w.port) for w in workers) or "none",
        )

    def _watch_retired(self, listener: Listener) -> None:
        async def wait() -> None:
            with contextlib.suppress(Exception):
                await listener.wait_closed()
            with contextlib.suppress(ValueError):
                self._retired.remove(listener)

        task = asyncio.get_running_loop().create_task(wait())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def _make_handler(self, proxy: InboundProxy, port: int) -> Callable[[Stream], Any]:
        async def on_connection(stream: Stream) -> None:
            assert self._dispatcher is not None
            session = Session(inbound_tag=self.tag, source=stream.peer, sniffing=self.sniffing)
            self._accepted[port] += 1
            log.debug(
                "[%d] inbound %s: accepted %s on dynamic port %d",
                session.id,
                self.tag or "-",
                session.source_text(),
                port,
            )
            await proxy.handle(session, stream, self._dispatcher)

        return on_connection

    async def close(self) -> None:
        """Stop rotating, close every listener and proxy, cancel running connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        listeners: list[Listener] = list(self._retired)
        for workers in self._workers.values():
            for worker in workers:
                listeners.append(worker.listener)
                worker.proxy.close()
        self._workers.clear()
        self._current = []
        self._retired.clear()
        self.rotation.close()
        for listener in listeners:
            listener.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.gather(
                    *(listener.wait_closed() for listener in listeners), return_exceptions=True
                )
        for task in list(self._draining):
            task.cancel()
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
