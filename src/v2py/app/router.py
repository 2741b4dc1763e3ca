"""The router: which outbound a connection goes to (v2ray-core 4.34 ``app/router``,
``common/strmatcher``; spec in ``docs/routing.md``).

PURE: decides from a :class:`RoutingContext` (what the dispatcher knows about a
connection) and never does I/O. When the domain strategy needs the IPs of a
domain, :meth:`Router.route` returns :class:`NeedIps`; the shell resolves the
domain and asks again with ``resolved=`` (an empty tuple when resolution
failed). Randomness (balancers) is passed in.

Matching, as 4.34 does it, but compiled for list sizes of real geo files:

* domains (case-sensitive): ``full`` in a set, ``domain`` (the name or a
  subdomain of it) as a set of suffixes probed once per label, keywords
  (substrings) as one regular expression built from a trie of the keywords,
  and regexps combined into one pattern where possible;
* IPs: CIDRs turned into merged, sorted ``[first, last]`` ranges per family,
  found with :func:`bisect.bisect_right`. This is true containment. 4.34's
  binary search only looks at the nearest lower CIDR and misses an address
  inside an outer CIDR that has a nested one above it (``127.0.0.0/8`` +
  ``127.1.0.0/16`` misses ``127.5.0.1``); v2py fixes that bug deliberately.

Conditions of a rule are checked in 4.34's order (domain, user, inboundTag,
port, sourcePort, network, ip, source, protocol), so that IPOnDemand only asks
for IPs once every earlier condition of the rule matched.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

from v2py.config.routing import (
    Cidr,
    DomainEntry,
    DomainKind,
    DomainRule,
    DomainStrategy,
    GeoIpRef,
    GeoSiteRef,
    IpEntry,
    RoutingConfig,
    RoutingRuleConfig,
)
from v2py.errors import ConfigError
from v2py.protocol.attrs import compile_attrs

__all__ = [
    "DomainSet",
    "GeoSource",
    "IpSet",
    "NeedIps",
    "Route",
    "Router",
    "RoutingContext",
    "build_domain_matcher",
    "build_ip_matcher",
    "build_router",
    "normalize_ip",
]

_V4_LEN = 4
_V6_LEN = 16
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_RNG_BYTES = 4


def normalize_ip(packed: bytes) -> bytes:
    """An IPv4-mapped IPv6 address as its 4 IPv4 bytes (4.34 ``net.IPAddress``)."""
    if len(packed) == _V6_LEN and packed[:12] == _V4_MAPPED_PREFIX:
        return packed[12:]
    return packed


# --------------------------------------------------------------------------
# domains


def _keyword_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words`` as a substring, built from their trie.

    A word that has another word as prefix is dropped (the shorter one already
    matches), so a terminal node ends its branch.
    """
    end = ""  # key marking "a word ends here"; no real edge is an empty string
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in sorted(set(words), key=len):
        node = trie
        for ch in word:
            if end in node:
                break
            node = node.setdefault(ch, {})
        else:
            node.clear()
            node[end] = {}

    def emit(node: dict) -> str:  # type: ignore[type-arg]
        # Iterative over long single-child chains; recursion only at branches.
        out: list[str] = []
        while True:
            if end in node:
                return "".join(out)
            if len(node) == 1:
                ((ch, child),) = node.items()
                out.append(re.escape(ch))
                node = child
                continue
            branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items())]
            out.append("(?:" + "|".join(branches) + ")")
            return "".join(out)

    return emit(trie) if trie else ""


#: Lone surrogates (undecodable input kept as str) encode as themselves.
_KEEP = "surrogatepass"
#: Above this many names, a set of names is held as :class:`PackedNames`.
PACKED_NAMES_MIN = 1_024


