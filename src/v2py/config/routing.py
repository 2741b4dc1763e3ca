"""``routing`` and ``dns``: JSON -> typed frozen models (v2ray-core 4.34
``infra/conf/router.go``, ``infra/conf/dns.go``; behaviour in ``app/router``).

Every 4.34 rule field and domain/IP syntax is parsed here; the geo files are
not read (the config layer does no I/O). A ``geosite:``/``geoip:``/``ext:``
entry stays a reference (:class:`GeoSiteRef`, :class:`GeoIpRef`) carrying the
JSON key it came from, and the shell (``app/geodata.py``) loads it when the
router is built, failing with a :class:`~v2py.errors.ConfigError` at that
path, as 4.34 fails at config-parse time.

Deliberate differences from 4.34 (fail closed, STYLE section 5):

* an unknown ``domainStrategy`` is an error (4.34 silently uses AsIs);
* ``attrs`` (a Starlark expression) is refused: v2py has no Starlark;
* a network other than ``tcp``/``udp`` is an error (4.34 keeps it as
  "unknown", which never matches, e.g. the second item of ``"tcp, udp"``);
* an empty domain entry is an error (4.34 makes it a keyword that matches
  every domain);
* a port range ``"B-A"`` with B > A is an error (4.34 keeps a range that never
  matches);
* RE2 syntax that Python's ``re`` reads differently (POSIX classes
  ``[[:alpha:]]``, ``\\p{..}`` classes) is refused, and so is any pattern
  ``re`` cannot compile.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ClassVar, TypeVar

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from v2py.config.base import ConfigModel, Str, describe, fail

__all__ = [
    "BalancerConfig",
    "Cidr",
    "DnsConfig",
    "DnsHostConfig",
    "DnsServerConfig",
    "DohAddress",
    "DoqAddress",
    "DomainEntry",
    "DomainKind",
    "DomainRule",
    "DomainStrategy",
    "GeoIpRef",
    "GeoSiteRef",
    "IpEntry",
    "RoutingConfig",
    "RoutingRuleConfig",
    "parse_cidr",
    "parse_doh_address",
    "parse_doq_address",
    "parse_domain_entry",
]

_T = TypeVar("_T")

PORT_MAX = 0xFFFF
IPV4_BITS = 32
IPV6_BITS = 128
GEOIP_FILE = "geoip.dat"
GEOSITE_FILE = "geosite.dat"


class DomainStrategy(enum.Enum):
    """``routing.domainStrategy`` as the 4.34 router proto names it."""

    AS_IS = "AsIs"
    #: ``AlwaysIP``: the 4.34 router treats it exactly like AsIs.
    USE_IP = "UseIp"
    IP_IF_NON_MATCH = "IpIfNonMatch"
    IP_ON_DEMAND = "IpOnDemand"


_STRATEGIES = {
    "asis": DomainStrategy.AS_IS,
    "alwaysip": DomainStrategy.USE_IP,
    "always_ip": DomainStrategy.USE_IP,
    "always-ip": DomainStrategy.USE_IP,
    "ipifnonmatch": DomainStrategy.IP_IF_NON_MATCH,
    "ip_if_non_match": DomainStrategy.IP_IF_NON_MATCH,
    "ip-if-non-match": DomainStrategy.IP_IF_NON_MATCH,
    "ipondemand": DomainStrategy.IP_ON_DEMAND,
    "ip_on_demand": DomainStrategy.IP_ON_DEMAND,
    "ip-on-demand": DomainStrategy.IP_ON_DEMAND,
}


def _check_strategy(value: object) -> DomainStrategy:
    if isinstance(value, DomainStrategy):
        return value
    shown = '"AsIs", "IPIfNonMatch", "IPOnDemand" or "AlwaysIP"'
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a string; use {shown}")
    # 4.34 maps "" (and anything unknown) to AsIs; only "" is kept here.
    if value == "":
        return DomainStrategy.AS_IS
    found = _STRATEGIES.get(value.lower())
    if found is None:
        raise fail(f"{describe(value)} is not a domain strategy; use {shown}")
    return found


Strategy = Annotated[DomainStrategy, BeforeValidator(_check_strategy)]


# --------------------------------------------------------------------------
# entries


class DomainKind(enum.IntEnum):
    """``Domain.Type`` of 4.34 ``app/router/config.proto`` (wire values)."""

    PLAIN = 0
    REGEX = 1
    DOMAIN = 2
    FULL = 3


@dataclass(frozen=True, slots=True)
class DomainRule:
    """One literal domain condition: substring, regexp, domain-and-subdomains or full."""

    kind: DomainKind
    value: str


@dataclass(frozen=True, slots=True)
class GeoSiteRef:
    """``geosite:NAME[@attr...]`` or ``ext:FILE:NAME[@attr...]``, loaded by the shell.

    ``key`` is the JSON location relative to the owning object (``domain[3]``),
    for error messages. ``attrs`` are lower-cased and trimmed; empty means all.
    """

    file: str
    code: str
    attrs: tuple[str, ...]
    key: str


DomainEntry = DomainRule | GeoSiteRef


@dataclass(frozen=True, slots=True)
class Cidr:
    """An IP network: 4 or 16 ``ip`` bytes (host bits as written) and ``prefix``."""

    ip: bytes
    prefix: int


@dataclass(frozen=True, slots=True)
class GeoIpRef:
    """``geoip:CC`` or ``ext:FILE:CC``; ``key`` as in :class:`GeoSiteRef`."""

    file: str
    code: str
    key: str


IpEntry = Cidr | GeoIpRef

_POSIX_CLASS = re.compile(r"\[\[:\^?[a-z]+:\]")
_UNICODE_CLASS = re.compile(r"(?<!\\)(?:\\\\)*\\[pP]")


def check_regexp(pattern: str) -> str | None:
    """Why ``pattern`` (RE2 syntax) is refused, or None when Python's ``re`` reads it alike."""
    if _POSIX_CLASS.search(pattern):
        return "POSIX classes like [[:alpha:]] are not supported by v2py; use [a-zA-Z]"
    if _UNICODE_CLASS.search(pattern):
        return r"Unicode classes (\p{..}) are not supported by v2py"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            re.compile(pattern)
    except (re.error, FutureWarning, DeprecationWarning) as exc:
        return f"invalid regexp: {exc}"
    return None


