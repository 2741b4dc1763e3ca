"""VMess identities: UUID parsing, cmdKey, alter IDs, users (docs/spec/vmess.md section 1).

Matches v2ray-core ``common/uuid/uuid.go``, ``common/protocol/id.go`` and
``proxy/vmess/account.go`` at v4.34.0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["parse_uuid", "format_uuid", "cmd_key", "alter_ids", "next_alter_id", "VmessUser"]

_CMD_KEY_SALT = b"c48619fe-8f02-49e0-b9e9-edf763e17e21"
_ALTER_SALT = b"16167dc8-16b6-4e6d-b8bb-65dd68113a81"
_ALTER_RETRY_SALT = b"533eff8a-4113-4b10-b5ce-0f5d76b98cd2"
_UUID_GROUPS = (8, 4, 4, 4, 12)
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_uuid(text: str) -> bytes:
    """Parse a UUID string the way 4.34 ``uuid.ParseString`` does (spec 1.1).

    Groups of 8-4-4-4-12 hex digits, each optionally followed by a single
    ``-``; at least 32 characters.  Returns the 16 raw bytes; raises
    ValueError otherwise.
    """
    if not isinstance(text, str) or len(text) < 32:
        raise ValueError(f"not a UUID: {text!r}")
    digits: list[str] = []
    pos = 0
    for i, n in enumerate(_UUID_GROUPS):
        group = text[pos : pos + n]
        if len(group) != n or not set(group) <= _HEX:
            raise ValueError(f"not a UUID: {text!r}")
        digits.append(group)
        pos += n
        if i < len(_UUID_GROUPS) - 1 and text[pos : pos + 1] == "-":
            pos += 1
    if pos != len(text):
        raise ValueError(f"not a UUID: {text!r}")
    return bytes.fromhex("".join(digits))


def format_uuid(b: bytes) -> str:
    """Format 16 raw bytes as the canonical lower-case dashed UUID string."""
    if len(b) != 16:
        raise ValueError("a UUID is 16 bytes")
    h = bytes(b).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def cmd_key(uuid16: bytes) -> bytes:
    """``MD5(uuid || "c48619fe-...")``, the header key of spec 1.2."""
    return hashlib.md5(bytes(uuid16) + _CMD_KEY_SALT).digest()


def next_alter_id(prev: bytes) -> bytes:
    """The alter ID following ``prev`` in the chain of spec 1.3."""
    h = hashlib.md5(bytes(prev) + _ALTER_SALT)
    while True:
        cand = h.digest()
        if cand != prev:
            return cand
        h.update(_ALTER_RETRY_SALT)  # astronomically unlikely; kept for exactness


def alter_ids(primary16: bytes, n: int) -> list[bytes]:
    """The ``n`` alter IDs chained from ``primary16`` (spec 1.3)."""
    out: list[bytes] = []
    prev = bytes(primary16)
    for _ in range(n):
        prev = next_alter_id(prev)
        out.append(prev)
    return out


@dataclass(frozen=True, slots=True)
class VmessUser:
    """A VMess account (spec 1, 10).

    ``id`` is the 16-byte primary UUID.  ``cmd_key`` is computed at
    construction (one MD5); the alter ID list is computed lazily on first use
    and cached, so large user tables load fast.
    """

    id: bytes
    alter_id: int = 0
    level: int = 0
    email: str = ""
    cmd_key: bytes = field(init=False, repr=False, compare=False)
    _alter_cache: list[list[bytes]] = field(
        init=False, repr=False, compare=False, default_factory=list
    )

    def __post_init__(self) -> None:
        if len(self.id) != 16:
            raise ValueError("VmessUser.id must be 16 raw bytes")
        if not 0 <= self.alter_id <= 0xFFFF:
            raise ValueError("alter_id must be in 0..65535")
        object.__setattr__(self, "id", bytes(self.id))
        object.__setattr__(self, "cmd_key", cmd_key(self.id))

    @property
    def alter_id_list(self) -> list[bytes]:
        """The alter IDs (not including the primary), computed once."""
        if not self._alter_cache:
            self._alter_cache.append(alter_ids(self.id, self.alter_id))
        return self._alter_cache[0]

    @property
    def all_ids(self) -> list[bytes]:
        """Primary ID followed by the alter IDs (legacy auth candidates, spec 4.2)."""
        return [self.id, *self.alter_id_list]