class PackedNames:
    """A large, fixed set of names in ~(length + 12) bytes each (a ``frozenset`` of
    ``str`` costs ~100 bytes per name: ~10 MiB for a 100,000-domain geosite list).

    Sorted 64-bit ``hash()`` values in an ``array`` (searched in C by ``bisect``), and
    the UTF-8 names in one ``bytes`` in the same order, so that a hash hit is confirmed
    by comparing the name itself. ``hash()`` is only stable within a process, which is
    where the set lives.
    """

    __slots__ = ("_blob", "_hashes", "_offsets")

    def __init__(self, names: Iterable[str]) -> None:
        items = sorted((hash(name), name.encode("utf-8", _KEEP)) for name in set(names))
        self._hashes = array("q", (h for h, _ in items))
        self._offsets = array("Q", accumulate((len(raw) for _, raw in items), initial=0))
        self._blob = b"".join(raw for _, raw in items)

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        hashes = self._hashes
        h = hash(name)
        i = bisect_left(hashes, h)
        n = len(hashes)
        if i == n or hashes[i] != h:
            return False
        raw = name.encode("utf-8", _KEEP)
        offsets, blob = self._offsets, self._blob
        while i < n and hashes[i] == h:
            if blob[offsets[i] : offsets[i + 1]] == raw:
                return True
            i += 1
        return False

    def __iter__(self) -> Iterator[str]:
        offsets, blob = self._offsets, self._blob
        for i in range(len(self._hashes)):
            yield blob[offsets[i] : offsets[i + 1]].decode("utf-8", _KEEP)


def _names(values: set[str]) -> frozenset[str] | PackedNames:
    return PackedNames(values) if len(values) >= PACKED_NAMES_MIN else frozenset(values)


class DomainSet:
    """A compiled group of literal domain conditions; :meth:`matches` is any-of."""

    __slots__ = ("_full", "_keyword", "_keywords", "_patterns", "_regexes", "_suffixes", "size")

    def __init__(self, rules: Iterable[DomainRule]) -> None:
        parts: tuple[set[str], set[str], set[str], list[str]] = (set(), set(), set(), [])
        count = 0
        for rule in rules:
            count += 1
            _add_part(parts, rule.kind, rule.value)
        self._setup(count, *parts)

    @classmethod
    def from_values(cls, items: Iterable[tuple[int, str]]) -> DomainSet:
        """Build from ``(Domain.Type wire value, value)`` pairs without a DomainRule per
        entry (geo lists: 100,000s of entries). Raises ValueError for an unknown type."""
        parts: tuple[set[str], set[str], set[str], list[str]] = (set(), set(), set(), [])
        count = 0
        for kind, value in items:
            count += 1
            _add_part(parts, DomainKind(kind), value)
        built = cls.__new__(cls)
        built._setup(count, *parts)
        return built

    def _setup(
        self, count: int, full: set[str], suffixes: set[str], keywords: set[str], regexes: list[str]
    ) -> None:
        self.size = count
        self._full = _names(full)
        self._suffixes = _names(suffixes)
        self._keywords = tuple(keywords)
        self._patterns = tuple(regexes)
        if "" in keywords:
            # An empty keyword is a substring of everything (4.34 strings.Contains).
            self._keyword: re.Pattern[str] | None = re.compile("")
        else:
            self._keyword = re.compile(_keyword_pattern(keywords)) if keywords else None
        self._regexes = _compile_regexes(regexes)

    def rules(self) -> list[DomainRule]:
        """The conditions again (without duplicates), e.g. for ``dns.hosts`` geosite keys."""
        return [
            *(DomainRule(DomainKind.FULL, v) for v in self._full),
            *(DomainRule(DomainKind.DOMAIN, v) for v in self._suffixes),
            *(DomainRule(DomainKind.PLAIN, v) for v in self._keywords),
            *(DomainRule(DomainKind.REGEX, v) for v in self._patterns),
        ]

    def match_rank(self, domain: str) -> tuple[int, int] | None:
        """How 4.34's matcher group orders a match (lower first): an exact name,
        then the longest ``domain:`` suffix, then keywords and regexps; None: no match."""
        if domain in self._full:
            return (0, 0)
        if self._suffixes:
            labels = domain.split(".")
            for start in range(len(labels)):
                if ".".join(labels[start:]) in self._suffixes:
                    return (1, start)
        keyword = self._keyword
        if (keyword is not None and keyword.search(domain) is not None) or any(
            r.search(domain) is not None for r in self._regexes
        ):
            return (2, 0)
        return None

    def matches(self, domain: str) -> bool:
        """True when ``domain`` (non-empty, case-sensitive) matches any condition."""
        if domain in self._full:
            return True
        suffixes = self._suffixes
        if suffixes:
            if domain in suffixes:
                return True
            dot = domain.find(".")
            while dot >= 0:
                if domain[dot + 1 :] in suffixes:
                    return True
                dot = domain.find(".", dot + 1)
        keyword = self._keyword
        if keyword is not None and keyword.search(domain) is not None:
            return True
        return any(r.search(domain) is not None for r in self._regexes)


