"""Config: V2Ray 4.34 JSON -> typed, validated, frozen model (pure; no I/O).

Entry point: :func:`load_config`. The CLI reads the files and passes their
texts and the environment in.
"""

from __future__ import annotations

from v2py.config.load import DEFAULT_CONFIG_JSON, LoadedConfig, load_config
from v2py.config.model import (
    AllocateConfig,
    Config,
    EnvSwitches,
    InboundConfig,
    KcpConfig,
    KcpHeaderConfig,
    LevelPolicy,
    LogConfig,
    MuxConfig,
    OutboundConfig,
    PolicyConfig,
    PortRange,
    SniffingConfig,
    StreamConfig,
    SystemPolicy,
    TcpConfig,
)
from v2py.config.settings import (
    AccountConfig,
    BlackholeSettings,
    DnsOutboundSettings,
    DokodemoSettings,
    FreedomSettings,
    HttpInboundSettings,
    InboundSettings,
    OutboundSettings,
    SocksInboundSettings,
    SocksOutboundSettings,
    VlessOutboundSettings,
    VmessClientConfig,
    VmessInboundSettings,
    VmessOutboundSettings,
    VmessServerConfig,
    VmessUserConfig,
)

__all__ = [
    "DEFAULT_CONFIG_JSON",
    "AccountConfig",
    "AllocateConfig",
    "BlackholeSettings",
    "DnsOutboundSettings",
    "VlessOutboundSettings",
    "Config",
    "DokodemoSettings",
    "EnvSwitches",
    "FreedomSettings",
    "HttpInboundSettings",
    "InboundConfig",
    "InboundSettings",
    "KcpConfig",
    "KcpHeaderConfig",
    "LevelPolicy",
    "LoadedConfig",
    "LogConfig",
    "MuxConfig",
    "OutboundConfig",
    "OutboundSettings",
    "PolicyConfig",
    "PortRange",
    "SniffingConfig",
    "SocksInboundSettings",
    "SocksOutboundSettings",
    "StreamConfig",
    "SystemPolicy",
    "TcpConfig",
    "VmessClientConfig",
    "VmessInboundSettings",
    "VmessOutboundSettings",
    "VmessServerConfig",
    "VmessUserConfig",
    "load_config",
]
