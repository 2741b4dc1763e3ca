"""``reverse``: bridges and portals of the reverse proxy (v2ray-core 4.34
``infra/conf/reverse.go``, ``app/reverse/{bridge,portal}.go``; ``docs/reverse.md``).

4.34 refuses an empty ``tag`` or ``domain`` when the app is created, so ``v2ray -test``
already fails on them; v2py does the same, naming the key. Nothing else is checked by
4.34: bridge tags may repeat and name no inbound (a bridge tag is only the inbound tag
of the bridge's own connections, for routing), and a portal tag may equal an outbound
tag (the portal replaces that outbound under the tag at start, as 4.34's outbound
manager replaces a handler added under a taken tag).
"""

from __future__ import annotations

from pydantic import model_validator

from v2py.config.base import ConfigModel, Str, fail

__all__ = ["BridgeConfig", "PortalConfig", "ReverseConfig"]


class BridgeConfig(ConfigModel):
    """One ``reverse.bridges[]`` entry: connections to ``domain`` carry the portal's
    sessions; ``tag`` is their inbound tag (and the sessions') in routing."""

    tag: Str = ""
    domain: Str = ""

    @model_validator(mode="after")
    def _given(self) -> BridgeConfig:
        if not self.tag:
            raise fail("bridge tag is empty", "tag")
        if not self.domain:
            raise fail("bridge domain is empty", "domain")
        return self


class PortalConfig(ConfigModel):
    """One ``reverse.portals[]`` entry: an outbound tagged ``tag``; connections routed
    to it whose destination is the domain ``domain`` are bridges' connections."""

    tag: Str = ""
    domain: Str = ""

    @model_validator(mode="after")
    def _given(self) -> PortalConfig:
        if not self.tag:
            raise fail("portal tag is empty", "tag")
        if not self.domain:
            raise fail("portal domain is empty", "domain")
        return self


class ReverseConfig(ConfigModel):
    """``reverse``: its bridges and portals (either list may be absent)."""

    bridges: tuple[BridgeConfig, ...] = ()
    portals: tuple[PortalConfig, ...] = ()
