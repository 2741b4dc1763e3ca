"""Trojan ``settings`` objects (v2ray-core 4.34 ``infra/conf/trojan.go``).

Inbound: ``clients`` [{password, email, level}]. 4.34 checks no password (an empty one
is the key of ""); emails must be unique, case-insensitively (4.34 fails creating the
server: ``User X already exists.``). ``fallback`` is 4.34's own error whatever its
value; ``fallbacks`` as ``config/fallback.py`` reads them. Outbound:
``servers`` [{address, port, password, email, level}] with 4.34's errors for no
server, no address, port 0 and an empty password. 4.34 reads no ``flow`` here: like
any key it does not know, it only warns.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, model_validator

from v2py.config.base import Byte, ConfigModel, Str, Uint16, describe, fail, ip_address
from v2py.config.fallback import FallbackInboundSettings

__all__ = [
    "TrojanClientConfig",
    "TrojanInboundSettings",
    "TrojanOutboundSettings",
    "TrojanServerConfig",
]


def _address(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not an address string")
    text = value.strip()
    if not text:
        raise fail('"" is empty; use an IP address or a domain name')
    return ip_address(text) or text


class TrojanClientConfig(ConfigModel):
    """One entry of Trojan inbound ``clients``."""

    password: Str = ""
    level: Byte = 0
    email: Str = ""


class TrojanInboundSettings(FallbackInboundSettings):
    """Trojan inbound ``settings`` (4.34 ``infra/conf/trojan.go``)."""

    protocol_name = "Trojan"
    clients: tuple[TrojanClientConfig, ...] = ()


class TrojanServerConfig(ConfigModel):
    """One ``servers`` entry of a Trojan outbound (4.34 ``TrojanServerTarget``)."""

    address: Annotated[str, BeforeValidator(_address)] | None = None
    port: Uint16 = 0
    password: Str = ""
    email: Str = ""
    level: Byte = 0

    @model_validator(mode="after")
    def _complete(self) -> TrojanServerConfig:
        # 4.34's own words (infra/conf/trojan.go), in its order.
        if self.address is None:
            raise fail("Trojan server address is not set.", "address")
        if self.port == 0:
            raise fail("Invalid Trojan port.", "port")
        if not self.password:
            raise fail("Trojan password is not specified.", "password")
        return self


class TrojanOutboundSettings(ConfigModel):
    """Trojan outbound ``settings``."""

    servers: tuple[TrojanServerConfig, ...] = ()

    @model_validator(mode="after")
    def _has_servers(self) -> TrojanOutboundSettings:
        if not self.servers:
            raise fail("0 Trojan server configured.", "servers")
        return self