def _split_ext(rest: str) -> tuple[str, str] | None:
    parts = rest.split(":")
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


def _site_ref(file: str, text: str, key: str) -> GeoSiteRef | str:
    """``NAME@a@b`` -> ref, or the error text."""
    name, *attrs = text.split("@")
    name = name.strip()
    if not name:
        return "empty list name"
    clean = tuple(a.strip().lower() for a in attrs if a.strip())
    return GeoSiteRef(file=file, code=name, attrs=clean, key=key)


def parse_domain_entry(text: str, key: str, *, plain: DomainKind = DomainKind.PLAIN) -> DomainEntry:
    """One routing (or DNS) domain string -> entry (4.34 ``parseDomainRule``).

    ``plain`` is the kind of a string without prefix: keyword in routing, full
    in DNS ``hosts``. Prefixes are case-sensitive. Raises the validator error.
    """
    if text.startswith("geosite:"):
        found = _site_ref(GEOSITE_FILE, text[len("geosite:") :], key)
        if isinstance(found, str):
            raise fail(f"{describe(text)}: {found}; use geosite:NAME")
        return found
    for prefix in ("ext:", "ext-domain:"):
        if text.startswith(prefix):
            split = _split_ext(text[len(prefix) :])
            if split is None or not split[0]:
                raise fail(f"{describe(text)} is not a valid external list; use ext:FILE:NAME")
            found = _site_ref(split[0], split[1], key)
            if isinstance(found, str):
                raise fail(f"{describe(text)}: {found}; use ext:FILE:NAME")
            return found
    simple = {
        "regexp:": DomainKind.REGEX,
        "domain:": DomainKind.DOMAIN,
        "full:": DomainKind.FULL,
        "keyword:": DomainKind.PLAIN,
    }
    for prefix, kind in simple.items():
        if text.startswith(prefix):
            value = text[len(prefix) :]
            if not value:
                raise fail(f"{describe(text)}: empty value after {prefix!r}")
            if kind is DomainKind.REGEX:
                problem = check_regexp(value)
                if problem is not None:
                    raise fail(f"{describe(text)}: {problem}")
            return DomainRule(kind, value)
    if text.startswith("dotless:"):
        sub = text[len("dotless:") :]
        if "." in sub:
            raise fail(f"{describe(text)}: the text after dotless: must not contain a dot")
        pattern = "^[^.]*$" if not sub else f"^[^.]*{sub}[^.]*$"
        problem = check_regexp(pattern)
        if problem is not None:
            raise fail(f"{describe(text)}: {problem}")
        return DomainRule(DomainKind.REGEX, pattern)
    if not text:
        raise fail(
            '"" is an empty domain (in V2Ray it matches every domain); '
            'use "regexp:." if that is meant'
        )
    return DomainRule(plain, text)


