"""The TLS layer over loopback TCP: verification, SNI/ALPN rules and certificate choice as
4.34 (docs/spec/transports.md section 3), tickets, bad input at the server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.support.layers import TcpBase, listening, read_all
from tests.support.tls_certs import TestCA
from v2py.config.stream import TlsConfig
from v2py.protocol.tls_hello import alpn_refused, decode_client_hello_alpn
from v2py.transport.tls import TlsSecurity, TlsStream, TlsTransport

CA = TestCA()
LEAF = CA.issue("example.test", "127.0.0.1")
OTHER = CA.issue("other.test")
EXPIRED = CA.issue("example.test", "127.0.0.1", expired=True)


def tls(**settings: Any) -> TlsConfig:
    return TlsConfig.model_validate(settings, context={})


def server(pair: Any = LEAF, network: str = "tcp", **extra: Any) -> TlsTransport:
    certs = extra.pop("certificates", [pair.inline()])
    return TlsTransport(TcpBase(), TlsSecurity(tls(certificates=certs, **extra), network=network))


def client(network: str = "tcp", **settings: Any) -> TlsTransport:
    settings.setdefault("certificates", [CA.pair.inline(usage="verify")])
    return TlsTransport(TcpBase(), TlsSecurity(tls(**settings), network=network))


async def roundtrip(dialer: TlsTransport, port: int, host: str = "127.0.0.1", size: int = 1 << 20):
    payload = random.Random(size).randbytes(size)
    async with asyncio.timeout(10):
        stream = await dialer.dial(host, port, timeout=5)
        stream.write(payload)
        stream.write_eof()
        got = await read_all(stream, size + 1)
        stream.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    return stream


async def test_roundtrip_verified_by_server_name() -> None:
    async with listening(server()) as port:
        stream = await roundtrip(client(serverName="example.test"), port)
        assert isinstance(stream, TlsStream)


async def test_ip_destination_verified_when_ip_is_in_the_certificate_for_ws() -> None:
    # gorilla sets the verification name to the dialed host, IPs included.
    async with listening(server()) as port:
        await roundtrip(client(network="ws"), port, size=1000)


async def test_ip_destination_without_server_name_is_refused_unless_insecure() -> None:
    async with listening(server()) as port:
        with pytest.raises(ssl.SSLError, match="serverName or allowInsecure"):
            await client().dial("127.0.0.1", port, timeout=5)
        await roundtrip(client(allowInsecure=True), port, size=1000)


@pytest.mark.parametrize("pair", [EXPIRED, OTHER], ids=["expired", "wrong-name"])
async def test_bad_certificates_refused_unless_insecure(pair: Any) -> None:
    async with listening(server(pair)) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await client(serverName="example.test").dial("127.0.0.1", port, timeout=5)
        await roundtrip(client(serverName="example.test", allowInsecure=True), port, size=1000)


async def test_unknown_ca_refused_and_disable_system_root() -> None:
    async with listening(server()) as port:
        stranger = TlsTransport(
            TcpBase(), TlsSecurity(tls(serverName="example.test"), network="tcp")
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            await stranger.dial("127.0.0.1", port, timeout=5)
        await roundtrip(client(serverName="example.test", disableSystemRoot=True), port, size=10)


def _raw_handshake(port: int, alpn: list[str] | None, sni: str | None = None) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(sock, server_hostname=sni)


@pytest.mark.parametrize(
    ("network", "offer", "selected"),
    [
        ("tcp", None, None),
        ("tcp", ["h2", "http/1.1"], "h2"),
        ("tcp", ["http/1.1"], None),  # Go's h2 -> http/1.1 fallback: no ALPN, no alert
        ("tcp", ["foo"], "alert"),
        ("ws", ["http/1.1"], "http/1.1"),
        ("ws", ["h2", "http/1.1"], "h2"),
        ("ws", ["foo"], "alert"),
    ],
)
async def test_server_alpn_as_go(network: str, offer: list[str] | None, selected: str) -> None:
    async with listening(server(network=network)) as port:

        def probe() -> str | None:
            with _raw_handshake(port, offer) as sock:
                return sock.selected_alpn_protocol()

        if selected == "alert":
            with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application"):
                await asyncio.to_thread(probe)
        else:
            assert await asyncio.to_thread(probe) == selected


def test_alpn_rule_table() -> None:
    assert not alpn_refused(("h2",), None)
    assert not alpn_refused((), (b"foo",))
    assert alpn_refused(("http/1.1",), (b"h2",))
    assert not alpn_refused(("h2",), (b"http/1.1",))
    assert alpn_refused(("h2",), (b"foo",))


def test_client_hello_parser_byte_at_a_time() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="a.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    for cut in range(len(hello)):
        assert decode_client_hello_alpn(hello[:cut]) is None
    found = decode_client_hello_alpn(hello)
    assert found is not None and found.is_hello
    assert found.offered == (b"h2", b"http/1.1")
    garbage = decode_client_hello_alpn(b"GET / HTTP/1.1\r\n")
    assert garbage is not None and not garbage.is_hello


async def test_certificate_chosen_by_sni_first_otherwise() -> None:
    certs = [LEAF.inline(), OTHER.inline()]
    async with listening(server(certificates=certs)) as port:

        def subject(sni: str | None) -> str:
            with _raw_handshake(port, None, sni) as sock:
                der = sock.getpeercert(binary_form=True)
            from cryptography import x509

            return x509.load_der_x509_certificate(der).subject.rfc4514_string()

        assert await asyncio.to_thread(subject, "other.test") == "CN=other.test"
        assert await asyncio.to_thread(subject, None) == "CN=example.test"
        assert await asyncio.to_thread(subject, "unknown.test") == "CN=example.test"


async def test_issue_mints_a_leaf_per_server_name() -> None:
    certs = [CA.pair.inline(usage="issue")]
    async with listening(server(certificates=certs)) as port:
        for name in ("dyn1.test", "dyn2.test"):
            await roundtrip(client(serverName=name), port, size=1000)


@pytest.mark.parametrize("resumption", [False, True])
async def test_tickets_only_with_session_resumption(resumption: bool) -> None:
    async with listening(server(enableSessionResumption=resumption)) as port:

        def ticket() -> bool:
            with _raw_handshake(port, None) as sock:
                sock.settimeout(0.3)
                with contextlib.suppress(TimeoutError, OSError):
                    sock.recv(1)  # TLS 1.3 tickets arrive after the handshake
                session = sock.session
                return bool(session is not None and session.has_ticket)

        assert await asyncio.to_thread(ticket) is resumption


@pytest.mark.parametrize(
    "probe",
    [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"garbage" * 100],
    ids=["http", "bad-record", "garbage"],
)
async def test_bad_input_closes_and_listener_keeps_serving(probe: bytes) -> None:
    async with listening(server()) as port:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(probe)
            async with asyncio.timeout(5):
                rest = await reader.read()
            if probe[:1] != b"\x16":
                assert rest == b""  # Go: not a TLS record, closed without an alert
            assert b"HTTP" not in rest  # tcp+tls answers no HTTP (ws+tls does)
            writer.close()
        await roundtrip(client(serverName="example.test"), port, size=1000)


async def test_http_to_ws_tls_port_gets_go_reply() -> None:
    security = TlsSecurity(tls(certificates=[LEAF.inline()]), network="ws")
    async with listening(TlsTransport(TcpBase(), security, http_reply=True)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(5):
            assert await reader.read() == (
                b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
            )
        writer.close()


def test_missing_certificate_file_is_a_config_error(tmp_path: Path) -> None:
    from v2py.errors import ConfigError

    config = tls(certificates=[{"certificateFile": str(tmp_path / "nope.crt")}])
    with pytest.raises(ConfigError, match="certificates\\[0\\]"):
        TlsSecurity(config, network="tcp")


@pytest.mark.parametrize("resumption", [False, True])
async def test_client_resumes_only_with_session_resumption(resumption: bool) -> None:
    async with listening(server(enableSessionResumption=resumption)) as port:
        dialer = client(serverName="example.test", enableSessionResumption=resumption)
        resumed = []
        for _ in range(3):
            stream = await roundtrip(dialer, port, size=1000)
            resumed.append(stream.resumed)
    assert resumed == [False, resumption, resumption]


class _ServerWire:
    """The client's stream below: each write goes to a server ``SSLObject`` driven here;
    what the server answers is what ``read`` returns. Records every write."""

    can_push = False

    def __init__(self, security: TlsSecurity) -> None:
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = security.server_context().wrap_bio(self.s_in, self.s_out, server_side=True)
        self.writes: list[bytes] = []
        self.done = False
        self._replies: asyncio.Queue[bytes] = asyncio.Queue()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.s_in.write(data)
        if not self.done:
            with contextlib.suppress(ssl.SSLWantReadError):
                self.server.do_handshake()
                self.done = True
        out = self.s_out.read()
        if out:
            self._replies.put_nowait(out)

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._replies.get()

    def close(self) -> None:
        pass


def _wired_client() -> tuple[TlsStream, _ServerWire]:
    wire = _ServerWire(TlsSecurity(tls(certificates=[LEAF.inline()]), network="tcp"))
    security = TlsSecurity(tls(serverName="example.test", allowInsecure=True), network="tcp")
    return TlsStream.client(wire, security, "127.0.0.1", 443), wire  # type: ignore[arg-type]


async def test_client_finished_leaves_with_the_first_request() -> None:
    stream, wire = _wired_client()
    async with asyncio.timeout(5):
        await stream.handshake()
    assert len(wire.writes) == 1 and not wire.done  # the ClientHello; Finished held
    stream.write(b"request")
    assert len(wire.writes) == 2 and wire.done  # Finished and the record in one write
    assert wire.server.read(100) == b"request"


async def test_client_finished_leaves_alone_at_the_turns_end() -> None:
    stream, wire = _wired_client()
    async with asyncio.timeout(5):
        await stream.handshake()
        await asyncio.sleep(0)
    assert len(wire.writes) == 2 and wire.done
    stream.write(b"later")
    assert len(wire.writes) == 3
    assert wire.server.read(100) == b"later"
