"""``v2py tlsping`` against 4.34's ``v2ctl tlsping``: the same lines on standard output
and the same exit status for a server on port 443 of a loopback address (trusted
certificate, wrong name, TLS 1.3 only), for no server there, and for the quirk of the
usage line's own form (a ``-ip`` after the domain is not read). Handshake failure texts
are each TLS stack's own, so only their first words are compared."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.shell.test_commander_cli import require_v2ctl
from tests.support.tls_certs import TestCA
from tests.support.v2ray import require_v2ray

pytestmark = pytest.mark.interop

TIMEOUT_S = 20.0


def loopback_address() -> str:
    """A loopback address of its own for this test's port 443."""
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


@contextlib.asynccontextmanager
async def tls_server(
    tmp_path: Path, ca: TestCA, names: tuple[str, ...], *, tls13_only: bool = False
) -> AsyncIterator[str]:
    cert_file, key_file = ca.issue(*names).write(tmp_path, "leaf")
    chain = tmp_path / "chain.pem"
    chain.write_text(Path(cert_file).read_text() + ca.pair.cert_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(chain), key_file)
    if tls13_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_3

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    for _ in range(20):
        address = loopback_address()
        try:
            server = await asyncio.start_server(serve, address, 443, ssl=context)
        except OSError as exc:
            if exc.errno == errno.EACCES:
                pytest.skip("port 443 needs root")
            continue
        break
    else:
        raise AssertionError("no loopback address with port 443 free")
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # refused handshakes
    async with server:
        yield address


async def tlsping(kind: str, ca_file: str, *args: str) -> tuple[int, list[str]]:
    argv = [require_v2ctl()] if kind == "v2ray" else [sys.executable, "-m", "v2py"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        "tlsping",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"SSL_CERT_FILE": ca_file, "PATH": "/usr/bin:/bin"},
    )
    async with asyncio.timeout(TIMEOUT_S):
        out, _ = await proc.communicate()
    lines = []
    for line in out.decode().splitlines():
        if line.lower().startswith("handshake failure: "):
            line = line[: len("handshake failure: ")]
        lines.append(line)
    assert proc.returncode is not None
    return proc.returncode, lines


async def both(ca_file: str, *args: str) -> tuple[int, list[str]]:
    require_v2ray()
    v2ray = await tlsping("v2ray", ca_file, *args)
    v2py = await tlsping("v2py", ca_file, *args)
    assert v2py == v2ray
    return v2ray


@pytest.fixture
def ca(tmp_path: Path) -> tuple[TestCA, str]:
    made = TestCA()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(made.pair.cert_pem)
    return made, str(ca_file)


async def test_trusted_and_wrong_name_as_v2ctl(tmp_path: Path, ca: tuple[TestCA, str]) -> None:
    authority, ca_file = ca
    async with tls_server(tmp_path, authority, ("ping.test", "www.ping.test")) as address:
        status, lines = await both(ca_file, "-ip", address, "ping.test")
        assert status == 0
        assert lines.count("Allowed domains:  [ping.test www.ping.test]") == 2
        assert "handshake succeeded" in lines
        status, lines = await both(ca_file, "--ip", address, "other.test")
        assert status == 0
        assert "Handshake succeeded" in lines and "handshake failure: " in lines


async def test_tls13_only_server_fails_both_as_v2ctl(
    tmp_path: Path, ca: tuple[TestCA, str]
) -> None:
    authority, ca_file = ca
    async with tls_server(tmp_path, authority, ("ping.test",), tls13_only=True) as address:
        status, lines = await both(ca_file, "-ip", address, "ping.test")
        assert status == 0
        assert "Handshake failure: " in lines and "handshake failure: " in lines


async def test_errors_as_v2ctl(tmp_path: Path, ca: tuple[TestCA, str]) -> None:
    _, ca_file = ca
    closed = loopback_address()
    assert (await both(ca_file, "-ip", closed, "ping.test"))[0] == 255  # nothing listens
    assert (await both(ca_file))[0] == 255  # no domain
    assert (await both(ca_file, "-ip", "not-an-ip", "ping.test"))[0] == 255
    # The usage line's own form: the flag after the domain is not read; localhost is
    # resolved (its port 443 is not this test's).
    status, lines = await both(ca_file, "localhost", "-ip", closed)
    assert lines[:2] == ["Tls ping:  localhost", "Using IP:  127.0.0.1"]