def _add_part(
    parts: tuple[set[str], set[str], set[str], list[str]], kind: DomainKind, value: str
) -> None:
    full, suffixes, keywords, regexes = parts
    if kind is DomainKind.FULL:
        full.add(value)
    elif kind is DomainKind.DOMAIN:
        suffixes.add(value)
    elif kind is DomainKind.PLAIN:
        keywords.add(value)
    else:
        regexes.append(value)


def _compile_regexes(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """One combined pattern when Python accepts the join, else one per pattern.

    Patterns were checked when the config (or geo file) was read.
    """
    if not patterns:
        return ()
    if len(patterns) > 1:
        try:
            return (re.compile("|".join(f"(?:{p})" for p in patterns)),)
        except re.error:
            pass  # e.g. inline global flags not at the start, or duplicate group names
    return tuple(re.compile(p) for p in patterns)


class DomainMatcher:
    """A rule's ``domain`` condition: its own literals plus shared geosite sets."""

    __slots__ = ("_sets",)

    def __init__(self, sets: Sequence[DomainSet]) -> None:
        self._sets = tuple(s for s in sets if s.size)

    @property
    def empty(self) -> bool:
        """True when no entry is left (e.g. a geosite list filtered to nothing)."""
        return not self._sets

    def matches(self, domain: str) -> bool:
        if not domain:
            return False
        return any(s.matches(domain) for s in self._sets)


# --------------------------------------------------------------------------
# IPs


def _ranges(cidrs: Iterable[Cidr], length: int) -> list[tuple[int, int]]:
    bits = length * 8
    spans = []
    for cidr in cidrs:
        if len(cidr.ip) != length:
            continue
        host_bits = bits - cidr.prefix
        first = (int.from_bytes(cidr.ip, "big") >> host_bits) << host_bits
        spans.append((first, first + (1 << host_bits) - 1))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


class IpSet:
    """CIDRs of both families as merged sorted ranges; :meth:`contains` by bisection.

    IPv4 ranges live in two ``array('I')`` (4 bytes per bound), IPv6 in lists of ints.
    Raises ValueError for an address that is not 4 or 16 bytes.
    """

    __slots__ = ("_v4_first", "_v4_last", "_v6_first", "_v6_last", "size")

    def __init__(self, cidrs: Iterable[Cidr]) -> None:
        cidrs = list(cidrs)
        for cidr in cidrs:
            if len(cidr.ip) not in (_V4_LEN, _V6_LEN):
                raise ValueError(f"unexpected IP length: {len(cidr.ip)}")
        self.size = len(cidrs)
        v4 = _ranges(cidrs, _V4_LEN)
        v6 = _ranges(cidrs, _V6_LEN)
        self._v4_first = array("I", (f for f, _ in v4))
        self._v4_last = array("I", (last for _, last in v4))
        self._v6_first = [f for f, _ in v6]
        self._v6_last = [last for _, last in v6]

    def contains(self, packed: bytes) -> bool:
        """True when the 4- or 16-byte address lies in one of the CIDRs."""
        value = int.from_bytes(packed, "big")
        if len(packed) == _V4_LEN:
            first, last = self._v4_first, self._v4_last
        elif len(packed) == _V6_LEN:
            first, last = self._v6_first, self._v6_last  # type: ignore[assignment]
        else:
            return False
        index = bisect_right(first, value) - 1
        return index >= 0 and value <= last[index]


class IpMatcher:
    """A rule's ``ip`` / ``source`` condition: any address in any of the sets."""

    __slots__ = ("_sets",)

    def __init__(self, sets: Sequence[IpSet]) -> None:
        self._sets = tuple(s for s in sets if s.size)

    def matches(self, addresses: Iterable[bytes]) -> bool:
        return any(s.contains(a) for a in addresses for s in self._sets)


# --------------------------------------------------------------------------
# geo lists


class GeoSource(Protocol):
    """Where ``geosite:`` / ``geoip:`` / ``ext:`` lists come from (``app/geodata.py``).

    ``path`` is the JSON location of the entry, for the ConfigError raised when
    the file or the list is missing or broken. Implementations return shared,
    cached sets.
    """

    def domain_set(self, ref: GeoSiteRef, path: str) -> DomainSet: ...

    def ip_set(self, ref: GeoIpRef, path: str) -> IpSet: ...


def build_domain_matcher(
    entries: Iterable[DomainEntry], geo: GeoSource, base: str
) -> DomainMatcher:
    """Compile a list of domain entries (literals + geo refs) at ``base`` (JSON path)."""
    literals: list[DomainRule] = []
    sets: list[DomainSet] = []
    for entry in entries:
        if isinstance(entry, GeoSiteRef):
            sets.append(geo.domain_set(entry, _join(base, entry.key)))
        else:
            literals.append(entry)
    return DomainMatcher([DomainSet(literals), *sets])


def build_ip_matcher(entries: Iterable[IpEntry], geo: GeoSource, base: str) -> IpMatcher:
    """Compile a list of IP entries (CIDRs + geo refs): all plain CIDRs form one set."""
    cidrs: list[Cidr] = []
    sets: list[IpSet] = []
    for entry in entries:
        if isinstance(entry, GeoIpRef):
            sets.append(geo.ip_set(entry, _join(base, entry.key)))
        else:
            cidrs.append(entry)
    return IpMatcher([IpSet(cidrs), *sets])


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


# --------------------------------------------------------------------------
# rules and the router


@dataclass(slots=True, kw_only=True)
class RoutingContext:
    """What the router may look at (4.34 ``routing.Context``).

    ``target_ip`` / ``source_ip`` are packed (4 or 16 bytes) or None when the
    address is a domain or unknown; ``target_domain`` is "" for an IP target.
    ``protocol`` is the sniffed protocol (``http1``, ``tls``, ``bittorrent``).
    ``skip_dns`` marks lookups of the DNS component itself (never resolved).
    """

    inbound_tag: str = ""
    network: str = "tcp"
    target_domain: str = ""
    target_ip: bytes | None = None
    target_port: int = 0
    source_ip: bytes | None = None
    source_port: int = 0
    user: str = ""
    protocol: str = ""
    skip_dns: bool = False
    #: Request attributes (plain HTTP through the HTTP inbound), else None.
    attributes: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """The decision: ``tag`` of the outbound, or None for the default outbound.

    ``rule`` is the index of the matching rule (None: no rule matched);
    ``balancer`` names the balancer that picked ``tag``, if any.
    """

    tag: str | None
    rule: int | None = None
    balancer: str | None = None


@dataclass(frozen=True, slots=True)
class NeedIps:
    """Resolve ``domain`` (A and AAAA) and call :meth:`Router.route` again with them."""

    domain: str


class _NeedIps(Exception):
    pass


class _Rule:
    """One compiled rule; ``matches`` checks conditions in 4.34's order."""

    __slots__ = (
        "attrs",
        "balancer",
        "domains",
        "inbound_tags",
        "ips",
        "networks",
        "ports",
        "protocols",
        "source_ips",
        "source_ports",
        "tag",
        "users",
    )

    def __init__(self, config: RoutingRuleConfig, geo: GeoSource, path: str) -> None:
        self.tag = config.target
        self.balancer = config.targets_balancer
        entries = config.all_domains
        self.domains = build_domain_matcher(entries, geo, path) if entries else None
        if self.domains is not None and self.domains.empty:
            # 4.34 flattens the lists and, finding no domain, drops the condition (the
            # rule then matches more, or has no effective field): refused instead.
            raise ConfigError(
                f"{path}.domain",
                "the domain lists of this rule have no entries (V2Ray 4.34 would drop the "
                "condition); check the list names and @attributes",
            )
        # 4.34 drops empty strings from these lists but keeps the condition.
        self.users = _non_empty(config.user)
        self.inbound_tags = _non_empty(config.inbound_tag)
        self.ports = config.port
        self.source_ports = config.source_port
        self.networks = frozenset(config.network) if config.network is not None else None
        self.ips = build_ip_matcher(config.ip, geo, path) if config.ip is not None else None
        self.source_ips = (
            build_ip_matcher(config.source, geo, path) if config.source is not None else None
        )
        self.protocols = _non_empty(config.protocol)
        self.attrs = compile_attrs(config.attrs) if config.attrs else None

    def matches(self, ctx: RoutingContext, ips: tuple[bytes, ...] | None) -> bool:
        """``ips``: the target's IPs, or None when they must be asked for (raises _NeedIps)."""
        if self.domains is not None and not self.domains.matches(ctx.target_domain):
            return False
        if self.users is not None and (not ctx.user or ctx.user not in self.users):
            return False
        if self.inbound_tags is not None and (
            not ctx.inbound_tag or ctx.inbound_tag not in self.inbound_tags
        ):
            return False
        if self.ports is not None and not _in_ports(ctx.target_port, self.ports):
            return False
        if self.source_ports is not None and not _in_ports(ctx.source_port, self.source_ports):
            return False
        if self.networks is not None and ctx.network not in self.networks:
            return False
        if self.ips is not None:
            if ips is None:
                raise _NeedIps
            if not self.ips.matches(ips):
                return False
        if self.source_ips is not None and (
            ctx.source_ip is None or not self.source_ips.matches((ctx.source_ip,))
        ):
            return False
        if self.protocols is not None:
            protocol = ctx.protocol
            if not protocol or not any(protocol.startswith(p) for p in self.protocols):
                return False
        return self.attrs is None or self.attrs.matches(ctx.attributes)


def _non_empty(values: tuple[str, ...] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(v for v in values if v)


def _in_ports(port: int, spans: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= port <= last for first, last in spans)


class Router:
    """Rules in order (first match wins) and balancers; build with :func:`build_router`."""

    def __init__(
        self,
        *,
        strategy: DomainStrategy,
        rules: Sequence[_Rule],
        balancers: dict[str, tuple[str, ...]],
    ) -> None:
        self.strategy = strategy
        self._rules = tuple(rules)
        self._balancers = dict(balancers)

    @property
    def rule_count(self) -> int:
        return len(self._rules)

    @property
    def has_balancers(self) -> bool:
        """True when some rule targets a balancer (only then are outbound tags needed)."""
        return any(rule.balancer for rule in self._rules)

    def route(
        self,
        ctx: RoutingContext,
        *,
        outbound_tags: Sequence[str] = (),
        rng: Callable[[int], bytes] | None = None,
        resolved: tuple[bytes, ...] | None = None,
    ) -> Route | NeedIps:
        """Pick the outbound for ``ctx``.

        Args:
            ctx: the connection.
            outbound_tags: tags of the outbounds that exist now (balancer candidates).
            rng: random bytes, for the balancer's pick; required when a rule
                targets a balancer.
            resolved: the target domain's IPs after a :class:`NeedIps` answer
                (empty: the lookup failed or found nothing).

        Returns:
            :class:`Route` (tag None: use the default outbound), or :class:`NeedIps`.
        """
        found = self._match(ctx, resolved)
        if isinstance(found, NeedIps) or found is None:
            return found if found is not None else Route(None)
        rule = self._rules[found]
        if not rule.balancer:
            return Route(rule.tag, found)
        selectors = self._balancers[rule.tag]
        candidates = [t for t in outbound_tags if t and t.startswith(selectors)]
        if not candidates:
            return Route(None, found, rule.tag)
        if rng is None:
            raise ValueError("a balancer rule matched but no rng was given")
        pick = int.from_bytes(rng(_RNG_BYTES), "big") % len(candidates)
        return Route(candidates[pick], found, rule.tag)

    def _match(
        self, ctx: RoutingContext, resolved: tuple[bytes, ...] | None
    ) -> int | NeedIps | None:
        target_ips: tuple[bytes, ...] = (ctx.target_ip,) if ctx.target_ip is not None else ()
        domain = ctx.target_domain
        resolvable = bool(domain) and ctx.target_ip is None and not ctx.skip_dns
        strategy = self.strategy
        if strategy is DomainStrategy.IP_ON_DEMAND and resolvable:
            try:
                return self._first(ctx, resolved)
            except _NeedIps:
                return NeedIps(domain)
        first = self._first(ctx, target_ips)
        if first is not None or strategy is not DomainStrategy.IP_IF_NON_MATCH or not resolvable:
            return first
        if resolved is None:
            return NeedIps(domain)
        return self._first(ctx, resolved)

    def _first(self, ctx: RoutingContext, ips: tuple[bytes, ...] | None) -> int | None:
        for index, rule in enumerate(self._rules):
            if rule.matches(ctx, ips):
                return index
        return None


def build_router(config: RoutingConfig, geo: GeoSource, base: str = "routing") -> Router:
    """Compile ``config`` (rules then the deprecated ``settings.rules``).

    Raises ConfigError (from ``geo``) for a missing or broken geo list.
    """
    rules = []
    for rule in config.all_rules:
        rules.append(_Rule(rule, geo, rule.path or base))
    balancers = {b.tag: b.selector for b in config.balancers}
    return Router(strategy=config.strategy, rules=rules, balancers=balancers)
