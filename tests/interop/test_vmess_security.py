"""``disableInsecureEncryption`` on a v2py server, with a real V2Ray 4.34 client
(interop) and with hand-built headers for the nibbles a 4.34 client never sends.

vmess.md 7/10: with the switch on, a request whose body security is NONE (or
LEGACY/UNKNOWN) is closed right after the header, without a response byte; AEAD
securities are served. A capturing relay between the two sees every byte the v2py
server sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2ray import free_ports, run_v2ray
from tests.support.vmess_probe import (
    STEP_TIMEOUT_S,
    CapturingRelay,
    probe,
    user,
    v2py_vmess_server,
    wait_close,
)
from v2py.protocol.vmess import RequestCommand, RequestHeader, SecurityType
from v2py.protocol.vmess.header import (
    encode_request_plaintext,
    seal_aead_request,
    seal_legacy_request,
)

UUID = "a3482e88-686a-4a58-8126-99c9df64b7bf"
PAYLOAD = b"insecure-or-not" * 100
#: The refusal is a plain close (no drain, no handshake wait).
PROMPT_CLOSE_S = 0.5


@pytest.mark.interop
@pytest.mark.parametrize("alter_id", [0, 4], ids=["aead", "legacy"])
@pytest.mark.parametrize(
    ("security", "disable", "served"),
    [
        pytest.param("none", True, False, id="none-refused"),
        pytest.param("aes-128-gcm", True, True, id="aes-128-gcm-served"),
        pytest.param("chacha20-poly1305", True, True, id="chacha20-poly1305-served"),
        pytest.param("none", False, True, id="none-served-when-allowed"),
    ],
)
async def test_disable_insecure_encryption(
    echo_server: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    alter_id: int,
    security: str,
    disable: bool,
    served: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="v2py.proxy.vmess_inbound")
    (socks_port,) = free_ports(1)
    async with (
        v2py_vmess_server([user(UUID, alter_id)], disable_insecure=disable) as server,
        CapturingRelay(server.port) as tap,
        run_v2ray(
            vmess_client_config(socks_port, tap.port, UUID, alter_id, security),
            wait_tcp=[socks_port],
        ),
    ):
        async with asyncio.timeout(STEP_TIMEOUT_S):
            reader, writer = await socks5_connect(socks_port, *echo_server)
        try:
            writer.write(PAYLOAD)
            await writer.drain()
            start = time.monotonic()
            if served:
                async with asyncio.timeout(STEP_TIMEOUT_S):
                    assert await reader.readexactly(len(PAYLOAD)) == PAYLOAD
            else:
                received, closed, _, _ = await wait_close(reader, timeout=STEP_TIMEOUT_S)
                assert received == b"" and closed
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await tap.new_connection.wait()
                if not served:
                    await tap.connections[0].done.wait()
            elapsed = time.monotonic() - start
        finally:
            writer.close()
    (conn,) = tap.connections
    assert conn.upstream, "the v2ray client did send a request"
    if served:
        assert conn.downstream, "the v2py server answered"
        assert "invalid request" not in caplog.text
    else:
        assert bytes(conn.downstream) == b"", "the v2py server must not send a single byte"
        assert elapsed < PROMPT_CLOSE_S, elapsed
        assert "insecure encryption disabled" in caplog.text


@pytest.mark.parametrize("aead", [True, False], ids=["aead", "legacy"])
@pytest.mark.parametrize(
    "security",
    [SecurityType.UNKNOWN, SecurityType.LEGACY, SecurityType.NONE],
    ids=["unknown-0", "legacy-cfb", "none"],
)
async def test_disable_insecure_refuses_every_insecure_nibble(
    echo_server: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    aead: bool,
    security: SecurityType,
) -> None:
    """The securities a 4.34 client cannot select (0, aes-128-cfb) are refused as well."""
    caplog.set_level(logging.INFO, logger="v2py.proxy.vmess_inbound")
    account = user(UUID, 4)
    request = RequestHeader(
        body_iv=os.urandom(16),
        body_key=os.urandom(16),
        response_auth=7,
        option=0x01,
        security=security,
        command=RequestCommand.TCP,
        address=echo_server[0],
        port=echo_server[1],
    )
    plaintext = encode_request_plaintext(request, b"")
    now = int(time.time())
    if aead:
        header = seal_aead_request(account.cmd_key, plaintext, now, os.urandom)
    else:
        header = seal_legacy_request(account.cmd_key, account.alter_id_list[0], plaintext, now)
    async with v2py_vmess_server([account], disable_insecure=True) as server:
        result = await probe(server.port, [header], wait=STEP_TIMEOUT_S)
    assert result.received == b""
    assert result.closed and result.close_delay < PROMPT_CLOSE_S
    assert "insecure encryption disabled" in caplog.text