def _ip_bytes(text: str) -> bytes | None:
    """4 or 16 bytes, with v4-mapped IPv6 taken as IPv4 (4.34 ``net.ParseAddress``)."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.packed
    return address.packed


def parse_cidr(text: str) -> Cidr | str:
    """``1.2.3.4``, ``1.2.3.0/24``, ``::1``, ``2001:db8::/32`` -> Cidr, or the error text."""
    address, slash, mask = text.partition("/")
    packed = _ip_bytes(address)
    if packed is None:
        return f"{describe(text)} is not an IP or CIDR (domains are not allowed here)"
    bits = IPV4_BITS if len(packed) == 4 else IPV6_BITS
    if slash:
        if not (mask.isascii() and mask.isdigit()):
            return f"{describe(text)}: {describe(mask)} is not a network mask"
        prefix = int(mask)
        if prefix > bits:
            return f"{describe(text)}: mask /{prefix} is too long; at most /{bits}"
    else:
        prefix = bits
    return Cidr(packed, prefix)


def parse_ip_entry(text: str, key: str) -> IpEntry:
    """One routing IP string -> entry (4.34 ``toCidrList``)."""
    if text.startswith("geoip:"):
        code = text[len("geoip:") :]
        if not code:
            raise fail(f"{describe(text)}: empty country code; use geoip:CC")
        return GeoIpRef(file=GEOIP_FILE, code=code, key=key)
    for prefix in ("ext:", "ext-ip:"):
        if text.startswith(prefix):
            split = _split_ext(text[len(prefix) :])
            if split is None or not split[0] or not split[1]:
                raise fail(f"{describe(text)} is not a valid external list; use ext:FILE:CC")
            return GeoIpRef(file=split[0], code=split[1], key=key)
    found = parse_cidr(text)
    if isinstance(found, str):
        raise fail(found)
    return found


# --------------------------------------------------------------------------
# JSON value shapes


def _string_items(value: object, what: str) -> list[str]:
    """4.34 ``StringList``: a list of strings, or one string split at commas (not trimmed)."""
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise fail(f"{describe(item)} is not a string; expected {what}", f"[{index}]")
        return list(value)
    raise fail(f"{describe(value)} is not a list of {what} or a comma-separated string")


def _at(sub: str, check: Callable[[str, str], _T], item: str, key: str) -> _T:
    """Run ``check(item, key)`` and re-locate its error at ``sub`` below the field."""
    try:
        return check(item, key)
    except PydanticCustomError as exc:
        context = exc.context or {}
        raise fail(str(context.get("message", "invalid value")), sub) from None


def _domains(key: str) -> Callable[[object], tuple[DomainEntry, ...]]:
    def check(value: object) -> tuple[DomainEntry, ...]:
        if isinstance(value, tuple):
            return value
        items = _string_items(value, "domains")
        return tuple(
            _at(f"[{i}]", parse_domain_entry, item, f"{key}[{i}]") for i, item in enumerate(items)
        )

    return check


def _ips(key: str) -> Callable[[object], tuple[IpEntry, ...]]:
    def check(value: object) -> tuple[IpEntry, ...]:
        if isinstance(value, tuple):
            return value
        items = _string_items(value, "IPs or CIDRs")
        return tuple(
            _at(f"[{i}]", parse_ip_entry, item, f"{key}[{i}]") for i, item in enumerate(items)
        )

    return check


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(_string_items(value, "strings"))


_PORT_HINT = 'use a number, "N", "A-B" or "N,A-B,..." (a JSON list is not allowed)'


def _port_number(text: str, whole: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise fail(f"{describe(whole)} is not a port list; {_PORT_HINT}")
    number = int(text)
    if number > PORT_MAX:
        raise fail(f"{describe(whole)}: {number} is out of range; use 0-65535")
    return number


def _check_ports(value: object) -> tuple[tuple[int, int], ...]:
    """4.34 ``PortList``: a number or a string of comma-separated ports and ranges.

    An empty list (``0`` or ``""``) is kept: 4.34 then never matches the rule.
    """
    if isinstance(value, tuple):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(f"{describe(value)} is not a port list; {_PORT_HINT}")
    if isinstance(value, int):
        if not 0 <= value <= PORT_MAX:
            raise fail(f"{value} is out of range; use 0-65535")
        return () if value == 0 else ((value, value),)
    spans: list[tuple[int, int]] = []
    for piece in value.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if piece.startswith("env:"):
            raise fail(f"{describe(value)}: env: ports are not supported in routing rules")
        first_text, dash, last_text = piece.partition("-")
        first = _port_number(first_text, value)
        last = _port_number(last_text, value) if dash else first
        if first > last:
            raise fail(f"{describe(value)}: {piece!r} is an empty range; use A-B with A <= B")
        spans.append((first, last))
    return tuple(spans)


_NETWORKS = {"tcp": "tcp", "udp": "udp"}


def _check_networks(value: object) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, list):
        items = list(value)
    else:
        raise fail(f'{describe(value)} is not a network list; use "tcp", "udp" or "tcp,udp"')
    result: dict[str, None] = {}
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise fail(f"{describe(item)} is not a string", f"[{index}]")
        name = _NETWORKS.get(item.lower())
        if name is None:
            raise fail(
                f'{describe(item)} is not "tcp" or "udp" (V2Ray 4.34 does not trim spaces '
                'in "tcp, udp" and the rule would never match it)',
                f"[{index}]",
            )
        result[name] = None
    return tuple(result)


# --------------------------------------------------------------------------
# routing


class RoutingRuleConfig(ConfigModel):
    """One ``routing.rules[]`` entry (``type: "field"``).

    ``None`` means the condition is absent; an empty tuple is a condition that
    never matches (e.g. ``"port": 0``), as in 4.34. ``path`` is filled by the
    loader (``routing.rules[2]``).
    """

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"path"})

    type: Str = ""
    outbound_tag: Str = ""
    balancer_tag: Str = ""
    domain: Annotated[tuple[DomainEntry, ...], BeforeValidator(_domains("domain"))] | None = None
    domains: Annotated[tuple[DomainEntry, ...], BeforeValidator(_domains("domains"))] | None = None
    ip: Annotated[tuple[IpEntry, ...], BeforeValidator(_ips("ip"))] | None = None
    port: Annotated[tuple[tuple[int, int], ...], BeforeValidator(_check_ports)] | None = None
    source_port: Annotated[tuple[tuple[int, int], ...], BeforeValidator(_check_ports)] | None = None
    network: Annotated[tuple[str, ...], BeforeValidator(_check_networks)] | None = None
    source: Annotated[tuple[IpEntry, ...], BeforeValidator(_ips("source"))] | None = None
    user: Annotated[tuple[str, ...], BeforeValidator(_strings)] | None = None
    inbound_tag: Annotated[tuple[str, ...], BeforeValidator(_strings)] | None = None
    protocol: Annotated[tuple[str, ...], BeforeValidator(_strings)] | None = None
    attrs: Str = ""
    path: str = ""

    @model_validator(mode="after")
    def _check_rule(self) -> RoutingRuleConfig:
        if self.type.lower() != "field":
            raise fail(f'{describe(self.type)} is not a rule type; use "field"', "type")
        if not self.outbound_tag and not self.balancer_tag:
            raise fail('missing; add "outboundTag" (or "balancerTag")', "outboundTag")
        if self.attrs:
            from v2py.protocol.attrs import compile_attrs

            try:
                compile_attrs(self.attrs)
            except ValueError as exc:
                raise fail(f"{describe(self.attrs)}: {exc}", "attrs") from None
        if not self.has_conditions:
            raise fail(
                "this rule has no effective fields; add a condition such as "
                '"domain", "ip", "port", "network", "inboundTag" or "user"'
            )
        return self

    @property
    def has_conditions(self) -> bool:
        """True when at least one condition is present (4.34 refuses a rule without)."""
        # Empty user/inboundTag/protocol strings are dropped by 4.34, but the
        # condition itself still exists (and then never matches).
        return any(
            v is not None
            for v in (
                self.all_domains,
                self.ip,
                self.port,
                self.source_port,
                self.network,
                self.source,
                self.user,
                self.inbound_tag,
                self.protocol,
                self.attrs or None,
            )
        )

    @property
    def all_domains(self) -> tuple[DomainEntry, ...] | None:
        """``domain`` then ``domains`` (4.34 appends both); None when neither is given
        or both are empty lists (no condition, as in 4.34)."""
        entries = (self.domain or ()) + (self.domains or ())
        return entries or None

    @property
    def target(self) -> str:
        """``outboundTag`` wins over ``balancerTag`` when both are set (as in 4.34)."""
        return self.outbound_tag or self.balancer_tag

    @property
    def targets_balancer(self) -> bool:
        return not self.outbound_tag


def _check_selector(value: object) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(_string_items(value, "outbound tag prefixes"))


class BalancerConfig(ConfigModel):
    """``routing.balancers[]``: random pick among outbounds whose tag starts with a selector."""

    tag: Str = ""
    selector: Annotated[tuple[str, ...], BeforeValidator(_check_selector)] = ()

    @model_validator(mode="after")
    def _check_balancer(self) -> BalancerConfig:
        if not self.tag:
            raise fail('empty balancer tag; add "tag"', "tag")
        if not self.selector:
            raise fail("empty selector list; add outbound tag prefixes", "selector")
        return self


class RoutingSettingsConfig(ConfigModel):
    """Deprecated ``routing.settings`` wrapper (rules appended after ``routing.rules``)."""

    domain_strategy: Strategy | None = None
    rules: tuple[RoutingRuleConfig, ...] = ()


class RoutingConfig(ConfigModel):
    """``routing``: ``domainStrategy``, ordered ``rules`` (first match wins), ``balancers``.

    After loading, ``rules`` holds ``rules`` then ``settings.rules``, and
    ``domain_strategy`` falls back to ``settings.domainStrategy``.
    """

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"path"})

    domain_strategy: Strategy | None = None
    rules: tuple[RoutingRuleConfig, ...] = ()
    balancers: tuple[BalancerConfig, ...] = ()
    settings: RoutingSettingsConfig | None = None
    path: str = "routing"

    def with_paths(self, base: str) -> RoutingConfig:
        """A copy whose rules know their JSON path under ``base`` (e.g. ``"routing"``)."""
        rules = tuple(
            r.model_copy(update={"path": f"{base}.rules[{i}]"}) for i, r in enumerate(self.rules)
        )
        settings = self.settings
        if settings is not None:
            settings = settings.model_copy(
                update={
                    "rules": tuple(
                        r.model_copy(update={"path": f"{base}.settings.rules[{i}]"})
                        for i, r in enumerate(settings.rules)
                    )
                }
            )
        return self.model_copy(update={"rules": rules, "settings": settings, "path": base})

    @property
    def strategy(self) -> DomainStrategy:
        """The effective domain strategy."""
        if self.domain_strategy is not None:
            return self.domain_strategy
        if self.settings is not None and self.settings.domain_strategy is not None:
            return self.settings.domain_strategy
        return DomainStrategy.AS_IS

    @property
    def all_rules(self) -> tuple[RoutingRuleConfig, ...]:
        """``rules`` then the deprecated ``settings.rules``."""
        return self.rules + (self.settings.rules if self.settings is not None else ())

    @model_validator(mode="after")
    def _check_balancer_tags(self) -> RoutingConfig:
        seen = {b.tag for b in self.balancers}
        for index, rule in enumerate(self.all_rules):
            if rule.targets_balancer and rule.balancer_tag not in seen:
                where = (
                    f"rules[{index}]"
                    if index < len(self.rules)
                    else f"settings.rules[{index - len(self.rules)}]"
                )
                raise fail(
                    f"balancer {describe(rule.balancer_tag)} not found; "
                    "add it to routing.balancers",
                    f"{where}.balancerTag",
                )
        return self


# --------------------------------------------------------------------------
# dns

_DNS_REFUSED_SCHEMES = ("tcp://", "tcp+local://")
_NAME_SERVER_KINDS = (
    'an IP address or a host name (UDP DNS), "localhost", a https:// / https+local:// '
    "URL (DoH) or a quic+local:// URL (DoQ)"
)
#: A name server given as a host name: 4.34 sends classic UDP DNS to it through the
#: dispatcher (``NewServer`` falls through to ``NewClassicNameServer``), the outbound
#: resolving the name. Other strings ``url.Parse`` takes would name no usable server.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_NAME_SERVER_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
#: DoH URL schemes (4.34 ``NewServer``, after ``url.Parse`` lower-cased the scheme)
#: -> dialled directly (``https+local``) rather than through the dispatcher.
_DOH_SCHEMES = {"https": False, "https+local": True}
_DOH_HOST = re.compile(r"[A-Za-z0-9._-]+")
_DOH_TARGET = re.compile(r"(?:[!$&'()*+,;=:@/?A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})*")
#: DNS over QUIC (4.34 ``NewQUICNameServer``): only the local kind, dialled directly.
_DOQ_SCHEME = "quic+local"
DOQ_DEFAULT_PORT = 784
#: What Go's ``url.Parse`` refuses anywhere in a URL, and in a path or fragment.
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class DohAddress:
    """A DNS-over-HTTPS server URL (4.34 ``NewDoHNameServer`` / ``NewDoHLocalNameServer``).

    ``local``: dialled directly (``https+local://``), else through the dispatcher.
    ``host`` (no brackets) is dialled, sent as SNI and verified; ``authority`` is the
    URL's ``host[:port]`` as written (``Host`` / ``:authority``); ``target`` is the
    request target (path, ``/`` when empty, then ``?query``; a ``#fragment`` is not
    sent, as Go's ``RequestURI``). ``name`` is 4.34's server name (``DOH//host:port``).
    """

    local: bool
    host: str
    port: int
    authority: str
    target: str

    @property
    def name(self) -> str:
        return ("DOHL//" if self.local else "DOH//") + self.authority

    @property
    def url(self) -> str:
        """The URL requested (``https``, whichever way it is dialled; no fragment)."""
        return f"https://{self.authority}{self.target}"


def _split_authority(authority: str, scheme: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` of a name server URL -> (host without brackets, port).

    Raises ValueError for user info, no valid host or a port outside 1-65535.
    """
    if "@" in authority:
        raise ValueError(f"user info in a {scheme} URL is not supported by v2py")
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or ":" not in host or _ip_bytes(host) is None:
            raise ValueError("bad IPv6 host")
        if after and not after.startswith(":"):
            raise ValueError("bad port")
        colon, port_text = after[:1], after[1:]
    else:
        host, colon, port_text = authority.partition(":")
        if not host or not _DOH_HOST.fullmatch(host):
            raise ValueError("no valid host")
    port = default_port
    if colon:
        if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= PORT_MAX):
            raise ValueError(f"bad port {port_text!r}; use 1-65535")
        port = int(port_text)
    return host, port


def parse_doh_address(value: str) -> DohAddress | None:
    """``value`` as a DoH URL; None when it has no DoH scheme.

    Raises ValueError for a malformed URL (fail closed where Go's lenient
    ``url.Parse`` would give a server that can never answer: no host, a bad
    port, user info, characters a request target cannot hold).
    """
    scheme, sep, rest = value.partition("://")
    local = _DOH_SCHEMES.get(scheme.lower()) if sep else None
    if local is None:
        return None
    rest = rest.partition("#")[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    host, port = _split_authority(authority, "DoH", 443)
    if not _DOH_TARGET.fullmatch(target):
        raise ValueError("the path holds characters that need %-escaping")
    if target.startswith("?") or not target:
        target = "/" + target
    return DohAddress(local=local, host=host, port=port, authority=authority, target=target)


@dataclass(frozen=True, slots=True)
class DoqAddress:
    """A DNS-over-QUIC server URL ``quic+local://host[:port]`` (4.34 ``NewQUICNameServer``).

    ``host`` (no brackets) is dialled, sent as SNI (none for an IP) and verified; ``port``
    defaults to 784. ``name`` is 4.34's server name: the URL as written, scheme in lower
    case. A path, query or fragment is ignored, as 4.34 ignores it.
    """

    host: str
    port: int
    name: str


def parse_doq_address(value: str) -> DoqAddress | None:
    """``value`` as a DoQ URL; None when its scheme is not ``quic+local``.

    Raises ValueError for a malformed URL: what Go's ``url.Parse`` or 4.34 refuses
    (control characters, bad %-escapes, a non-numeric port or one above 65535), and,
    failing closed, what would give a server that can never answer (no host, port 0),
    and user info (as for DoH).
    """
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() != _DOQ_SCHEME:
        return None
    if _URL_CONTROL.search(value):
        raise ValueError("control characters in the URL")
    rest, _, fragment = rest.partition("#")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if _URL_BAD_ESCAPE.search(tail.partition("?")[0]) or _URL_BAD_ESCAPE.search(fragment):
        raise ValueError("bad %-escape after the host")
    host, port = _split_authority(authority, "DoQ", DOQ_DEFAULT_PORT)
    return DoqAddress(host=host, port=port, name=f"{_DOQ_SCHEME}://{value[len(scheme) + 3 :]}")


def _ip_text(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not an IP address string")
    packed = _ip_bytes(value)
    if packed is None:
        raise fail(f"{describe(value)} is not an IP address")
    return str(ipaddress.ip_address(packed))


IpText = Annotated[str, BeforeValidator(_ip_text)]


def _check_server_address(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a name server address")
    if value == "localhost":
        return value
    try:
        doh = parse_doh_address(value)
    except ValueError as exc:
        raise fail(f"{describe(value)} is not a valid DoH URL: {exc}") from None
    if doh is not None:
        return value
    try:
        doq = parse_doq_address(value)
    except ValueError as exc:
        raise fail(f"{describe(value)} is not a valid DoQ URL: {exc}") from None
    if doq is not None:
        return value
    for scheme in _DNS_REFUSED_SCHEMES:
        if value.lower().startswith(scheme):
            raise fail(
                f"{describe(value)}: {scheme} name servers are not supported by v2py; "
                f"use {_NAME_SERVER_KINDS}"
            )
    packed = _ip_bytes(value)
    if packed is not None:
        return str(ipaddress.ip_address(packed))
    if len(value) <= 253 and _NAME_SERVER_HOST.fullmatch(value):
        return value  # classic UDP DNS to this host, dispatched (4.34)
    raise fail(
        f"{describe(value)} is not supported as a name server by v2py; use {_NAME_SERVER_KINDS}"
    )


def _check_server_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= PORT_MAX:
        raise fail(f"{describe(value)} is not a port; use 1-65535")
    return value


def _check_dns_domains(value: object) -> tuple[DomainEntry, ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, list):
        raise fail(f"{describe(value)} is not a list of domains")
    result: list[DomainEntry] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise fail(f"{describe(item)} is not a string", f"[{index}]")
        result.append(_at(f"[{index}]", parse_domain_entry, item, f"domains[{index}]"))
    return tuple(result)


class DnsServerConfig(ConfigModel):
    """One ``dns.servers[]`` entry: an address string or an object.

    ``port`` 0 means 53. ``path`` is filled by the loader (``dns.servers[1]``).
    """

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"path"})

    address: Annotated[str, BeforeValidator(_check_server_address)]
    port: Annotated[int, BeforeValidator(_check_server_port)] = 0
    domains: Annotated[tuple[DomainEntry, ...], BeforeValidator(_check_dns_domains)] = ()
    expect_ips: Annotated[tuple[IpEntry, ...], BeforeValidator(_ips("expectIps"))] = ()
    client_ip: IpText | None = None
    path: str = ""

    @property
    def effective_port(self) -> int:
        return self.port or 53

    @property
    def doh(self) -> DohAddress | None:
        """The DoH URL of ``address`` (its ``port`` is then unused, as in 4.34), or None."""
        return parse_doh_address(self.address)

    @property
    def doq(self) -> DoqAddress | None:
        """The DoQ URL of ``address`` (its ``port`` is then unused, as in 4.34), or None."""
        return parse_doq_address(self.address)


def _check_server(value: object) -> object:
    if isinstance(value, str):
        return {"address": value}
    return value


def _host_key(key: str, _: str) -> DomainEntry:
    """A ``dns.hosts`` key: like routing, except that a plain key is an exact match."""
    return parse_domain_entry(key, f"hosts.{key}", plain=DomainKind.FULL)


@dataclass(frozen=True, slots=True)
class DnsHostConfig:
    """One ``dns.hosts`` entry: a matcher and an IP (text) or a replacement domain."""

    match: DomainEntry
    ip: str | None
    domain: str | None


def _check_hosts(value: object) -> tuple[DnsHostConfig, ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, dict):
        raise fail(f"{describe(value)} is not an object of domain -> address")
    result: list[DnsHostConfig] = []
    # 4.34 sorts the keys before building matchers.
    for key in sorted(value):
        target = value[key]
        if not isinstance(target, str):
            raise fail(f"{describe(target)} is not an address string", key)
        match = _at(key, _host_key, key, key)
        packed = _ip_bytes(target)
        if packed is not None:
            result.append(
                DnsHostConfig(match=match, ip=str(ipaddress.ip_address(packed)), domain=None)
            )
        elif target:
            result.append(DnsHostConfig(match=match, ip=None, domain=target))
        else:
            raise fail('"" is neither an IP nor a domain', key)
    return tuple(result)


class DnsConfig(ConfigModel):
    """``dns``: name servers, static ``hosts``, EDNS ``clientIp``, the queries' inbound ``tag``."""

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"path"})

    servers: tuple[Annotated[DnsServerConfig, BeforeValidator(_check_server)], ...] = ()
    hosts: Annotated[tuple[DnsHostConfig, ...], BeforeValidator(_check_hosts)] = Field(default=())
    client_ip: IpText | None = None
    tag: Str = ""
    path: str = "dns"

    def with_paths(self, base: str) -> DnsConfig:
        """A copy whose servers know their JSON path under ``base`` (e.g. ``"dns"``)."""
        servers = tuple(
            s.model_copy(update={"path": f"{base}.servers[{i}]"})
            for i, s in enumerate(self.servers)
        )
        return self.model_copy(update={"servers": servers, "path": base})
