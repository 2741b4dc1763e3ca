"""The ``shadowsocks`` inbound (v2ray-core 4.34 ``proxy/shadowsocks/server.go``); the
wire format is ``protocol/shadowsocks.py``.

As 4.34: one user (method, password, email, level); TCP unless ``network`` names
only "udp", UDP when ``udp`` is true or ``network`` names it. The salt and address
must arrive within the user level's handshake timeout; when they do not decode the
server reads on, up to a number of bytes fixed by the key plus a small random part
(``ReadTCPSession``'s drain), until the deadline or the peer's end, then closes with
a ``rejected`` access line and without a byte sent (RST when the peer sent more
than that budget, as 4.34's unread bytes cause). The response salt goes out with the
first response bytes; a response that ends before any data closes the connection
without it. No half-close. UDP: every datagram is decoded on its own and dispatched
per (source, destination) flow as the SOCKS inbound's; undecodable ones are dropped.
"""

from __future__ import annotations

import asyncio
import logging

from v2py.app.drain import drain_stream
from v2py.app.entropy import urandom
from v2py.app.handler import Dispatch
from v2py.app.log import ACCESS_REJECTED, go_read_timeout, log_access
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.app.udp_flows import UdpFlowServer, open_udp_flow_server
from v2py.common.net import Destination, tcp, udp
from v2py.errors import ProtocolError
from v2py.protocol.shadowsocks import (
    ChunkSealer,
    Cipher,
    RequestDecoder,
    drain_parameters,
    open_datagram,
    seal_datagram,
)
from v2py.proxy.shadowsocks_outbound import ShadowsocksLayer
from v2py.transport.sockopt import SocketOptions
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

__all__ = ["ShadowsocksInbound"]

log = logging.getLogger(__name__)

#: How 4.34 prefixes the reasons of its access log.
_REASON_PREFIX = "v2ray.com/core/proxy/shadowsocks: "
#: Fixed part of the drain budget (``16 + 38`` in ``ReadTCPSession``).
_DRAIN_FIXED = 16 + 38


class ShadowsocksInbound:
    """The ``shadowsocks`` inbound handler."""

    def __init__(
        self,
        *,
        tag: str,
        listen: str,
        port: int,
        cipher: Cipher,
        key: bytes,
        level: int,
        email: str,
        networks: frozenset[str],
        policy: PolicyTable,
        reuse_port: bool = False,
        socket_options: SocketOptions | None = None,
    ) -> None:
        self.tag = tag
        self._listen = listen
        self._port = port
        self.cipher = cipher
        self.key = key
        self.level = level
        self.email = email
        self.networks = networks
        self.policy = policy
        self._reuse_port = reuse_port
        self._options = socket_options
        self._drain_base, self._drain_spread = drain_parameters(key)
        self._udp_server: UdpFlowServer | None = None
        self._udp_port = 0

    @property
    def udp_port(self) -> int | None:
        """Bound UDP port once started with UDP enabled."""
        return self._udp_port if self._udp_server is not None else None

    async def start(self, dispatcher: Dispatch) -> None:
        if "udp" not in self.networks or self._udp_server is not None:
            return
        cipher, key = self.cipher, self.key

        def decode(data: bytes) -> tuple[Destination, bytes] | None:
            if not data:
                return None  # 4.34's UDP worker never hands an empty datagram on
            host, port, payload = open_datagram(cipher, key, data)  # ValueError: rejected
            return udp(host, port), payload

        def rejected(source: tuple[str, int], reason: str) -> None:
            shown = (
                f"udp:{source[0]}:{source[1]}"
                if ":" not in source[0]
                else (f"udp:[{source[0]}]:{source[1]}")
            )
            log.info("shadowsocks: dropping invalid UDP packet from: %s: %s", shown, reason)
            log_access(shown, ACCESS_REJECTED, reason=f"{_REASON_PREFIX}{reason}")

        def encode(dest: Destination, payload: bytes) -> bytes | None:
            # None above 2048 bytes sealed: 4.34's encoder panics on those.
            return seal_datagram(cipher, key, dest.address, dest.port, payload, urandom)

        self._udp_server, self._udp_port = await open_udp_flow_server(
            self._listen or "0.0.0.0",
            self._port,
            reuse_port=self._reuse_port,
            options=self._options,
            make_session=self._udp_session,
            dispatcher=dispatcher,
            decode=decode,
            encode=encode,
            rejected=rejected,
        )

    def _udp_session(self, source: tuple[str, int], dest: Destination) -> Session:
        return Session(
            inbound_tag=self.tag,
            source=source,
            destination=dest,
            level=self.level,
            user_email=self.email,
            sniffing=SniffingSettings(),
        )

    def close(self) -> None:
        if self._udp_server is not None:
            self._udp_server.close()
            self._udp_server = None

    def drain_budget(self) -> int:
        """Bytes a failed connection may send in all before the server closes it."""
        rolled = int.from_bytes(urandom(4), "big") % self._drain_spread
        return self._drain_base + _DRAIN_FIXED + rolled

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        slog = session_logger(log, session)
        if "tcp" not in self.networks:
            slog.info("shadowsocks: tcp not enabled")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.for_level(self.level).handshake
        decoder = RequestDecoder(self.cipher, self.key)
        salt_size = self.cipher.salt_size
        received = 0
        reason = ""
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    data = await stream.read(READ_CHUNK_BYTES)
                    if not data:
                        # Go's io.ReadFull: EOF before a byte of what it reads, else
                        # "unexpected EOF" (the salt, then the first chunk).
                        part = "IV" if received < salt_size else "address"
                        eof = "EOF" if received in (0, salt_size) else "unexpected EOF"
                        reason = f"failed to read {part} > {eof}"
                        break
                    received += len(data)
                    request = decoder.feed(data)
                    if request is not None:
                        break
        except ValueError as exc:
            reason = str(exc)
            await drain_stream(stream, self.drain_budget() - received, deadline)
        except TimeoutError:
            part = "IV" if received < salt_size else "address"
            reason = f"failed to read {part} > {go_read_timeout(stream)}"
        if reason:
            slog.info("shadowsocks: invalid request from %s: %s", session.source_text(), reason)
            log_access(session.source_text(), ACCESS_REJECTED, reason=f"{_REASON_PREFIX}{reason}")
            return
        assert request is not None
        session.user_email = self.email
        session.level = self.level
        session.destination = tcp(request.address, request.port)
        sealer: ChunkSealer | None = None
        salt = b""
        if self.cipher.is_aead:
            salt = urandom(self.cipher.salt_size)
            sealer = self.cipher.sealer(self.key, salt)
        sstream = ShadowsocksLayer(
            stream,
            self.cipher,
            self.key,
            sealer,
            opener=request.opener,
            rest=request.rest,
            prefix=salt,
        )
        try:
            await dispatcher.dispatch(session, sstream)
        except (OSError, ProtocolError) as exc:
            slog.info("shadowsocks: connection ends: %s", exc)
