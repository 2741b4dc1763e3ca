"""The QUIC transport on loopback, v2py to v2py: streams share a connection up to 32
open, a second connection past that, tlsSettings certificates and serverName, a wrong
key never connecting, and garbage datagrams leaving the listener serving."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.layers import read_all
from tests.support.tls_certs import TestCA
from v2py.config.stream import TlsConfig
from v2py.config.transport_extra import QuicConfig
from v2py.transport.quic import QuicListener, QuicTransport
from v2py.transport.stream import Stream

CA = TestCA()
LEAF = CA.issue("quic.test")


def quic(**settings: Any) -> QuicConfig:
    return QuicConfig.model_validate(settings, context={})


def tls(**settings: Any) -> TlsConfig:
    return TlsConfig.model_validate(settings, context={})


class Echo:
    """Echo handler that remembers each stream's peer."""

    def __init__(self) -> None:
        self.peers: list[Any] = []

    async def __call__(self, stream: Stream) -> None:
        self.peers.append(stream.peer)
        with contextlib.suppress(OSError):
            while data := await stream.read():
                stream.write(data)
                await stream.drain()
            stream.write_eof()


@contextlib.asynccontextmanager
async def serving(transport: QuicTransport, handler: Any) -> AsyncIterator[QuicListener]:
    listener = await transport.listen("127.0.0.1", 0, handler)
    try:
        yield listener
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def exchange(client: QuicTransport, port: int, payload: bytes) -> bytes:
    """Send ``payload`` while reading the echo: receive windows are bounded, so a
    writer that reads only after writing it all would wait on itself."""
    return await echo_on(await client.dial("127.0.0.1", port, timeout=5), payload)


async def echo_on(stream: Stream, payload: bytes) -> bytes:
    """:func:`exchange` on a stream already open."""

    async def send() -> None:
        stream.write(payload)
        await stream.drain()
        stream.write_eof()

    try:
        _, echoed = await asyncio.gather(send(), read_all(stream, len(payload)))
        return echoed
    finally:
        stream.close()


SETTINGS = {"security": "chacha20-poly1305", "key": "secret", "header": {"type": "dtls"}}


@pytest.mark.parametrize(("streams", "connections"), [(20, 1), (40, 2)])
async def test_streams_share_connections(streams: int, connections: int) -> None:
    server, client = QuicTransport(quic(**SETTINGS), None), QuicTransport(quic(**SETTINGS), None)
    echo = Echo()
    async with serving(server, echo) as listener:
        payloads = [os.urandom(20_000 + 997 * i) for i in range(streams)]
        async with asyncio.timeout(30):
            # All streams open before any data moves: a finished stream frees its place
            # (and the server's stream credit), so exchanges run as they open could fit
            # on fewer connections.
            opened = await asyncio.gather(
                *(client.dial("127.0.0.1", listener.port, timeout=5) for _ in payloads)
            )
            got = await asyncio.gather(
                *(echo_on(s, p) for s, p in zip(opened, payloads, strict=True))
            )
        assert got == payloads
        # Every connection dials from its own UDP socket: one peer per connection.
        assert len(set(echo.peers)) == connections
    await client.aclose()


async def test_large_transfer_with_tls_settings() -> None:
    server = QuicTransport(quic(), tls(certificates=[LEAF.inline()]))
    client = QuicTransport(
        quic(),
        tls(serverName="quic.test", certificates=[CA.pair.inline(usage="verify")]),
    )
    async with serving(server, Echo()) as listener:
        payload = os.urandom(2 << 20)
        async with asyncio.timeout(60):
            assert await exchange(client, listener.port, payload) == payload
    await client.aclose()


async def test_wrong_key_never_connects_and_is_dropped() -> None:
    server = QuicTransport(quic(security="aes-128-gcm", key="right"), None)
    client = QuicTransport(quic(security="aes-128-gcm", key="wrong"), None)
    async with serving(server, Echo()) as listener:
        with pytest.raises(TimeoutError):
            await client.dial("127.0.0.1", listener.port, timeout=0.5)
        assert listener.dropped > 0
    await client.aclose()


async def test_garbage_then_good_client() -> None:
    server, client = QuicTransport(quic(**SETTINGS), None), QuicTransport(quic(**SETTINGS), None)
    async with serving(server, Echo()) as listener:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", listener.port)
        )
        for size in (0, 1, 13, 25, 1300):
            transport.sendto(os.urandom(size))
        transport.close()
        async with asyncio.timeout(10):
            assert await exchange(client, listener.port, b"still serving") == b"still serving"
        assert listener.dropped >= 4  # asyncio does not send the empty one
    await client.aclose()


