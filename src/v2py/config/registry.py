"""Protocol name -> settings model: the one registration table (v2ray-core
``infra/conf/v2ray.go`` ``inboundConfigLoader`` / ``outboundConfigLoader``).

Adding a protocol means adding a settings model in ``settings.py`` and one row
here; nothing registers itself on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from v2py.config.base import ConfigModel
from v2py.config.settings import (
    BlackholeSettings,
    DnsOutboundSettings,
    DokodemoSettings,
    FreedomSettings,
    HttpInboundSettings,
    HttpOutboundSettings,
    MtprotoInboundSettings,
    MtprotoOutboundSettings,
    ShadowsocksInboundSettings,
    ShadowsocksOutboundSettings,
    SocksInboundSettings,
    SocksOutboundSettings,
    VlessInboundSettings,
    VlessOutboundSettings,
    VmessInboundSettings,
    VmessOutboundSettings,
)
from v2py.config.trojan import TrojanInboundSettings, TrojanOutboundSettings

__all__ = [
    "INBOUND_SETTINGS",
    "OUTBOUND_SETTINGS",
    "UNSUPPORTED_INBOUNDS",
    "UNSUPPORTED_OUTBOUNDS",
]

INBOUND_SETTINGS: Final[Mapping[str, type[ConfigModel]]] = MappingProxyType(
    {
        "socks": SocksInboundSettings,
        "http": HttpInboundSettings,
        "dokodemo-door": DokodemoSettings,
        "vmess": VmessInboundSettings,
        "vless": VlessInboundSettings,
        "trojan": TrojanInboundSettings,
        "shadowsocks": ShadowsocksInboundSettings,
        "mtproto": MtprotoInboundSettings,
    }
)

OUTBOUND_SETTINGS: Final[Mapping[str, type[ConfigModel]]] = MappingProxyType(
    {
        "freedom": FreedomSettings,
        "blackhole": BlackholeSettings,
        "dns": DnsOutboundSettings,
        "vmess": VmessOutboundSettings,
        "vless": VlessOutboundSettings,
        "trojan": TrojanOutboundSettings,
        "shadowsocks": ShadowsocksOutboundSettings,
        "mtproto": MtprotoOutboundSettings,
        "socks": SocksOutboundSettings,
        "http": HttpOutboundSettings,
    }
)

# Protocols V2Ray 4.34 knows but v2py does not implement: named in messages so
# that a real config fails with "not supported" rather than "unknown".
UNSUPPORTED_INBOUNDS: Final[frozenset[str]] = frozenset()
UNSUPPORTED_OUTBOUNDS: Final[frozenset[str]] = frozenset({"loopback"})
