"""Interop: VLESS and Trojan inbound ``fallbacks`` on v2ray 4.34 and on v2py, same config:
what is not the inbound's protocol goes to the fallback picked by request path and
TLS ALPN, with the PROXY header ``xver`` asks for, over TCP and an abstract Unix socket;
each backend must see the same bytes and each client get the same answer from both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.tls_certs import TestCA
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
PASSWORD = "fallback-test"
CA = TestCA()
LEAF = CA.issue("v2py.test", "127.0.0.1")
TIMEOUT_S = 30.0


class Backend:
    """A fallback target: records the bytes of each connection, answers with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        data = b""
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(5):
                # (a PROXY v2 header starts with CRLF CRLF and may come alone)
                while not data.endswith(b"\r\n\r\n"):
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    data += chunk
        self.seen.append(data)
        body = self.name.encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def backends() -> AsyncIterator[tuple[dict[str, Backend], list[dict[str, Any]]]]:
    """The backends and the ``fallbacks`` that name them."""
    names = ["default", "b", "px1", "px2", "unix", "h2"]
    found = {name: Backend(name) for name in names}
    servers = []
    fallbacks: list[dict[str, Any]] = []
    abstract = f"v2py-fallback-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for name in names:
        if name == "unix":
            server = await asyncio.start_unix_server(found[name].serve, path="\0" + abstract)
            dest: Any = "@" + abstract
        else:
            server = await asyncio.start_server(found[name].serve, "127.0.0.1", 0)
            dest = server.sockets[0].getsockname()[1]
        servers.append(server)
        entry: dict[str, Any] = {"dest": dest}
        if name == "h2":
            entry["alpn"] = "h2"
        elif name != "default":
            entry["path"] = "/" + name
        if name in ("px1", "px2"):
            entry["xver"] = int(name[-1])
        fallbacks.append(entry)
    try:
        yield found, fallbacks
    finally:
        for server in servers:
            server.close()


def server_config(
    protocol: str, port: int, fallbacks: list[dict[str, Any]], tls: bool
) -> dict[str, Any]:
    settings: dict[str, Any] = (
        {"clients": [{"id": UUID}], "decryption": "none"}
        if protocol == "vless"
        else {"clients": [{"password": PASSWORD}]}
    )
    settings["fallbacks"] = fallbacks
    inbound: dict[str, Any] = {
        "listen": "127.0.0.1",
        "port": port,
        "protocol": protocol,
        "settings": settings,
    }
    if tls:
        inbound["streamSettings"] = {
            "security": "tls",
            "tlsSettings": {"alpn": ["h2", "http/1.1"], "certificates": [LEAF.inline()]},
        }
    config: dict[str, Any] = {
        "log": {"loglevel": "warning"},
        "inbounds": [inbound],
        "outbounds": [{"protocol": "freedom"}],
    }
    if not tls:
        # Over plain TCP both keep the client's connection until uplinkOnly (1 s by
        # default) after the fallback's answer: 0 keeps the test short.
        config["policy"] = {"levels": {"0": {"uplinkOnly": 0}}}
    return config


async def _ask(port: int, request: bytes, alpn: str | None = None) -> bytes:
    """Send ``request`` (over TLS when ``alpn``), return all that comes back."""
    context: ssl.SSLContext | None = None
    if alpn is not None:
        context = ssl.create_default_context(cadata=CA.pair.cert_pem)
        context.set_alpn_protocols([alpn])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="v2py.test" if context else None
    )
    try:
        writer.write(request)
        await writer.drain()
        got = b""
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(5):
                while chunk := await reader.read(4096):
                    got += chunk
        return got
    finally:
        writer.close()


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: v2py.test\r\n\r\n".encode()


