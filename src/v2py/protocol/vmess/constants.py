"""VMess wire constants (docs/spec/vmess.md sections 3, 8.1, 8.2).

Matches v2ray-core ``common/protocol/headers.go`` and
``proxy/vmess/outbound/outbound.go`` (option selection) at v4.34.0.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "SecurityType",
    "RequestCommand",
    "RequestOption",
    "AddressType",
    "resolve_auto_security",
    "client_options",
    "AES_MACHINES",
]


class SecurityType(IntEnum):
    """Body security, low nibble of request byte 35 (spec 8.1)."""

    UNKNOWN = 0
    LEGACY = 1
    AUTO = 2
    AES_128_GCM = 3
    CHACHA20_POLY1305 = 4
    NONE = 5


class RequestCommand(IntEnum):
    """Request command byte (spec 3)."""

    TCP = 1
    UDP = 2
    MUX = 3


class RequestOption(IntFlag):
    """Request option bits, byte 34 (spec 8.2)."""

    CHUNK_STREAM = 0x01
    CONNECTION_REUSE = 0x02
    CHUNK_MASKING = 0x04
    GLOBAL_PADDING = 0x08


class AddressType(IntEnum):
    """Address type byte of the request header (spec 3)."""

    IPV4 = 1
    DOMAIN = 2
    IPV6 = 3


#: Machine names (``platform.machine()`` / GOARCH) for which AUTO means AES-128-GCM.
AES_MACHINES = frozenset({"x86_64", "amd64", "aarch64", "arm64", "s390x"})


def resolve_auto_security(machine: str) -> SecurityType:
    """Resolve ``security: "auto"`` the way a 4.34 client does (spec 8.1).

    ``machine`` is e.g. ``platform.machine()``; the caller reads it (pure core).
    """
    if machine.lower() in AES_MACHINES:
        return SecurityType.AES_128_GCM
    return SecurityType.CHACHA20_POLY1305


def client_options(security: SecurityType, padding_env: bool) -> int:
    """Option byte a 4.34 client sends for ``security`` (spec 8.2).

    GCM/ChaCha → 0x0D; NONE → 0x05 (0x0D when the padding env var is set);
    LEGACY → 0x01.  Raises ValueError for AUTO/UNKNOWN (resolve first).
    """
    cs = RequestOption.CHUNK_STREAM
    mask = RequestOption.CHUNK_MASKING
    pad = RequestOption.GLOBAL_PADDING
    if security in (SecurityType.AES_128_GCM, SecurityType.CHACHA20_POLY1305):
        return int(cs | mask | pad)
    if security == SecurityType.NONE:
        return int(cs | mask | pad) if padding_env else int(cs | mask)
    if security == SecurityType.LEGACY:
        return int(cs)
    raise ValueError(f"security {security!r} must be resolved before use")
