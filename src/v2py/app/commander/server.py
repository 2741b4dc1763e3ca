"""The commander: a grpcio server reached only through the routed ``api`` outbound
(v2ray-core ``app/commander/commander.go`` and ``outbound.go``).

4.34 serves gRPC on an in-memory listener and registers an outbound handler whose
tag is ``api.tag``; every connection that routing sends there becomes one gRPC
connection. grpcio cannot accept a connection handed to it, so v2py's gRPC server
listens on a Unix socket inside a private directory (mode 0700, removed at close)
and :class:`ApiOutbound` splices each routed connection to it. Nothing listens on
a network address: the API is reachable only where the config routes it (usually
a dokodemo-door inbound on 127.0.0.1 plus a rule ``inboundTag -> api``).

Each service is registered under 4.34's package name and Xray's
(``xray.app.stats.command.StatsService`` ...), so panels built on Xray's protos
(3x-ui, Marzban) work unchanged; TypedMessage names are mapped in ``services.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from v2py.app.commander.services import ApiError
from v2py.app.packet import PacketLink
from v2py.app.policy import Timeouts
from v2py.app.relay import relay
from v2py.app.session import Session
from v2py.transport.stream import Stream
from v2py.transport.tcp import TcpStream

if TYPE_CHECKING:
    import grpc

    from v2py.app.commander.fanout import PeerServer

log = logging.getLogger(__name__)

__all__ = ["ApiOutbound", "Commander", "ServiceSpec"]

SOCKET_NAME = "api.sock"
#: Bound on closing the gRPC server (open calls are cancelled after it).
STOP_GRACE_S = 1.0
_PREFIXES = ("v2ray.core.", "xray.")
#: grpc-go's status details for a request it cannot decode (the cause is Go-specific).
_UNMARSHAL_ERROR = "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service: its name after the package prefix, and method -> (handler,
    request type, response type)."""

    name: str  # e.g. "app.stats.command.StatsService"
    methods: dict[str, tuple[Callable[[Any], Awaitable[Any]], type[Any], type[Any]]]


def _rpc_handler(
    handler: Callable[[Any], Awaitable[Any]], request_type: type[Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    import grpc
    from google.protobuf.message import DecodeError

    async def call(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # Parsed here, not by grpcio, so that malformed bytes get grpc-go's status
        # (INTERNAL, "grpc: error unmarshalling request: ...") as from 4.34.
        try:
            request = request_type.FromString(data)
        except DecodeError:
            await context.abort(grpc.StatusCode.INTERNAL, _UNMARSHAL_ERROR)
        try:
            return await handler(request)
        except ApiError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, exc.details)

    return grpc.unary_unary_rpc_method_handler(
        call, response_serializer=lambda m: m.SerializeToString()
    )


def _unknown_handler(services: set[str]) -> grpc.GenericRpcHandler:
    """Last in line: grpc-go's UNIMPLEMENTED texts for an unknown service or method
    (grpcio's own are "Method not found!")."""
    import grpc

    class Unknown(grpc.GenericRpcHandler):
        def service(
            self, handler_call_details: grpc.HandlerCallDetails
        ) -> grpc.RpcMethodHandler[Any, Any]:
            path = str(handler_call_details.method).lstrip("/")
            service, _, method = path.rpartition("/")
            text = (
                f"unknown method {method} for service {service}"
                if service in services
                else f"unknown service {service}"
            )

            async def call(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, text)

            return grpc.unary_unary_rpc_method_handler(call)

    return Unknown()


class Commander:
    """The gRPC server of one instance; :meth:`outbound` is the ``api`` outbound."""

    def __init__(
        self, tag: str, services: list[ServiceSpec], *, peers: PeerServer | None = None
    ) -> None:
        self.tag = tag
        self._services = services
        #: With ``--workers``: this worker's end of the calls its siblings pass on.
        self._peers = peers
        self._server: grpc.aio.Server | None = None
        self._dir: str | None = None
        self.socket_path = ""

    async def start(self) -> None:
        """Create the private socket and start serving."""
        import grpc

        self._dir = tempfile.mkdtemp(prefix="v2py-api-")
        os.chmod(self._dir, 0o700)
        self.socket_path = os.path.join(self._dir, SOCKET_NAME)
        server = grpc.aio.server()
        for spec in self._services:
            handlers = {
                method: _rpc_handler(fn, req) for method, (fn, req, _) in spec.methods.items()
            }
            for prefix in _PREFIXES:
                server.add_generic_rpc_handlers(
                    (grpc.method_handlers_generic_handler(prefix + spec.name, handlers),)
                )
        known = {prefix + spec.name for spec in self._services for prefix in _PREFIXES}
        server.add_generic_rpc_handlers((_unknown_handler(known),))
        server.add_insecure_port(f"unix:{self.socket_path}")
        await server.start()
        self._server = server
        if self._peers is not None:
            await self._peers.start()
        names = [s.name for s in self._services]
        log.info("api: gRPC services %s behind outbound [%s]", names, self.tag)

    def outbound(self, timeouts: Timeouts) -> ApiOutbound:
        """The outbound handler tagged ``api.tag`` (no traffic counters, as 4.34)."""
        return ApiOutbound(self.tag, self, timeouts)

    async def close(self) -> None:
        if self._peers is not None:
            await self._peers.close()
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop(STOP_GRACE_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class ApiOutbound:
    """Splices each routed connection to the commander's gRPC server."""

    def __init__(self, tag: str, commander: Commander, timeouts: Timeouts) -> None:
        self.tag = tag
        self._commander = commander
        self._timeouts = timeouts

    async def handle(self, session: Session, stream: Stream) -> None:
        path = self._commander.socket_path
        if not path:
            raise OSError("api: the gRPC server is not running")
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_unix_connection(lambda: TcpStream(loop), path)
        try:
            await relay(stream, upstream, self._timeouts)
        finally:
            upstream.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        # gRPC is TCP only: 4.34's commander outbound drops datagrams too.
        link.close()
