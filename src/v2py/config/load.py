"""JSON texts -> :class:`Config` (v2ray-core 4.34 ``infra/conf/v2ray.go`` Build/Override,
``main/json/config_json.go``).

Steps, per file: strip comments and decode, validate the file's shape
(:class:`RootConfig`, with ``env`` for ``"env:NAME"`` ports), then validate
each ``settings`` with the model ``registry.py`` names for its protocol. Then
the files are merged as ``v2ray -config a.json -config b.json`` merges them,
legacy keys are folded in, the top-level ``transport`` defaults applied, and
cross-references checked (unique tags, detour targets, port allocation).

Every failure is one :class:`~v2py.errors.ConfigError` whose path is the
JSON path (``inbounds[0].settings.clients[1].id``), prefixed ``"<file>: "``
when more than one file is given. Unknown keys become warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from v2py.config.base import ConfigModel, describe, to_config_error, unknown_key_warnings
from v2py.config.jsonc import parse_json
from v2py.config.model import (
    ApiConfig,
    Config,
    EnvSwitches,
    InboundConfig,
    KcpConfig,
    LogConfig,
    OutboundConfig,
    PolicyConfig,
    PortRange,
    RootConfig,
    StatsConfig,
    StreamConfig,
    TcpConfig,
    TransportConfig,
    is_unix_listen,
)
from v2py.config.registry import INBOUND_SETTINGS, OUTBOUND_SETTINGS
from v2py.config.reverse import ReverseConfig
from v2py.config.routing import DnsConfig, RoutingConfig
from v2py.config.settings import DokodemoSettings, SocksInboundSettings, VmessInboundSettings
from v2py.config.stream import WsConfig
from v2py.config.transport_extra import QUIC_ABSENT_SECURITY, HttpConfig, QuicConfig
from v2py.errors import ConfigError

__all__ = ["DEFAULT_CONFIG_JSON", "LoadedConfig", "load_config", "load_inbound", "load_outbound"]

_Bound = TypeVar("_Bound", InboundConfig, OutboundConfig)

# The built-in configuration: a local SOCKS5 proxy going out directly.
DEFAULT_CONFIG_JSON = """\
{
  "log": {"loglevel": "warning"},
  "inbounds": [
    {
      "tag": "socks-in",
      "protocol": "socks",
      "listen": "127.0.0.1",
      "port": 1080,
      "sniffing": {"enabled": true, "destOverride": ["http", "tls"]},
      "settings": {"auth": "noauth", "udp": true}
    }
  ],
  "outbounds": [
    {"tag": "direct", "protocol": "freedom", "settings": {}}
  ]
}
"""

# 4.34 keeps the allocation strategy "random" from opening all ports at once:
# with concurrency close to the range size its refresh loop livelocks
# (docs/spec/README.md item 18), so v2py requires range >= 3 x concurrency.
RANDOM_RANGE_FACTOR = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedConfig:
    """Result of :func:`load_config`: the model and the warnings to log."""

    config: Config
    warnings: tuple[str, ...]


@dataclass(slots=True)
class _File:
    """One parsed, validated source file."""

    name: str
    prefix: str
    root: RootConfig


def load_config(
    sources: Sequence[tuple[str, str]],
    env: Mapping[str, str],
    read_file: Callable[[str], bytes] | None = None,
) -> LoadedConfig:
    """Parse, validate and merge config texts.

    Args:
        sources: ``(file name, text)`` pairs in command-line order. Later files
            override earlier ones as V2Ray 4.34 does. The name appears in
            locations and decides "tail" outbound merging.
        env: the environment, for ``"env:NAME"`` ports and the ``V2RAY_*``
            switches (:class:`EnvSwitches`).
        read_file: reads the files a config names (TLS certificates), so that a
            missing one is a ConfigError here as in 4.34; None leaves them to the
            transport, which reads them when it is built.

    Returns:
        The frozen :class:`Config` and the warnings (unknown keys etc.).

    Raises:
        ConfigError: the first problem found, as one line.
    """
    if not sources:
        raise ConfigError("", "no configuration given")
    multi = len(sources) > 1
    files: list[_File] = []
    warnings: list[str] = []
    for name, text in sources:
        prefix = f"{name}: " if multi else ""
        try:
            parsed = _read_file(name, text, prefix, env, read_file)
        except (RecursionError, UnicodeError, OverflowError) as exc:
            # Backstop for hostile input no check above foresaw: still one line, exit 23.
            raise ConfigError(name, f"cannot be checked ({type(exc).__name__})") from None
        files.append(parsed)
        warnings.extend(_prefixed(prefix, unknown_key_warnings(parsed.root, "")))
    merged = _merge(files)
    config = _build(merged, files[0].root.port, EnvSwitches.from_env(env))
    return LoadedConfig(config=config, warnings=tuple(warnings))


def load_inbound(
    data: dict[str, Any], where: str, transport: TransportConfig | None = None
) -> InboundConfig:
    """One inbound object (as in ``inbounds[]``), checked as a config file's are;
    for handlers added at run time (the API's AddInbound). ``transport`` is the
    running config's top-level one: its settings fill what the handler lacks, as 4.34's
    global transport settings do. Raises ConfigError."""
    try:
        raw = InboundConfig.model_validate(data, context={"env": {}})
    except ValidationError as exc:
        raise to_config_error(exc, where) from None
    inbound = _typed_inbound(raw, "", where, {})
    result: InboundConfig = _copy(
        inbound, {"stream": _effective_stream(inbound.stream, transport, inbound.path)}
    )
    _check_port(result)
    return result


def load_outbound(
    data: dict[str, Any], where: str, transport: TransportConfig | None = None
) -> OutboundConfig:
    """One outbound object, checked as a config file's are (the API's AddOutbound);
    ``transport`` as for :func:`load_inbound`. Raises ConfigError."""
    try:
        raw = OutboundConfig.model_validate(data, context={"env": {}})
    except ValidationError as exc:
        raise to_config_error(exc, where) from None
    outbound = _typed_outbound(raw, "", where, {})
    result: OutboundConfig = _copy(
        outbound, {"stream": _effective_stream(outbound.stream, transport, outbound.path)}
    )
    return result


def _prefixed(prefix: str, lines: list[str]) -> list[str]:
    return [prefix + line for line in lines]


def _read_file(
    name: str,
    text: str,
    prefix: str,
    env: Mapping[str, str],
    read_file: Callable[[str], bytes] | None = None,
) -> _File:
    data = parse_json(text, name)
    if not isinstance(data, dict):
        raise ConfigError(name, f"the top level is {describe(data)}, not a JSON object")
    try:
        root = RootConfig.model_validate(data, context={"env": env, "read_file": read_file})
    except ValidationError as exc:
        raise _with_prefix(to_config_error(exc, ""), prefix) from None
    updates: dict[str, Any] = {}
    if root.inbound is not None:
        updates["inbound"] = _typed_inbound(root.inbound, prefix, "inbound", env)
    if root.outbound is not None:
        updates["outbound"] = _typed_outbound(root.outbound, prefix, "outbound", env)
    for key, alias in (("inbound_detour", "inboundDetour"), ("inbounds", "inbounds")):
        items = getattr(root, key)
        if items is not None:
            updates[key] = tuple(
                _typed_inbound(item, prefix, f"{alias}[{i}]", env) for i, item in enumerate(items)
            )
    for key, alias in (("outbound_detour", "outboundDetour"), ("outbounds", "outbounds")):
        items = getattr(root, key)
        if items is not None:
            updates[key] = tuple(
                _typed_outbound(item, prefix, f"{alias}[{i}]", env) for i, item in enumerate(items)
            )
    if root.routing is not None:
        updates["routing"] = root.routing.with_paths(f"{prefix}routing")
    if root.dns is not None:
        updates["dns"] = root.dns.with_paths(f"{prefix}dns")
    return _File(name=name, prefix=prefix, root=_copy(root, updates))


def _copy(model: ConfigModel, updates: dict[str, Any]) -> Any:
    """``model_copy`` that keeps the unknown-key notes (they are private state)."""
    copied = model.model_copy(update=updates)
    copied._ignored_keys = model._ignored_keys
    return copied


def _with_prefix(error: ConfigError, prefix: str) -> ConfigError:
    return ConfigError(prefix + error.path, error.message) if prefix else error


def _parse_settings(
    registry: Mapping[str, type[ConfigModel]],
    protocol: str,
    raw: object,
    path: str,
    env: Mapping[str, str],
) -> ConfigModel:
    model = registry[protocol]
    try:
        return model.model_validate({} if raw is None else raw, context={"env": env})
    except ValidationError as exc:
        raise to_config_error(exc, f"{path}.settings") from None


def _typed_inbound(
    inbound: InboundConfig, prefix: str, where: str, env: Mapping[str, str]
) -> InboundConfig:
    path = prefix + where
    settings = _parse_settings(INBOUND_SETTINGS, inbound.protocol, inbound.settings, path, env)
    result: InboundConfig = _copy(inbound, {"settings": settings, "path": path})
    return result


def _typed_outbound(
    outbound: OutboundConfig, prefix: str, where: str, env: Mapping[str, str]
) -> OutboundConfig:
    path = prefix + where
    settings = _parse_settings(OUTBOUND_SETTINGS, outbound.protocol, outbound.settings, path, env)
    result: OutboundConfig = _copy(outbound, {"settings": settings, "path": path})
    return result


# --------------------------------------------------------------------------
# merging files (4.34 Config.Override; the first file is taken whole)


@dataclass(slots=True)
class _Merged:
    log: LogConfig | None
    policy: PolicyConfig | None
    transport: TransportConfig | None
    inbound: InboundConfig | None
    inbound_detour: tuple[InboundConfig, ...] | None
    inbounds: tuple[InboundConfig, ...]
    outbound: OutboundConfig | None
    outbound_detour: tuple[OutboundConfig, ...] | None
    outbounds: tuple[OutboundConfig, ...]
    api: ApiConfig | None = None
    stats: StatsConfig | None = None
    routing: RoutingConfig | None = None
    dns: DnsConfig | None = None
    reverse: ReverseConfig | None = None


def _merge(files: list[_File]) -> _Merged:
    first = files[0].root
    merged = _Merged(
        log=first.log,
        policy=first.policy,
        transport=first.transport,
        inbound=first.inbound,
        inbound_detour=first.inbound_detour,
        inbounds=first.inbounds or (),
        outbound=first.outbound,
        outbound_detour=first.outbound_detour,
        outbounds=first.outbounds or (),
        api=first.api,
        stats=first.stats,
        routing=first.routing,
        dns=first.dns,
        reverse=first.reverse,
    )
    for file in files[1:]:
        root = file.root
        for key in (
            "log",
            "policy",
            "transport",
            "inbound",
            "inbound_detour",
            "outbound",
            "outbound_detour",
            "api",
            "stats",
            "routing",
            "dns",
            "reverse",
        ):
            value = getattr(root, key)
            if value is not None:
                setattr(merged, key, value)
        if root.inbounds:
            merged.inbounds = _override_list(merged.inbounds, root.inbounds, prepend=False)
        if root.outbounds:
            # A lone new outbound goes first (it becomes the default) unless the
            # file name contains "tail", as in 4.34.
            prepend = "tail" not in file.name.lower()
            merged.outbounds = _override_list(merged.outbounds, root.outbounds, prepend=prepend)
    return merged


def _override_list(
    current: tuple[_Bound, ...], new: tuple[_Bound, ...], *, prepend: bool
) -> tuple[_Bound, ...]:
    if not current or len(new) != 1:
        return new
    (item,) = new
    result = list(current)
    for index, existing in enumerate(result):
        if existing.tag == item.tag:
            result[index] = item
            return tuple(result)
    result.insert(0 if prepend else len(result), item)
    return tuple(result)


# --------------------------------------------------------------------------
# building the final model


def _build(merged: _Merged, legacy_port: int | None, switches: EnvSwitches) -> Config:
    inbounds = [
        *((merged.inbound,) if merged.inbound is not None else ()),
        *(merged.inbound_detour or ()),
        *merged.inbounds,
    ]
    outbounds = [
        *((merged.outbound,) if merged.outbound is not None else ()),
        *(merged.outbound_detour or ()),
        *merged.outbounds,
    ]
    # Legacy top-level "port" fills in the first inbound's missing port.
    if inbounds and inbounds[0].port is None and legacy_port:
        inbounds[0] = _copy(inbounds[0], {"port": PortRange(legacy_port, legacy_port)})
    inbounds = [
        _copy(i, {"stream": _effective_stream(i.stream, merged.transport, i.path)})
        for i in inbounds
    ]
    outbounds = [
        _copy(o, {"stream": _effective_stream(o.stream, merged.transport, o.path)})
        for o in outbounds
    ]
    inbounds = [_unix_listen(i) for i in inbounds]
    for inbound in inbounds:
        _check_port(inbound)
    _check_unique_tags(inbounds)
    _check_unique_tags(outbounds)
    portals = merged.reverse.portals if merged.reverse else ()
    _check_proxy_chains(outbounds, frozenset(p.tag for p in portals))
    _check_detours(inbounds)
    parts: dict[str, Any] = {
        # No "log" object: 4.34's DefaultLogConfig keeps the access log off.
        "log": merged.log or LogConfig(access="none"),
        "policy": merged.policy or PolicyConfig.trusted(),
        "inbounds": tuple(inbounds),
        "outbounds": tuple(outbounds),
        "api": merged.api,
        "stats": merged.stats,
        "routing": merged.routing or RoutingConfig.trusted(),
        "dns": merged.dns,
        "reverse": merged.reverse,
        "transport": merged.transport,
        "switches": switches,
    }
    # Every part is validated already and Config has no validator of its own:
    # model_construct skips building Config's validator (about 8 ms of every start).
    # None is left out, as validation leaves it (same fields set, same defaults).
    return Config.model_construct(**{k: v for k, v in parts.items() if v is not None})


def _effective_stream(
    stream: StreamConfig, transport: TransportConfig | None, path: str
) -> StreamConfig:
    tcp = stream.tcp or (transport.tcp if transport else None)
    kcp = stream.kcp or (transport.kcp if transport else None)
    ws = stream.ws or (transport.ws if transport else None)
    http = stream.http or (transport.http if transport else None)
    ds = stream.ds or (transport.ds if transport else None)
    quic = stream.quic or (transport.quic if transport else None)
    if stream.network == "ds" and ds is None:
        # 4.34 fails every listen/dial of a domain socket without a path.
        raise ConfigError(f"{path}.streamSettings.dsSettings.path", "empty domain socket path")
    updates: dict[str, Any] = {
        "tcp": (tcp or TcpConfig.trusted()) if stream.network == "tcp" else None,
        "kcp": (kcp or KcpConfig.trusted()) if stream.network == "kcp" else None,
        "ws": (ws or WsConfig()) if stream.network == "ws" else None,
        "http": (http or HttpConfig()) if stream.network == "h2" else None,
        "ds": ds if stream.network == "ds" else None,
        "quic": (quic or QuicConfig(security=QUIC_ABSENT_SECURITY))
        if stream.network == "quic"
        else None,
    }
    result: StreamConfig = _copy(stream, updates)
    return result


def _check_proxy_chains(
    outbounds: Sequence[OutboundConfig], portal_tags: frozenset[str] = frozenset()
) -> None:
    """``proxySettings.tag`` must name an outbound (or a reverse portal, which ends the
    chain: 4.34 carries the connection as a mux session on a bridge connection) and the
    chain must end.

    4.34 checks neither: an unknown tag sends the connections out directly (with a
    warning per connection) and a loop dispatches forever; both are refused here.
    """
    by_tag = {o.tag: o for o in outbounds if o.tag and o.tag not in portal_tags}
    for outbound in outbounds:
        proxy = outbound.proxy_settings
        if proxy is None:
            continue
        path = f"{outbound.path}.proxySettings.tag"
        if proxy.tag in portal_tags:
            continue
        hop = by_tag.get(proxy.tag)
        if hop is None:
            raise ConfigError(path, f"{describe(proxy.tag)} is not the tag of any outbound")
        chain = [outbound.tag or outbound.path, hop.tag]
        for _ in outbounds:
            if hop is outbound:
                raise ConfigError(path, "the proxy chain loops: " + " -> ".join(chain))
            if hop.proxy_settings is None or hop.proxy_settings.tag not in by_tag:
                break  # the chain ends (or is reported at that outbound)
            hop = by_tag[hop.proxy_settings.tag]
            chain.append(hop.tag)


#: Networks whose listener 4.34 opens on a Unix socket when ``listen`` is a path (the
#: tcp, websocket and http hubs' ``port == 0`` branch).
_UNIX_LISTEN_NETWORKS = ("tcp", "ws", "h2")


def _unix_listen(inbound: InboundConfig) -> InboundConfig:
    """An inbound listening on a Unix socket path: 4.34 drops its port (a stream-only
    worker, ``dsWorker``); what would need more than a stream there is refused."""
    if not is_unix_listen(inbound.listen):
        return inbound
    where = f"{inbound.path}.listen"
    network = inbound.stream.network
    if network not in _UNIX_LISTEN_NETWORKS:
        raise ConfigError(
            where, f"a Unix socket path works with network tcp, ws or h2, not {network!r}"
        )
    if inbound.allocate is not None and inbound.allocate.strategy == "random":
        raise ConfigError(where, 'a Unix socket path cannot take allocate strategy "random"')
    settings = inbound.settings
    if (isinstance(settings, SocksInboundSettings) and settings.udp) or (
        isinstance(settings, DokodemoSettings)
        and ("udp" in settings.network or settings.follow_redirect)
    ):
        raise ConfigError(
            where,
            "on a Unix socket path 4.34 serves TCP streams only (no UDP, no redirects); "
            "listen on an IP for those",
        )
    unix: InboundConfig = _copy(inbound, {"port": PortRange(0, 0)})
    return unix


def _check_port(inbound: InboundConfig) -> None:
    port: PortRange | None = inbound.port
    if port is None:
        raise ConfigError(
            f"{inbound.path}.port",
            'missing; every inbound needs a port: a number, "A-B" or "env:NAME"',
        )
    allocate = inbound.allocate
    if allocate is None or allocate.strategy != "random":
        return
    if not port.is_range:
        raise ConfigError(
            f"{inbound.path}.port",
            f'{port} is a single port; allocate strategy "random" needs a range "A-B"',
        )
    most = port.size // RANDOM_RANGE_FACTOR
    if allocate.concurrency > most:
        raise ConfigError(
            f"{inbound.path}.allocate.concurrency",
            f"{allocate.concurrency} is too high for the {port.size} ports of {port}: "
            f"concurrency may be at most 1/3 of the port range (here {most})",
        )


def _check_unique_tags(items: Sequence[InboundConfig | OutboundConfig]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        if not item.tag:
            continue
        if item.tag in seen:
            raise ConfigError(
                f"{item.path}.tag",
                f"{describe(item.tag)} is already the tag of {seen[item.tag]}; tags must be unique",
            )
        seen[item.tag] = item.path


def _check_detours(inbounds: Sequence[InboundConfig]) -> None:
    by_tag = {i.tag: i for i in inbounds if i.tag}
    for inbound in inbounds:
        settings = inbound.settings
        if not isinstance(settings, VmessInboundSettings):
            continue
        target = settings.detour_to
        if target is None:
            continue
        path = f"{inbound.path}.settings.{settings.detour_key}"
        found = by_tag.get(target)
        if found is None:
            raise ConfigError(path, f"{describe(target)} is not the tag of any inbound")
        if found.protocol != "vmess":
            raise ConfigError(
                path,
                f"{describe(target)} is the tag of a {found.protocol} inbound; "
                "a detour must point to a vmess inbound",
            )
