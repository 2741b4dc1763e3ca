"""VMess response commands: SwitchAccount (docs/spec/vmess.md section 9).

Matches v2ray-core ``proxy/vmess/encoding/commands.go`` at v4.34.0, with the
bounds check that fixes CVE-2021-4070 (short bodies are ignored, not parsed).
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

from v2py.common.fnv import fnv1a32

__all__ = ["SwitchAccount", "encode_command", "decode_command", "CMD_SWITCH_ACCOUNT"]

CMD_SWITCH_ACCOUNT = 1
_FIXED_BODY_LEN = 23  # HostLen(1) + Port(2) + ID(16) + AlterIds(2) + Level(1) + ValidMin(1)


@dataclass(frozen=True, slots=True)
class SwitchAccount:
    """A SwitchAccount command (spec 9.1). ``host`` is "" when absent (4.34 servers)."""

    host: str
    port: int
    id: bytes
    alter_ids: int
    level: int
    valid_min: int


def encode_command(cmd: SwitchAccount) -> tuple[int, bytes]:
    """Encode ``cmd`` as ``(cmd_id, u32(FNV1a(body)) || body)`` (spec 6.2, 9.1)."""
    host = cmd.host.encode("ascii")
    if len(host) > 255 or len(cmd.id) != 16:
        raise ValueError("bad SwitchAccount host or id")
    body = (
        bytes((len(host),))
        + host
        + (cmd.port & 0xFFFF).to_bytes(2, "big")
        + bytes(cmd.id)
        + (cmd.alter_ids & 0xFFFF).to_bytes(2, "big")
        + bytes((cmd.level & 0xFF, min(max(cmd.valid_min, 0), 255)))
    )
    return CMD_SWITCH_ACCOUNT, fnv1a32(body).to_bytes(4, "big") + body


def decode_command(cmd_id: int, data: bytes | bytearray | memoryview) -> SwitchAccount | None:
    """Decode response command data (FNV prefix included); None if unknown or malformed.

    Never raises: a 4.34 client ignores unknown commands and bad checksums.
    """
    data = bytes(data)
    if cmd_id != CMD_SWITCH_ACCOUNT or len(data) < 4:
        return None
    body = data[4:]
    if fnv1a32(body) != int.from_bytes(data[:4], "big"):
        return None
    if len(body) < 1:
        return None
    host_len = body[0]
    if len(body) < _FIXED_BODY_LEN + host_len:
        return None
    try:
        host = body[1 : 1 + host_len].decode("ascii")
    except UnicodeDecodeError:
        return None
    if host:
        with contextlib.suppress(ValueError):
            host = str(ipaddress.ip_address(host))
    p = 1 + host_len
    return SwitchAccount(
        host=host,
        port=int.from_bytes(body[p : p + 2], "big"),
        id=body[p + 2 : p + 18],
        alter_ids=int.from_bytes(body[p + 18 : p + 20], "big"),
        level=body[p + 20],
        valid_min=body[p + 21],
    )
