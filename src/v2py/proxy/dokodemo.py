"""The ``dokodemo-door`` inbound: every connection goes to one fixed destination
(v2ray-core 4.34 ``proxy/dokodemo/dokodemo.go``).

TCP connections are dispatched as they are (sniffing may still replace the address).
UDP (``networks`` containing "udp") listens on the same port; each client source
is one flow to the fixed destination, torn down after 8 s of silence (the 4.34 UDP
worker's idle rule), and responses go back raw from the listening socket.

``followRedirect`` (transparent proxy): a TCP connection goes to the original
destination its listener recorded (``SO_ORIGINAL_DST`` after iptables REDIRECT, the
local address of an ``IP_TRANSPARENT`` socket after TPROXY; see
``transport/sockopt.py``), else to ``address:port``. A UDP datagram goes to the
destination in its ``IP_ORIGDSTADDR`` control message; each (source, original
destination) is one flow, and its responses are sent from a socket bound to that
original destination (``IP_TRANSPARENT``, the inbound's mark) and connected to the
client, whose datagrams are read too, as 4.34's "TPROXY conn" does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from v2py.app.handler import Dispatch
from v2py.app.idle import IdleTimer
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.app.udp_flows import UDP_SOURCE_IDLE_S, UdpFlowServer, open_udp_flow_server
from v2py.common.net import Destination, tcp, udp
from v2py.errors import ProtocolError
from v2py.transport.sockopt import (
    SocketOptions,
    TproxyMode,
    accepted_original_destination,
    apply_outbound_options,
    bind_transparent,
    bound_udp_socket,
    parse_original_destination,
)
from v2py.transport.stream import Stream

__all__ = ["DokodemoInbound"]

log = logging.getLogger(__name__)

_NETWORKS = frozenset({"tcp", "udp"})


class DokodemoInbound:
    """Forward everything to ``address:dest_port``.

    ``networks`` holds "tcp" and/or "udp" (case-insensitive); ``udp_idle`` exists for
    tests; ``reuse_port`` binds the UDP socket with SO_REUSEPORT (``--workers``).
    ``follow_redirect`` sends traffic to its original destination; ``socket_options``
    (the inbound's ``sockopt``, with what ``followRedirect`` adds) apply to the UDP
    socket. Raises ValueError for an unknown network name.
    """

    def __init__(
        self,
        *,
        tag: str,
        listen: str,
        port: int,
        address: str | None,
        dest_port: int,
        networks: tuple[str, ...] = ("tcp",),
        user_level: int = 0,
        policy: PolicyTable,
        sniffing: SniffingSettings,
        udp_idle: float = UDP_SOURCE_IDLE_S,
        reuse_port: bool = False,
        follow_redirect: bool = False,
        socket_options: SocketOptions | None = None,
    ) -> None:
        nets = {n.strip().lower() for n in networks}
        unknown = nets - _NETWORKS
        if unknown:
            raise ValueError(f"unknown network(s): {sorted(unknown)}")
        self.tag = tag
        self._listen = listen
        self._port = port
        self._address = address
        self._dest_port = dest_port
        self._networks = frozenset(nets)
        self._user_level = user_level
        self._policy = policy
        self._sniffing = sniffing
        self._udp_idle = udp_idle
        self._reuse_port = reuse_port
        self._follow_redirect = follow_redirect
        self._options = socket_options
        self._udp_server: UdpFlowServer | _TransparentUdp | None = None
        self._udp_port = 0

    @property
    def udp_port(self) -> int | None:
        """Bound UDP port once started with "udp" in ``networks``."""
        return self._udp_port if self._udp_server is not None else None

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        """Dispatch one accepted TCP connection to the fixed destination; closes ``stream``."""
        slog = session_logger(log, session)
        try:
            if "tcp" not in self._networks:
                slog.info("dokodemo-door: tcp not enabled")
                return
            original = accepted_original_destination() if self._follow_redirect else None
            if original is not None:
                session.destination = tcp(*original)
            elif self._address is None:
                # 4.34: "unable to get destination" for each connection.
                slog.info("dokodemo-door: unable to get destination")
                return
            else:
                session.destination = tcp(self._address, self._dest_port)
            session.level = self._user_level
            session.sniffing = self._sniffing
            await dispatcher.dispatch(session, stream)
        except ProtocolError as exc:
            slog.info("dokodemo-door: %s", exc)
        except OSError as exc:
            slog.info("dokodemo-door connection ended: %s", exc)
        finally:
            stream.close()

    def _udp_session(self, source: tuple[str, int], dest: Destination) -> Session:
        """The session of one UDP flow (plain and transparent listeners alike)."""
        return Session(
            inbound_tag=self.tag,
            source=source,
            destination=dest,
            level=self._user_level,
            sniffing=SniffingSettings(),
        )

    async def start(self, dispatcher: Dispatch) -> None:
        """Open the UDP listener on listen:port when "udp" is enabled."""
        if "udp" not in self._networks or self._udp_server is not None:
            return
        if self._follow_redirect:
            await self._start_transparent(dispatcher)
            return
        if self._address is None:
            return
        target = udp(self._address, self._dest_port)

        def decode(data: bytes) -> tuple[Destination, bytes] | None:
            return target, data

        def encode(dest: Destination, payload: bytes) -> bytes:
            return payload

        if self._options is None:
            self._udp_server, self._udp_port = await open_udp_flow_server(
                self._listen or "0.0.0.0",
                self._port,
                reuse_port=self._reuse_port,
                make_session=self._udp_session,
                dispatcher=dispatcher,
                decode=decode,
                encode=encode,
                flow_idle=self._udp_idle,
                source_idle=self._udp_idle,
            )
            return
        sock = _udp_socket(self._listen or "0.0.0.0", self._port, self._options, self._reuse_port)
        loop = asyncio.get_running_loop()
        try:
            _, server = await loop.create_datagram_endpoint(
                lambda: UdpFlowServer(
                    make_session=self._udp_session,
                    dispatcher=dispatcher,
                    decode=decode,
                    encode=encode,
                    flow_idle=self._udp_idle,
                    source_idle=self._udp_idle,
                ),
                sock=sock,
            )
        except BaseException:
            sock.close()
            raise
        self._udp_server, self._udp_port = server, int(sock.getsockname()[1])

    async def _start_transparent(self, dispatcher: Dispatch) -> None:
        options = self._options or SocketOptions(
            tproxy=TproxyMode.REDIRECT, receive_original_destination=True
        )
        # 4.34 sets SO_REUSEPORT on every listener; here it also lets a response socket
        # bind the listener's own address when that was the original destination.
        sock = _udp_socket(self._listen or "0.0.0.0", self._port, options, True)
        fallback = udp(self._address, self._dest_port) if self._address is not None else None

        server = _TransparentUdp(
            sock=sock,
            dispatcher=dispatcher,
            make_session=self._udp_session,
            fallback=fallback,
            mark=options.mark,
            idle=self._udp_idle,
        )
        self._udp_server, self._udp_port = server, int(sock.getsockname()[1])

    def close(self) -> None:
        """Close the UDP listener and its flows."""
        if self._udp_server is not None:
            self._udp_server.close()
            self._udp_server = None


#: Largest datagram read (a UDP payload fits in 64 KiB).
_UDP_READ_BYTES = 65535
#: Room for the IP_ORIGDSTADDR / IPV6_ORIGDSTADDR control message.
_ANCILLARY_BYTES = 256
#: Datagrams read per readiness callback before the loop gets a turn.
_READ_BATCH = 64

Address = tuple[str, int]


def _udp_socket(
    host: str, port: int, options: SocketOptions | None, reuse_port: bool
) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return bound_udp_socket(family, (host, port), options, reuse_port=reuse_port)


class _TransparentFlow:
    def __init__(self, link: PacketLink, timer: IdleTimer, reply: socket.socket | None) -> None:
        self.link = link
        self.timer = timer
        self.reply = reply


class _TransparentUdp:
    """The UDP side of a dokodemo door with ``followRedirect`` (4.34 ``udpWorker`` with
    ``recvOrigDest``, and ``Door.Process``'s TPROXY writer)."""

    def __init__(
        self,
        *,
        sock: socket.socket,
        dispatcher: Dispatch,
        make_session: Callable[[Address, Destination], Session],
        fallback: Destination | None,
        mark: int,
        idle: float,
    ) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._dispatcher = dispatcher
        self._make_session = make_session
        self._fallback = fallback
        self._mark = mark
        self._idle = idle
        self._flows: dict[tuple[Address, Address | None], _TransparentFlow] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(_READ_BATCH):
            try:
                data, ancillary, _flags, addr = self._sock.recvmsg(
                    _UDP_READ_BYTES, _ANCILLARY_BYTES
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("dokodemo-door udp: %s", exc)
                return
            if data:
                source = (str(addr[0]), int(addr[1]))
                self._received(data, source, parse_original_destination(ancillary))

    def _received(self, data: bytes, source: Address, original: Address | None) -> None:
        key = (source, original)
        flow = self._flows.get(key)
        if flow is None:
            if original is None:
                # 4.34 logs "failed to read UDP original destination" and uses address.
                log.info("dokodemo-door udp: failed to read UDP original destination")
            dest = udp(*original) if original is not None else self._fallback
            if dest is None:
                log.info("dokodemo-door udp: unable to get destination")
                return
            flow = self._open(key, source, original, dest)
            if flow is None:
                return
        flow.timer.touch()
        flow.link.push(data)

    def _open(
        self,
        key: tuple[Address, Address | None],
        source: Address,
        original: Address | None,
        dest: Destination,
    ) -> _TransparentFlow | None:
        reply: socket.socket | None = None
        if original is not None:
            try:
                reply = self._reply_socket(source, original)
            except OSError as exc:
                log.info("dokodemo-door udp: cannot answer %s from %s: %s", source, original, exc)
                return None

        def send_back(payload: bytes) -> None:
            flow.timer.touch()
            with contextlib.suppress(OSError):  # UDP: a full buffer loses the datagram
                if reply is not None:
                    reply.send(payload)
                else:
                    self._sock.sendto(payload, source)

        link = PacketLink(send_back)
        timer = IdleTimer(self._loop, self._idle, lambda: self._close(key))
        flow = _TransparentFlow(link, timer, reply)
        self._flows[key] = flow
        if reply is not None:
            self._loop.add_reader(reply.fileno(), self._reply_readable, flow)
        session = self._make_session(source, dest)
        task = self._loop.create_task(self._run(session, key, flow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flow

    def _reply_socket(self, source: Address, original: Address) -> socket.socket:
        """A socket bound to ``original`` and connected to ``source`` (4.34 dials it
        with TPROXY mode, the original destination as bind address and the inbound's
        mark)."""
        family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            apply_outbound_options(sock, SocketOptions(mark=self._mark, tproxy=TproxyMode.TPROXY))
            bind_transparent(sock, original)
            sock.connect(source)
        except BaseException:
            sock.close()
            raise
        return sock

    def _reply_readable(self, flow: _TransparentFlow) -> None:
        reply = flow.reply
        if reply is None:
            return
        for _ in range(_READ_BATCH):
            try:
                data = reply.recv(_UDP_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("dokodemo-door udp: %s", exc)
                return
            if data:
                flow.timer.touch()
                flow.link.push(data)

    async def _run(
        self, session: Session, key: tuple[Address, Address | None], flow: _TransparentFlow
    ) -> None:
        slog = session_logger(log, session)
        try:
            await self._dispatcher.dispatch_packets(session, flow.link)
        except asyncio.CancelledError:
            raise
        except (ProtocolError, OSError) as exc:
            slog.info("dokodemo-door udp flow failed: %s", exc)
        except Exception:  # one bad flow never stops the listener
            slog.exception("dokodemo-door udp flow crashed")
        finally:
            self._close(key, flow)

    def _close(
        self, key: tuple[Address, Address | None], only: _TransparentFlow | None = None
    ) -> None:
        flow = self._flows.get(key)
        if flow is None or (only is not None and flow is not only):
            return
        del self._flows[key]
        flow.timer.cancel()
        flow.link.close()
        if flow.reply is not None:
            self._loop.remove_reader(flow.reply.fileno())
            flow.reply.close()
            flow.reply = None

    @property
    def flows(self) -> int:
        """Live (source, original destination) flows."""
        return len(self._flows)

    def close(self) -> None:
        """Stop listening, close every flow and cancel their tasks."""
        for key in list(self._flows):
            self._close(key)
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for task in list(self._tasks):
            task.cancel()