async def served_leaf(server: QuicTransport, name: str, client_ca: TestCA) -> str:
    """The common name of the certificate ``server`` serves a client asking for ``name``
    (the client verifies it against ``client_ca``)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    client = QuicTransport(
        quic(), tls(serverName=name, certificates=[client_ca.pair.inline(usage="verify")])
    )
    async with serving(server, Echo()) as listener:
        async with asyncio.timeout(10):
            assert await exchange(client, listener.port, b"hello") == b"hello"
        conn = next(iter(client._pool))
        cert = conn.protocol._quic.tls._peer_certificate
    await client.aclose()
    assert isinstance(cert, x509.Certificate)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_issue_ca_mints_a_leaf_for_each_server_name() -> None:
    """``usage: "issue"`` on QUIC as 4.34 serves it: a leaf for the client's SNI,
    signed by the CA, made once and served again for the same name."""
    server = QuicTransport(quic(), tls(certificates=[CA.pair.inline(usage="issue")]))
    assert await served_leaf(server, "one.test", CA) == "one.test"
    assert await served_leaf(server, "two.test", CA) == "two.test"
    assert await served_leaf(server, "one.test", CA) == "one.test"


async def test_several_certificates_chosen_by_server_name() -> None:
    other = TestCA("other CA")
    first, second = CA.issue("a.test"), CA.issue("b.test", "*.wild.test")
    server = QuicTransport(quic(), tls(certificates=[first.inline(), second.inline()]))
    assert await served_leaf(server, "a.test", CA) == "a.test"
    assert await served_leaf(server, "b.test", CA) == "b.test"
    assert await served_leaf(server, "x.wild.test", CA) == "b.test"
    with pytest.raises((ConnectionError, OSError, TimeoutError)):
        await served_leaf(server, "a.test", other)  # verified: the client refuses it


async def test_no_certificate_for_the_name_fails_that_handshake_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the issuing CA mints nothing the handshake ends with an alert (the
    client's dial fails); the listener serves the next client."""
    from v2py.transport.quic import _QuicCertificates

    server = QuicTransport(quic(), tls(certificates=[CA.pair.inline(usage="issue")]))
    listener = await server.listen("127.0.0.1", 0, Echo())
    try:
        with monkeypatch.context() as patched:
            patched.setattr(_QuicCertificates, "_mint", lambda *_: None)
            client = QuicTransport(
                quic(), tls(serverName="x.test", certificates=[CA.pair.inline(usage="verify")])
            )
            with pytest.raises((ConnectionError, OSError, TimeoutError)):
                await client.dial("127.0.0.1", listener.port, timeout=3)
            await client.aclose()
        client = QuicTransport(
            quic(), tls(serverName="y.test", certificates=[CA.pair.inline(usage="verify")])
        )
        async with asyncio.timeout(10):
            assert await exchange(client, listener.port, b"next") == b"next"
        await client.aclose()
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def test_listen_on_a_domain_is_refused() -> None:
    with pytest.raises(OSError, match="domain address"):
        await QuicTransport(quic(), None).listen("localhost", 0, Echo())


async def test_concurrent_dials_all_carry_their_bytes() -> None:
    """Many dials at once through one client transport: every stream gets its own ID
    even when none has written yet, and the listener accepts streams whose first bytes
    arrive out of ID order (the idle-connection loss of the QUIC bench)."""
    server, client = QuicTransport(quic(**SETTINGS), None), QuicTransport(quic(**SETTINGS), None)
    echo = Echo()
    async with serving(server, echo) as listener:
        count = 100
        async with asyncio.timeout(30):
            streams = await asyncio.gather(
                *(client.dial("127.0.0.1", listener.port, timeout=10) for _ in range(count))
            )
            ids = {(id(s._owner), s.stream_id) for s in streams}
            assert len(ids) == count
            payloads = [b"%d:" % i + os.urandom(64) for i in range(count)]
            # Nothing was written while dialling. The newest stream of each connection
            # goes first, and its echo comes back before the older ones write.
            pairs = list(zip(streams, payloads, strict=True))
            newest = {id(s._owner): (s, p) for s, p in pairs}
            for stream, payload in newest.values():
                stream.write(payload)
                stream.write_eof()
            for stream, payload in newest.values():
                assert await read_all(stream, len(payload)) == payload
            rest = [(s, p) for s, p in pairs if newest[id(s._owner)][0] is not s]
            for stream, payload in rest:
                stream.write(payload)
                stream.write_eof()
            got = await asyncio.gather(*(read_all(s, len(p)) for s, p in rest))
            for stream in streams:
                stream.close()
        assert got == [p for _, p in rest]
        assert len(echo.peers) == count
    await client.aclose()


def test_first_congestion_window_is_quic_gos() -> None:
    """Both ends start with quic-go 0.29's 32 x 1252-byte window (aioquic: 10 packets)."""
    from aioquic.quic.congestion.base import create_congestion_control

    from v2py.transport.quic import INITIAL_CONGESTION_WINDOW_BYTES

    for client in (True, False):
        config = QuicTransport(quic(), None)._configuration(client=client)
        control = create_congestion_control(
            config.congestion_control_algorithm, max_datagram_size=config.max_datagram_size
        )
        assert control.congestion_window == INITIAL_CONGESTION_WINDOW_BYTES == 40_064
