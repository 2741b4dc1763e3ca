"""Interop: no proxy half-closes a TCP connection, as 4.34 (its freedom, socks and
vmess handlers copy and return; nothing calls ``CloseWrite``).

* The client half-closes after its request: the target sees no end until the relay's
  ``downlinkOnly`` timer closes its connection, so a target that answers only after
  the end never gets to answer (the client reads the end, nothing else).
* The target sends its answer and closes: the client reads the answer, and the end
  only when ``uplinkOnly`` runs out (or the client closes first), not at once.

Same observations on the real v2ray (the reference), on v2py, and on every pairing of
a VMess client and server, with 1 s policy timers. And the two ends 4.34's VMess
handlers treat as errors (a response that ends before any data, a request that ends
before its first payload): the connection ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.chain import UUID, config, freedom, socks_in, vmess_in, vmess_out
from tests.support.socks import socks5_connect
from tests.support.v2py import run_side
from tests.support.v2ray import free_port
from tests.support.vmess_probe import new_client, probe, user

pytestmark = pytest.mark.interop

#: uplinkOnly / downlinkOnly of every side (seconds).
TIMER_S = 1
#: An end seen sooner than this after the other direction ended came from a half-close.
AT_ONCE_S = 0.5
#: An AEAD response header on the wire: sealed length (2 + 16) and header (4 + 16).
AEAD_RESPONSE_HEADER_BYTES = 38
POLICY = {"levels": {"0": {"uplinkOnly": TIMER_S, "downlinkOnly": TIMER_S}}}

TOPOLOGIES = [
    ("v2ray", None),
    ("v2py", None),
    ("v2ray", "v2ray"),
    ("v2py", "v2ray"),
    ("v2ray", "v2py"),
    ("v2py", "v2py"),
]
IDS = [f"{c}-freedom" if s is None else f"{c}-vmess-{s}" for c, s in TOPOLOGIES]


def _with_policy(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["policy"] = POLICY
    return cfg


@contextlib.asynccontextmanager
async def _proxy(client: str, server: str | None) -> AsyncIterator[int]:
    """Yield the SOCKS port of a socks → freedom process (``server`` None) or of a
    socks → VMess client in front of a VMess → freedom server."""
    socks_port = free_port()
    if server is None:
        cfg = _with_policy(config([socks_in(socks_port)], [freedom()]))
        async with run_side(client, cfg, socks_port):
            yield socks_port
        return
    vmess_port = free_port()
    server_cfg = _with_policy(config([vmess_in(vmess_port)], [freedom()]))
    client_cfg = _with_policy(config([socks_in(socks_port)], [vmess_out(vmess_port)]))
    async with run_side(server, server_cfg, vmess_port), run_side(client, client_cfg, socks_port):
        yield socks_port


@contextlib.asynccontextmanager
async def _requested(
    socks_port: int, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A target served by ``serve``, reached through SOCKS, with b"request" sent;
    yields the client's (reader, writer)."""
    target = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = target.sockets[0].getsockname()[1]
        reader, writer = await socks5_connect(socks_port, "127.0.0.1", port)
        try:
            writer.write(b"request")
            await writer.drain()
            yield reader, writer
        finally:
            writer.close()
    finally:
        target.close()


async def _client_half_closes(socks_port: int) -> tuple[float | None, bytes]:
    """The client sends a request and half-closes; the target answers only after the
    end. Returns (seconds until the target saw the end or None, what the client read)."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[float | None] = loop.create_future()

    async def answer_after_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(7)
        start = time.monotonic()
        try:
            async with asyncio.timeout(TIMER_S * 4):
                rest = await reader.read()
        except TimeoutError:
            rest = None
        if not seen.done():
            seen.set_result(time.monotonic() - start if rest == b"" else None)
        with contextlib.suppress(OSError):
            writer.write(b"answer")
            await writer.drain()
        writer.close()

    async with _requested(socks_port, answer_after_end) as (reader, writer):
        writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        try:
            got = await reader.read()
        except OSError:
            got = b"<reset>"
        return await seen, got


async def _target_finishes(socks_port: int) -> tuple[bytes, float]:
    """The target answers and closes. Returns (the answer the client read, seconds from
    the answer to the end the client read)."""

    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(7)
        writer.write(b"answer")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async with _requested(socks_port, answer_and_close) as (reader, writer):
        answer = await reader.readexactly(6)
        start = time.monotonic()
        rest = await reader.read()
        assert rest == b""
        return answer, time.monotonic() - start


@pytest.mark.parametrize(("client", "server"), TOPOLOGIES, ids=IDS)
async def test_no_tcp_half_close(client: str, server: str | None) -> None:
    async with _proxy(client, server) as socks_port:
        async with asyncio.timeout(TIMER_S * 10):
            (target_end, client_read), (answer, client_end) = await asyncio.gather(
                _client_half_closes(socks_port), _target_finishes(socks_port)
            )
    # The target's end came from the timer, not from the client's half-close ...
    assert target_end is not None and target_end >= AT_ONCE_S, target_end
    # ... which closed the client's connection too: the late answer never arrives.
    assert client_read == b""
    assert answer == b"answer"
    # The client's end came from the timer, not from the target's close.
    assert client_end >= AT_ONCE_S, client_end


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_response_ends_before_data(kind: str) -> None:
    """The target closes without sending anything: a VMess server sends the bare
    response header (no end chunk) and closes at once (4.34's transferResponse fails
    its first read; the deferred Flush writes the header)."""

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    target = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    vmess_port = free_port()
    server_cfg = _with_policy(config([vmess_in(vmess_port)], [freedom()]))
    try:
        async with run_side(kind, server_cfg, vmess_port):
            core = new_client(
                user(UUID), aead=True, now=time.time(), target=target.sockets[0].getsockname()
            )
            core.send_data(b"request")
            result = await probe(vmess_port, [bytes(core.data_to_send())], wait=TIMER_S * 3)
    finally:
        target.close()
    assert len(result.received) == AEAD_RESPONSE_HEADER_BYTES
    assert result.closed and not result.reset and result.close_delay < AT_ONCE_S


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_request_ends_before_first_payload(kind: str) -> None:
    """The client half-closes before sending anything, within the 100 ms a VMess client
    waits for the first payload: nothing reaches the server, both connections close at
    once (4.34's CopyOnceTimeout fails: "failed to write first payload")."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[tuple[int, float | None]] = loop.create_future()

    async def fake_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = time.monotonic()
        data = b""
        try:
            async with asyncio.timeout(TIMER_S * 3):
                while chunk := await reader.read(4096):
                    data += chunk
            ended: float | None = time.monotonic() - start
        except TimeoutError:
            ended = None
        if not seen.done():
            seen.set_result((len(data), ended))
        writer.close()

    server = await asyncio.start_server(fake_server, "127.0.0.1", 0)
    socks_port = free_port()
    server_port = server.sockets[0].getsockname()[1]
    client_cfg = _with_policy(config([socks_in(socks_port)], [vmess_out(server_port)]))
    try:
        async with run_side(kind, client_cfg, socks_port), asyncio.timeout(TIMER_S * 10):
            reader, writer = await socks5_connect(socks_port, "127.0.0.1", 9)
            try:
                writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
                start = time.monotonic()
                assert await reader.read() == b""
                client_end = time.monotonic() - start
            finally:
                writer.close()
            received, server_end = await seen
    finally:
        server.close()
    assert received == 0
    assert server_end is not None and server_end < AT_ONCE_S
    assert client_end < AT_ONCE_S
