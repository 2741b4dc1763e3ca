"""Which request header the v2py client sends: alterId, ``testsEnabled`` and the env switches.

4.34 decides by alterId (AEAD iff 0) and honours ``V2RAY_VMESS_AEAD_DISABLED=true``;
the user's guide also documents ``testsEnabled: "VMessAEAD"`` and
``VMESSAEADEXPERIMENT=y|n`` (4.24–4.27), which v2py honours as forcing AEAD on/off.
The first 16 bytes on the wire tell the formats apart: an AEAD AuthID decrypts
under the user's AuthID key to a block with a valid CRC; a legacy auth does not.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port
from v2py.protocol.vmess.account import cmd_key, parse_uuid
from v2py.protocol.vmess.header import auth_id_key, decode_auth_id

UUID = "27848739-7e62-4138-9fd3-098a63964b6b"


def is_aead_auth_id(first16: bytes) -> bool:
    key = auth_id_key(cmd_key(parse_uuid(UUID)))
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return decode_auth_id(dec.update(first16) + dec.finalize()) is not None


async def first_bytes_sent(user: dict[str, object], env: dict[str, str]) -> bytes:
    """Start a v2py client whose vmess server is a recorder; return what it received."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(16)
        if not got.done():
            got.set_result(data)
        writer.close()

    recorder = await asyncio.start_server(record, "127.0.0.1", 0)
    socks_port = free_port()
    config = {
        "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks"}],
        "outbounds": [
            {
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "127.0.0.1",
                            "port": recorder.sockets[0].getsockname()[1],
                            "users": [{"id": UUID, "security": "aes-128-gcm", **user}],
                        }
                    ]
                },
            }
        ],
    }
    try:
        async with run_v2py(config, env=env), asyncio.timeout(10):
            reader, writer = await socks5_connect(socks_port, "127.0.0.1", 9)
            writer.write(b"x")
            with contextlib.suppress(OSError):
                await writer.drain()
            result = await got
            writer.close()
            return result
    finally:
        recorder.close()


@pytest.mark.parametrize(
    ("user", "env", "aead"),
    [
        ({"alterId": 0}, {}, True),
        ({"alterId": 4}, {}, False),
        ({"alterId": 4, "testsEnabled": "VMessAEAD"}, {}, True),
        ({"alterId": 4}, {"VMESSAEADEXPERIMENT": "y"}, True),
        ({"alterId": 0}, {"VMESSAEADEXPERIMENT": "n"}, False),
        ({"alterId": 0}, {"V2RAY_VMESS_AEAD_DISABLED": "true"}, False),
        ({"alterId": 0}, {"v2ray.vmess.aead.disabled": "true"}, False),
    ],
    ids=["alter0", "alter4", "testsEnabled", "experiment-y", "experiment-n", "disabled", "dotted"],
)
async def test_header_format_choice(
    user: dict[str, object], env: dict[str, str], aead: bool
) -> None:
    assert is_aead_auth_id(await first_bytes_sent(user, env)) is aead


@pytest.mark.parametrize(
    ("user", "env", "banner"),
    [
        ({"alterId": 4, "testsEnabled": "VMessAEAD"}, {}, True),
        ({"alterId": 4}, {"VMESSAEADEXPERIMENT": "y"}, True),
        ({"alterId": 0}, {}, False),
    ],
    ids=["testsEnabled", "experiment-y", "plain"],
)
async def test_experiment_banner(
    user: dict[str, object], env: dict[str, str], banner: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The guide: a client with the AEAD experiment on prints the experiment banner."""
    caplog.set_level("WARNING", logger="v2py.proxy.vmess_outbound")
    await first_bytes_sent(user, env)
    assert ("VMESSAEADEXPERIMENT ENABLED" in caplog.text) is banner
