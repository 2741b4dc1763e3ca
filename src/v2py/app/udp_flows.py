"""A UDP listener that demultiplexes datagrams into flows (v2ray-core
``app/proxyman/inbound/worker.go`` udpWorker and ``transport/internet/udp/dispatcher.go``).

Each (client source, destination) pair becomes one flow, dispatched once as a
``PacketLink``; flows and sources end after idle timeouts as 4.34's do. The SOCKS
inbound (UDP ASSOCIATE) and dokodemo-door (network udp) share it; each supplies
how its datagrams are decoded and encoded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from v2py.app.handler import Dispatch
from v2py.app.idle import IdleTimer
from v2py.app.packet import PacketLink
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination
from v2py.errors import ProtocolError

if TYPE_CHECKING:
    from v2py.transport.sockopt import SocketOptions

__all__ = [
    "UDP_FLOW_IDLE_S",
    "UDP_SOURCE_IDLE_S",
    "UdpFlowServer",
    "UdpRelayStatistics",
    "open_udp_flow_server",
]

log = logging.getLogger(__name__)

#: A UDP client source silent this long loses its flows (4.34 udp worker: > 8 s).
UDP_SOURCE_IDLE_S = 8.0
#: A (source, destination) flow silent this long is torn down (4.34 udp dispatcher).
UDP_FLOW_IDLE_S = 4.0

Address = tuple[str, int]


class _Flow:
    def __init__(self, link: PacketLink, clock: IdleTimer, source: _Source) -> None:
        self.link = link
        self.clock = clock
        self.source = source
        self.task: asyncio.Task[None] | None = None


class _Source:
    def __init__(self) -> None:
        self.flows: dict[Destination, _Flow] = {}
        self.clock: IdleTimer | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpRelayStatistics:
    """Snapshot of a :class:`UdpFlowServer`: live sources/flows, flows ever opened,
    datagrams dropped as malformed, datagrams refused by the ``admit`` filter."""

    sources: int
    flows: int
    flows_opened: int
    dropped: int
    refused: int = 0


class UdpFlowServer(asyncio.DatagramProtocol):
    """A UDP listener that demultiplexes datagrams into per-(source, destination) flows.

    Parameters:
        make_session: builds the Session for a new flow from (source, destination).
        dispatcher: receives each flow as ``dispatch_packets(session, link)``.
        decode: datagram -> (destination, payload), or None to drop it.
        encode: (flow destination, response payload) -> datagram for the client, or
            None to drop the response.
        flow_idle / source_idle: idle teardown, seconds.
        admit: when given, a datagram is served only if ``admit(source)`` is true
            (checked before decoding; refused ones are only counted). None: every
            source is served, as in 4.34.
        rejected: called with the source and the reason when ``decode`` raises
            ValueError (the datagram is dropped and counted either way).

    Shared by the SOCKS and dokodemo-door inbounds.
    """

    def __init__(
        self,
        *,
        make_session: Callable[[Address, Destination], Session],
        dispatcher: Dispatch,
        decode: Callable[[bytes], tuple[Destination, bytes] | None],
        encode: Callable[[Destination, bytes], bytes | None],
        flow_idle: float = UDP_FLOW_IDLE_S,
        source_idle: float = UDP_SOURCE_IDLE_S,
        admit: Callable[[Address], bool] | None = None,
        rejected: Callable[[Address, str], None] | None = None,
    ) -> None:
        self._make_session = make_session
        self._admit = admit
        self._refused = 0
        self._dispatcher = dispatcher
        self._decode = decode
        self._rejected = rejected
        self._encode = encode
        self._flow_idle = flow_idle
        self._source_idle = source_idle
        self._transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._sources: dict[Address, _Source] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropped = 0
        self._flows_opened = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython 3.11's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source: Address = (str(addr[0]), int(addr[1]))
        if self._admit is not None and not self._admit(source):
            self._refused += 1
            return
        try:
            decoded = self._decode(data)
        except ValueError as exc:  # a decoder that says why (``rejected`` hears it)
            decoded = None
            if self._rejected is not None:
                self._rejected(source, str(exc))
        if decoded is None:
            self._dropped += 1
            return
        dest, payload = decoded
        if not payload:
            return
        entry = self._sources.get(source)
        if entry is None:
            entry = self._sources[source] = _Source()
            entry.clock = IdleTimer(
                self._loop, self._source_idle, lambda: self._drop_source(source)
            )
        flow = entry.flows.get(dest)
        if flow is None:
            flow = self._open_flow(source, dest, entry)
        assert entry.clock is not None
        entry.clock.touch()
        flow.clock.touch()
        flow.link.push(payload)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp listener error: %s", exc)

    def _open_flow(self, source: Address, dest: Destination, entry: _Source) -> _Flow:
        def send_back(payload: bytes) -> None:
            transport = self._transport
            if transport is None or transport.is_closing():
                return
            flow.clock.touch()
            if entry.clock is not None:
                entry.clock.touch()
            packet = self._encode(dest, payload)
            if packet is not None:  # None: the inbound's protocol cannot carry it
                transport.sendto(packet, source)

        link = PacketLink(send_back)
        self._flows_opened += 1
        clock = IdleTimer(self._loop, self._flow_idle, lambda: self._close_flow(source, dest))
        flow = _Flow(link, clock, entry)
        entry.flows[dest] = flow
        session = self._make_session(source, dest)
        task = self._loop.create_task(self._run_flow(session, flow, source, dest))
        flow.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flow

    async def _run_flow(
        self, session: Session, flow: _Flow, source: Address, dest: Destination
    ) -> None:
        slog = session_logger(log, session)
        try:
            await self._dispatcher.dispatch_packets(session, flow.link)
        except asyncio.CancelledError:
            raise
        except (ProtocolError, OSError) as exc:
            slog.info("udp flow to %s failed: %s", dest, exc)
        except Exception:  # one bad flow never stops the listener
            slog.exception("udp flow to %s crashed", dest)
        finally:
            self._close_flow(source, dest, flow)

    def _close_flow(self, source: Address, dest: Destination, only: _Flow | None = None) -> None:
        entry = self._sources.get(source)
        if entry is None:
            return
        flow = entry.flows.get(dest)
        if flow is None or (only is not None and flow is not only):
            return
        del entry.flows[dest]
        flow.clock.cancel()
        flow.link.close()

    def _drop_source(self, source: Address) -> None:
        entry = self._sources.pop(source, None)
        if entry is None:
            return
        for flow in entry.flows.values():
            flow.clock.cancel()
            flow.link.close()
        entry.flows.clear()

    def drop_sources(self, matches: Callable[[Address], bool]) -> None:
        """End every source for which ``matches(source)`` holds, with its flows."""
        for source in [s for s in self._sources if matches(s)]:
            entry = self._sources[source]
            if entry.clock is not None:
                entry.clock.cancel()
            self._drop_source(source)

    def statistics(self) -> UdpRelayStatistics:
        """Counters of this listener."""
        return UdpRelayStatistics(
            sources=len(self._sources),
            flows=sum(len(s.flows) for s in self._sources.values()),
            flows_opened=self._flows_opened,
            dropped=self._dropped,
            refused=self._refused,
        )

    def close(self) -> None:
        """Stop listening, close every flow and cancel their tasks."""
        for source in list(self._sources):
            entry = self._sources[source]
            if entry.clock is not None:
                entry.clock.cancel()
            self._drop_source(source)
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()


async def open_udp_flow_server(
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    options: SocketOptions | None = None,
    **kwargs: object,
) -> tuple[UdpFlowServer, int]:
    """Bind a :class:`UdpFlowServer` on ``host:port``; return it and the bound port.

    ``reuse_port`` sets SO_REUSEPORT (worker processes sharing the port); ``options``
    (``sockopt``) are set on the socket before it is bound, as 4.34's
    ``ListenSystemPacket`` sets them.
    """
    loop = asyncio.get_running_loop()
    if options is None:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: UdpFlowServer(**kwargs),  # type: ignore[arg-type]
            local_addr=(host, port),
            reuse_port=reuse_port or None,
        )
    else:
        from v2py.transport.sockopt import bound_udp_socket

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = bound_udp_socket(family, (host, port), options, reuse_port=reuse_port)
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: UdpFlowServer(**kwargs),  # type: ignore[arg-type]
                sock=sock,
            )
        except BaseException:
            sock.close()
            raise
    sockname = transport.get_extra_info("sockname")
    return protocol, int(sockname[1])
