"""Active probing of a VMess server, V2Ray 4.34 and v2py side by side: how does the
connection end after a failed handshake? (issue 12, defect 3)

* more than the drain budget (at most 3,383 bytes in 4.34): 4.34 stops reading and
  closes with bytes unread, so the kernel sends RST; v2py must reset too;
* a short probe, then the prober's EOF: both drain to EOF and close with FIN;
* a short probe and silence: both wait out the handshake timeout, then FIN.

The client tells RST from FIN by ``recv``: ConnectionResetError versus ``b""``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
import uuid

import pytest

from tests.support.configs import vmess_server_config
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop
HANDSHAKE_S = 2
TIMEOUT_S = 15.0
BIG_PROBE_BYTES = 16 * 1024  # well above 4.34's largest drain budget


def _probe(port: int, data: bytes, *, eof: bool) -> str:
    """Send ``data`` (then EOF if asked); return "RST" or "FIN" by how it ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            if eof:
                sock.shutdown(socket.SHUT_WR)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return "FIN"
                return f"DATA {chunk[:16]!r}"
        except (ConnectionResetError, BrokenPipeError):
            return "RST"
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:  # the RST came before our shutdown()
                return "RST"
            raise


async def probe(port: int, data: bytes, *, eof: bool) -> str:
    return await asyncio.to_thread(_probe, port, data, eof=eof)


async def probes(kind: str) -> dict[str, str]:
    port = free_port()
    config = vmess_server_config(port, str(uuid.uuid4()), 0, handshake_s=HANDSHAKE_S)
    async with run_side(kind, config, port), asyncio.timeout(TIMEOUT_S):
        started = time.monotonic()
        silent = await probe(port, os.urandom(40), eof=False)
        waited = time.monotonic() - started
        return {
            "big": await probe(port, os.urandom(BIG_PROBE_BYTES), eof=False),
            "big-then-eof": await probe(port, os.urandom(BIG_PROBE_BYTES), eof=True),
            "short-then-eof": await probe(port, os.urandom(40), eof=True),
            "short-silent": silent,
            "short-silent-waited": "handshake" if waited >= HANDSHAKE_S - 0.5 else f"{waited:.2f}s",
        }


async def test_failed_handshake_closes_like_v2ray() -> None:
    theirs, ours = await asyncio.gather(probes("v2ray"), probes("v2py"))
    assert theirs == {
        "big": "RST",
        "big-then-eof": "RST",
        "short-then-eof": "FIN",
        "short-silent": "FIN",
        "short-silent-waited": "handshake",
    }
    assert ours == theirs
