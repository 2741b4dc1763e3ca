"""The ``dokodemo-door`` inbound: every connection goes to one fixed destination
(v2ray-core 4.34 ``proxy/dokodemo/dokodemo.go``).

TCP connections are dispatched as they are (sniffing may still replace the address).
UDP (``networks`` containing "udp") listens on the same port; each client source
is one flow to the fixed destination, torn down after 8 s of silence (the 4.34 UDP
worker's idle rule), and responses go back raw from the listening socket.
"""

from __future__ import annotations

import logging

from v2py.app.handler import Dispatch
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.app.udp_flows import UDP_SOURCE_IDLE_S, UdpFlowServer, open_udp_flow_server
from v2py.common.net import Destination, tcp, udp
from v2py.errors import ProtocolError
from v2py.transport.stream import Stream

__all__ = ["DokodemoInbound"]

log = logging.getLogger(__name__)

_NETWORKS = frozenset({"tcp", "udp"})


class DokodemoInbound:
    """Forward everything to ``address:dest_port``.

    ``networks`` holds "tcp" and/or "udp" (case-insensitive); ``udp_idle`` exists for
    tests; ``reuse_port`` binds the UDP socket with SO_REUSEPORT (``--workers``).
    Raises ValueError for an unknown network name.
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
        self._udp_server: UdpFlowServer | None = None
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
            if self._address is None:
                # 4.34: "unable to get destination" for each connection.
                slog.info("dokodemo-door: unable to get destination")
                return
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

    async def start(self, dispatcher: Dispatch) -> None:
        """Open the UDP listener on listen:port when "udp" is enabled."""
        if "udp" not in self._networks or self._udp_server is not None or self._address is None:
            return
        target = udp(self._address, self._dest_port)

        def make_session(source: tuple[str, int], dest: Destination) -> Session:
            return Session(
                inbound_tag=self.tag,
                source=source,
                destination=dest,
                level=self._user_level,
                sniffing=SniffingSettings(),
            )

        def decode(data: bytes) -> tuple[Destination, bytes] | None:
            return target, data

        def encode(dest: Destination, payload: bytes) -> bytes:
            return payload

        self._udp_server, self._udp_port = await open_udp_flow_server(
            self._listen or "0.0.0.0",
            self._port,
            reuse_port=self._reuse_port,
            make_session=make_session,
            dispatcher=dispatcher,
            decode=decode,
            encode=encode,
            flow_idle=self._udp_idle,
            source_idle=self._udp_idle,
        )

    def close(self) -> None:
        """Close the UDP listener and its flows."""
        if self._udp_server is not None:
            self._udp_server.close()
            self._udp_server = None