CASES: list[tuple[str, bytes, str]] = [
    ("root", _request("/"), "default"),
    ("path b", _request("/b"), "b"),
    ("unknown path", _request("/nope"), "default"),
    ("PROXY v1", _request("/px1"), "px1"),
    ("PROXY v2", _request("/px2"), "px2"),
    ("abstract unix socket", _request("/unix"), "unix"),
    ("short", b"hi\r\n\r\n", "default"),
    ("h2c preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "default"),
]


@pytest.mark.parametrize("protocol", ["vless", "trojan"])
async def test_fallbacks_as_4_34(protocol: str) -> None:
    results: dict[str, list[tuple[bytes, list[bytes]]]] = {}
    async with backends() as (found, fallbacks):
        for kind in ("v2ray", "v2py"):
            port = free_port()
            seen_by: list[tuple[bytes, list[bytes]]] = []
            async with (
                run_side(kind, server_config(protocol, port, fallbacks, tls=False), port),
                asyncio.timeout(TIMEOUT_S),
            ):
                for _, request, backend in CASES:
                    before = len(found[backend].seen)
                    answer = await _ask(port, request)
                    # (run_side's readiness probe falls back too, with nothing: skipped)
                    new = [n for n in found[backend].seen[before:] if n]
                    seen_by.append((answer, [_strip_ports(n) for n in new]))
            results[kind] = seen_by
    for (name, _, backend), want, got in zip(CASES, results["v2ray"], results["v2py"], strict=True):
        assert got == want, name
        assert got[0].endswith(backend.encode()), name


def _strip_ports(seen: bytes) -> bytes:
    """PROXY headers name the client's and the inbound's ports, which differ from run
    to run: keep the rest."""
    if seen.startswith(b"PROXY "):
        line, _, rest = seen.partition(b"\r\n")
        return b" ".join(line.split(b" ")[:4]) + b"\r\n" + rest
    if seen.startswith(b"\r\n\r\n\x00\r\nQUIT\n"):
        return seen[: 16 + 8] + seen[16 + 12 :]  # (16-byte head, two IPv4 addresses, ports)
    return seen


@pytest.mark.parametrize("protocol", ["vless", "trojan"])
async def test_fallbacks_by_alpn_over_tls_as_4_34(protocol: str) -> None:
    """Over TLS: VLESS picks "h2"'s fallback by the negotiated ALPN (http/1.1 has none of
    its own and takes the "" ones, by path); 4.34's Trojan never sees the ALPN."""
    answers: dict[str, list[bytes]] = {}
    async with backends() as (_, fallbacks):
        for kind in ("v2ray", "v2py"):
            port = free_port()
            async with (
                run_side(kind, server_config(protocol, port, fallbacks, tls=True), port),
                asyncio.timeout(TIMEOUT_S),
            ):
                loop = asyncio.get_running_loop()
                start = loop.time()
                answers[kind] = [
                    await _ask(port, _request("/"), "h2"),
                    await _ask(port, _request("/b"), "http/1.1"),
                    await _ask(port, _request("/"), "http/1.1"),
                ]
                # Over TLS both close the client's connection once the answer ended
                # (not after uplinkOnly, 1 s here).
                assert loop.time() - start < 1.5, kind
    assert answers["v2py"] == answers["v2ray"]
    first = b"h2" if protocol == "vless" else b"default"
    assert [a.rsplit(b"\n", 1)[-1] for a in answers["v2py"]] == [first, b"b", b"default"]


async def test_vless_handshake_timeout_as_4_34() -> None:
    """With fallbacks, a client silent until the handshake timeout (1 s here) is handed
    to a fallback (4.34 ignores the first read's error); one whose first read passed
    (version 0, a known id) and then stops is closed without falling back."""
    from v2py.protocol.vless import COMMAND_TCP, encode_request

    passed = encode_request(uuid.UUID(UUID).bytes, COMMAND_TCP, "127.0.0.1", 80)[:20]

    async def probe(port: int, data: bytes) -> bytes | None:
        """What comes back within 2.5 s (None: nothing, the connection still open)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if data:
                writer.write(data)
                await writer.drain()
            try:
                async with asyncio.timeout(2.5):
                    return await reader.read(4096)
            except TimeoutError:
                return None
        finally:
            writer.close()

    async def run(kind: str, backend: Backend, fallbacks: list[Any]) -> list[Any]:
        port = free_port()
        config = server_config("vless", port, fallbacks, tls=False)
        config["policy"]["levels"]["0"]["handshake"] = 1
        async with run_side(kind, config, port):
            # run_side's readiness probe (a bare connect) falls back at once on 4.34:
            # let its connection reach the backend before counting
            await asyncio.sleep(0.3)
            before = backend.connections
            answers = await asyncio.gather(probe(port, b""), probe(port, passed))
            return [*answers, backend.connections - before]

    async with backends() as (found, fallbacks), asyncio.timeout(TIMEOUT_S):
        # (one after the other: the default backend counts the fallen-back connections)
        theirs = await run("v2ray", found["default"], fallbacks)
        ours = await run("v2py", found["default"], fallbacks)
    # the silent one is with the backend (which waits for a request), the other closed
    assert ours == theirs == [None, b"", 1]
