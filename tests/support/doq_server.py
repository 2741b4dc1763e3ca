"""A DNS-over-QUIC server on 127.0.0.1 for tests: aioquic, QUIC v1 only, ALPN
``doq-i00`` (draft doq-i00 framing: a bare DNS message per stream, FIN after it), answers
built with dnspython from a name -> addresses table. It records what every client
offered in its ClientHello (ALPN list, SNI), what was negotiated, and every question."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import aioquic.tls
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

DOQ_ALPN = "doq-i00"

#: The ClientHello the server side parsed last. aioquic negotiates ALPN right after
#: parsing it, in the same call, so the connection whose ProtocolNegotiated event comes
#: next is the one that sent it.
_last_hello: list[Any] = []
_pull_client_hello = aioquic.tls.pull_client_hello


def _recording_pull(buf: Any) -> Any:
    hello = _pull_client_hello(buf)
    _last_hello[:] = [hello]
    return hello


@dataclass
class Hello:
    """One connection's handshake as the server saw it."""

    offered_alpn: tuple[str, ...]
    server_name: str | None
    alpn: str | None
    version: int


@dataclass
class Question:
    """One query as the server saw it."""

    query: dns.message.Message
    raw: bytes
    connection: int
    stream_id: int


@dataclass
class DoqServer:
    """``mode``: ``ok``; ``silent`` (reads queries, never answers); ``nofin`` (answers
    without ending the stream); ``split`` (the answer in two writes, then FIN)."""

    records: dict[str, list[str]]
    ttl: int = 60
    mode: str = "ok"
    port: int = 0
    hellos: list[Hello] = field(default_factory=list)
    seen: list[Question] = field(default_factory=list)
    protocols: list[QuicConnectionProtocol] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_seen(self, count: int) -> None:
        """Until ``count`` questions have arrived (bound it with a timeout)."""
        while len(self.seen) < count:
            self.changed.clear()
            await self.changed.wait()

    @property
    def connections(self) -> int:
        return len(self.protocols)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            want_v6 = question.rdtype == dns.rdatatype.AAAA
            ips = [ip for ip in self.records.get(name, []) if (":" in ip) == want_v6]
            if ips:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, self.ttl, "IN", question.rdtype, ips)
                )
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def close_connections(self) -> None:
        """Close every connection (CONNECTION_CLOSE, no error)."""
        for protocol in self.protocols:
            protocol.close()


def _protocol(server: DoqServer) -> type[QuicConnectionProtocol]:
    class Protocol(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            server.protocols.append(self)
            self.number = len(server.protocols)
            self.buffers: dict[int, bytearray] = {}

        def quic_event_received(self, event: events.QuicEvent) -> None:
            if isinstance(event, events.ProtocolNegotiated):
                hello = _last_hello[0] if _last_hello else None
                server.hellos.append(
                    Hello(
                        offered_alpn=tuple(hello.alpn_protocols or ()) if hello else (),
                        server_name=hello.server_name if hello else None,
                        alpn=event.alpn_protocol,
                        version=int(self._quic._version or 0),
                    )
                )
            elif isinstance(event, events.StreamDataReceived):
                buffer = self.buffers.setdefault(event.stream_id, bytearray())
                buffer += event.data
                if event.end_stream:
                    self._query(event.stream_id, bytes(buffer))

        def _query(self, stream_id: int, raw: bytes) -> None:
            query = dns.message.from_wire(raw)
            server.seen.append(Question(query, raw, self.number, stream_id))
            server.changed.set()
            if server.mode == "silent":
                return
            wire = server.answer(query).to_wire()
            quic = self._quic
            if server.mode == "split":
                quic.send_stream_data(stream_id, wire[:5])
                self.transmit()
                quic.send_stream_data(stream_id, wire[5:], end_stream=True)
            else:
                quic.send_stream_data(stream_id, wire, end_stream=server.mode != "nofin")
            self.transmit()

    return Protocol


@contextlib.asynccontextmanager
async def doq_server(
    cert_file: str,
    key_file: str,
    records: dict[str, list[str]],
    *,
    ttl: int = 60,
    mode: str = "ok",
) -> AsyncIterator[DoqServer]:
    """A DoQ server with the certificate ``cert_file`` on 127.0.0.1 (any free port)."""
    server = DoqServer(records, ttl=ttl, mode=mode)
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=[DOQ_ALPN],
        supported_versions=[QuicProtocolVersion.VERSION_1],
    )
    configuration.load_cert_chain(cert_file, key_file)
    with mock.patch.object(aioquic.tls, "pull_client_hello", _recording_pull):
        quic_server = await serve(
            "127.0.0.1", 0, configuration=configuration, create_protocol=_protocol(server)
        )
        transport = quic_server._transport
        assert transport is not None
        server.port = transport.get_extra_info("sockname")[1]
        try:
            yield server
        finally:
            quic_server.close()
