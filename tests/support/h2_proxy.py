"""A tiny HTTPS proxy that speaks HTTP/2 CONNECT (ALPN h2, or http/1.1 CONNECT when the
client offers only that), for the HTTP outbound's tests: it records every request's
headers and the connection it came on, answers ``status`` (200 by default) and then
relays the stream's DATA to the target and back."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from tests.support.tls_certs import KeyPair


@dataclass
class H2ProxyRecord:
    """What the proxy saw: per request (connection number, headers in order)."""

    requests: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    first_data: list[bytes] = field(default_factory=list)
    connections: int = 0
    status: int = 200


def _context(pair: KeyPair) -> ssl.SSLContext:
    directory = Path(tempfile.mkdtemp(prefix="h2proxy-"))
    cert, key = pair.write(directory, "proxy")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def _serve(
    record: H2ProxyRecord, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    record.connections += 1
    number = record.connections
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    targets: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    pumps: list[asyncio.Task[None]] = []

    async def pump(sid: int, target: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await target.read(16384):
                conn.send_data(sid, data)
                writer.write(conn.data_to_send())
        with contextlib.suppress(Exception):
            conn.end_stream(sid)
            writer.write(conn.data_to_send())

    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = [(k.decode(), v.decode()) for k, v in event.headers]
                    record.requests.append((number, headers))
                    sid = event.stream_id
                    authority = dict(headers).get(":authority", "")
                    if record.status != 200:
                        conn.send_headers(sid, [(":status", str(record.status))], end_stream=True)
                        continue
                    host, _, port = authority.rpartition(":")
                    t_reader, t_writer = await asyncio.open_connection(host, int(port))
                    targets[sid] = (t_reader, t_writer)
                    conn.send_headers(sid, [(":status", "200")])
                    pumps.append(asyncio.create_task(pump(sid, t_reader)))
                elif isinstance(event, h2.events.DataReceived):
                    sid = event.stream_id
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    if sid in targets:
                        if len(record.first_data) < len(record.requests):
                            record.first_data.append(event.data)
                        targets[sid][1].write(event.data)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    found = targets.pop(event.stream_id, None)
                    if found is not None:
                        found[1].close()
            writer.write(conn.data_to_send())
    except (OSError, ssl.SSLError, asyncio.CancelledError):
        pass  # the peer left, or the proxy is shutting down
    finally:
        for task in pumps:
            task.cancel()
        for _, target_writer in targets.values():
            target_writer.close()
        writer.close()


@contextlib.asynccontextmanager
async def h2_connect_proxy(pair: KeyPair) -> AsyncIterator[tuple[int, H2ProxyRecord]]:
    """(port, record) of a running HTTP/2 CONNECT proxy with ``pair``'s certificate."""
    record = H2ProxyRecord()
    handlers: set[asyncio.Task[None]] = set()

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(_serve(record, reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.start_server(start, "127.0.0.1", 0, ssl=_context(pair))
    try:
        yield server.sockets[0].getsockname()[1], record
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5)
