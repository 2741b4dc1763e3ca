"""The pure router: every rule field and syntax, first match, balancers, domain strategies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.app.router import (
    DomainSet,
    IpSet,
    NeedIps,
    PackedNames,
    Route,
    Router,
    RoutingContext,
    build_router,
)
from v2py.config.routing import (
    Cidr,
    DomainKind,
    DomainRule,
    GeoIpRef,
    GeoSiteRef,
    RoutingConfig,
)
from v2py.errors import ConfigError


class FakeGeo:
    """Geo lists from dicts: ``sites[code]`` -> DomainRules, ``ips[code]`` -> CIDR texts."""

    def __init__(
        self,
        sites: dict[str, list[DomainRule]] | None = None,
        ips: dict[str, list[str]] | None = None,
    ) -> None:
        self.sites = sites or {}
        self.ips = ips or {}
        self.asked: list[str] = []

    def domain_set(self, ref: GeoSiteRef, path: str) -> DomainSet:
        self.asked.append(path)
        if ref.code not in self.sites:
            raise ConfigError(path, f"list not found in {ref.file}: {ref.code}")
        return DomainSet(self.sites[ref.code])

    def ip_set(self, ref: GeoIpRef, path: str) -> IpSet:
        self.asked.append(path)
        if ref.code not in self.ips:
            raise ConfigError(path, f"country not found in {ref.file}: {ref.code}")
        return IpSet(_cidr(t) for t in self.ips[ref.code])


def _cidr(text: str) -> Cidr:
    net = ipaddress.ip_network(text, strict=False)
    return Cidr(net.network_address.packed, net.prefixlen)


def router(data: dict[str, Any], geo: FakeGeo | None = None) -> Router:
    return build_router(RoutingConfig.model_validate(data, context={}), geo or FakeGeo())


def one_rule(condition: dict[str, Any], geo: FakeGeo | None = None) -> Router:
    return router({"rules": [{"type": "field", **condition, "outboundTag": "hit"}]}, geo)


def ctx(target: str = "example.com", port: int = 443, **kw: Any) -> RoutingContext:
    try:
        ip: bytes | None = ipaddress.ip_address(target).packed
        domain = ""
    except ValueError:
        ip, domain = None, target
    source = kw.pop("source", None)
    return RoutingContext(
        target_domain=domain,
        target_ip=ip,
        target_port=port,
        source_ip=ipaddress.ip_address(source).packed if source else None,
        **kw,
    )


def tag(r: Router, c: RoutingContext, **kw: Any) -> str | None:
    result = r.route(c, **kw)
    assert isinstance(result, Route), result
    return result.tag


# --------------------------------------------------------------------------
# domain syntaxes (spec: routing section 9.3; 4.34 common/strmatcher)

DOMAIN_CASES = [
    # (entry, target, matches)
    ("bal.test", "bal.test", True),
    ("bal.test", "xbal.test", True),  # plain = substring [verified on 4.34]
    ("bal.test", "sub.bal.test", True),
    ("bal.test", "bal.testx", True),
    ("bal.test", "ba.test", False),
    ("keyword:goo", "www.google.com", True),
    ("keyword:goo", "www.gle.com", False),
    ("keyword:Goo", "www.google.com", False),  # case-sensitive
    ("regexp:^a+\\.com$", "aaa.com", True),
    ("regexp:^a+\\.com$", "baaa.com", False),
    ("regexp:oo", "google.com", True),  # unanchored
    ("domain:example.org", "example.org", True),
    ("domain:example.org", "www.example.org", True),
    ("domain:example.org", "a.b.example.org", True),
    ("domain:example.org", "notexample.org", False),
    ("domain:example.org", "EXAMPLE.org", False),
    ("domain:example.org", "example.org.cn", False),
    ("domain:org", "example.org", True),
    ("full:case.test", "case.test", True),
    ("full:case.test", "Case.Test", False),
    ("full:case.test", "www.case.test", False),
    ("dotless:", "intranet", True),
    ("dotless:", "a.b", False),
    ("dotless:net", "intranet", True),
    ("dotless:net", "intra", False),
    ("GEOSITE:cn", "xGEOSITE:cnx", True),  # prefixes are case-sensitive: a keyword
]


@pytest.mark.parametrize(("entry", "target", "expected"), DOMAIN_CASES)
def test_domain_syntax(entry: str, target: str, expected: bool) -> None:
    r = one_rule({"domain": [entry]})
    assert (tag(r, ctx(target)) == "hit") is expected


def test_domain_rule_never_matches_an_ip_target() -> None:
    r = one_rule({"domain": ["regexp:."]})
    assert tag(r, ctx("1.2.3.4")) is None


def test_domain_and_domains_are_both_used() -> None:
    r = one_rule({"domain": ["full:a.test"], "domains": "full:b.test"})
    assert tag(r, ctx("a.test")) == "hit"
    assert tag(r, ctx("b.test")) == "hit"


def test_comma_string_is_split_not_trimmed() -> None:
    # 4.34 StringList: " b.test" keeps its space (a keyword that needs it).
    r = one_rule({"domain": "full:a.test, b.test"})
    assert tag(r, ctx("a.test")) == "hit"
    assert tag(r, ctx("b.test")) is None
    assert tag(r, ctx("x b.test")) == "hit"


def test_geosite_and_literals_in_one_rule() -> None:
    geo = FakeGeo(sites={"cn": [DomainRule(DomainKind.DOMAIN, "cn")]})
    r = one_rule({"domain": ["geosite:cn", "full:x.test"]}, geo)
    assert tag(r, ctx("baidu.cn")) == "hit"
    assert tag(r, ctx("x.test")) == "hit"
    assert tag(r, ctx("y.test")) is None
    assert geo.asked == ["routing.domain[0]"]


# --------------------------------------------------------------------------
# IPs (spec section 9.4)

IP_CASES = [
    (["10.0.0.0/8"], "10.1.2.3", True),
    (["10.0.0.0/8"], "11.0.0.0", False),
    (["1.2.3.4"], "1.2.3.4", True),
    (["1.2.3.4"], "1.2.3.5", False),
    (["0.0.0.0/0"], "8.8.8.8", True),
    (["0.0.0.0/0"], "::1", False),  # a prefix of 0 covers its own family only
    (["::/0"], "2001:db8::1", True),
    (["2001:db8::/32"], "2001:db8:ffff::1", True),
    (["2001:db8::/32"], "2001:db9::1", False),
    (["::1"], "::1", True),
    (["10.0.0.1/8"], "10.200.0.1", True),  # host bits are ignored
    # 4.34 misses 127.5.0.1 here (nearest-lower-entry bug); v2py matches by containment.
    (["127.0.0.0/8", "127.1.0.0/16"], "127.5.0.1", True),
    (["127.0.0.0/8", "127.1.0.0/16"], "127.1.2.3", True),
    (["1.2.3.0/24", "1.2.3.0/24"], "1.2.3.9", True),
    (["::ffff:1.2.3.4"], "1.2.3.4", True),  # v4-mapped is IPv4 (net.ParseAddress)
]


@pytest.mark.parametrize(("cidrs", "target", "expected"), IP_CASES)
def test_ip_syntax(cidrs: list[str], target: str, expected: bool) -> None:
    r = one_rule({"ip": cidrs})
    assert (tag(r, ctx(target)) == "hit") is expected


def test_ip_rule_does_not_match_a_domain_under_asis() -> None:
    r = one_rule({"ip": ["0.0.0.0/0", "::/0"]})
    assert tag(r, ctx("example.com")) is None


def test_geoip_list() -> None:
    geo = FakeGeo(ips={"CN": ["1.0.1.0/24", "2400:3200::/32"]})
    r = one_rule({"ip": ["geoip:CN", "9.9.9.9"]}, geo)
    assert tag(r, ctx("1.0.1.7")) == "hit"
    assert tag(r, ctx("2400:3200::1")) == "hit"
    assert tag(r, ctx("9.9.9.9")) == "hit"
    assert tag(r, ctx("1.0.2.7")) is None


def test_source_ip() -> None:
    r = one_rule({"source": ["192.168.0.0/16"]})
    assert tag(r, ctx(source="192.168.1.1")) == "hit"
    assert tag(r, ctx(source="10.0.0.1")) is None
    assert tag(r, ctx()) is None  # unknown source


# --------------------------------------------------------------------------
# the other fields


@pytest.mark.parametrize(
    ("ports", "port", "expected"),
    [
        (80, 80, True),
        (80, 81, False),
        ("80", 80, True),
        ("1000-2000", 1500, True),
        ("1000-2000", 2001, False),
        ("53,443,1000-2000", 443, True),
        ("53, 443 ,1000-2000", 1000, True),
        ("53,443", 80, False),
        (0, 0, False),  # 4.34: an empty port list never matches
    ],
)
def test_port(ports: object, port: int, expected: bool) -> None:
    r = one_rule({"port": ports})
    assert (tag(r, ctx(port=port)) == "hit") is expected


def test_source_port() -> None:
    r = one_rule({"sourcePort": "5000-6000"})
    assert tag(r, ctx(source_port=5500)) == "hit"
    assert tag(r, ctx(source_port=4000)) is None


@pytest.mark.parametrize(
    ("networks", "network", "expected"),
    [
        ("tcp", "tcp", True),
        ("tcp", "udp", False),
        ("tcp,udp", "udp", True),
        (["udp"], "udp", True),
        ("TCP", "tcp", True),
    ],
)
def test_network(networks: object, network: str, expected: bool) -> None:
    r = one_rule({"network": networks})
    assert (tag(r, ctx(network=network)) == "hit") is expected


def test_user_is_exact_and_case_sensitive() -> None:
    r = one_rule({"user": ["Alice@example.com"]})
    assert tag(r, ctx(user="Alice@example.com")) == "hit"
    assert tag(r, ctx(user="alice@example.com")) is None
    assert tag(r, ctx()) is None


def test_inbound_tag() -> None:
    r = one_rule({"inboundTag": ["socks-in", "api"]})
    assert tag(r, ctx(inbound_tag="api")) == "hit"
    assert tag(r, ctx(inbound_tag="other")) is None
    assert tag(r, ctx(inbound_tag="")) is None


def test_empty_strings_are_dropped_but_the_condition_stays() -> None:
    r = one_rule({"inboundTag": [""]})
    assert tag(r, ctx(inbound_tag="")) is None
    assert tag(r, ctx(inbound_tag="x")) is None


@pytest.mark.parametrize(
    ("protocols", "sniffed", "expected"),
    [
        (["http"], "http1", True),  # prefix match
        (["tls"], "tls", True),
        (["bittorrent"], "bittorrent", True),
        (["tls"], "http1", False),
        (["http"], "", False),  # not sniffed
    ],
)
def test_protocol(protocols: list[str], sniffed: str, expected: bool) -> None:
    r = one_rule({"protocol": protocols})
    assert (tag(r, ctx(protocol=sniffed)) == "hit") is expected


def test_all_conditions_must_match() -> None:
    r = one_rule({"domain": ["domain:a.test"], "port": "443", "network": "tcp"})
    assert tag(r, ctx("www.a.test", 443)) == "hit"
    assert tag(r, ctx("www.a.test", 80)) is None
    assert tag(r, ctx("www.a.test", 443, network="udp")) is None


# --------------------------------------------------------------------------
# order, targets, balancers


def test_first_matching_rule_wins_and_no_match_is_default() -> None:
    r = router(
        {
            "rules": [
                {"type": "field", "domain": ["full:a.test"], "outboundTag": "one"},
                {"type": "FIELD", "domain": ["a.test"], "outboundTag": "two"},
            ]
        }
    )
    assert r.route(ctx("a.test")) == Route("one", 0)
    assert r.route(ctx("xa.test")) == Route("two", 1)
    assert r.route(ctx("b.test")) == Route(None)


def test_outbound_tag_wins_over_balancer_tag() -> None:
    r = router(
        {
            "balancers": [{"tag": "b", "selector": ["p-"]}],
            "rules": [{"type": "field", "port": 1, "outboundTag": "o", "balancerTag": "b"}],
        }
    )
    assert tag(r, ctx(port=1), outbound_tags=["p-1"]) == "o"


def _counter_rng() -> Any:
    state = {"n": 0}

    def rng(n: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(n, "big")

    return rng


def test_balancer_picks_among_prefix_matches() -> None:
    r = router(
        {
            "balancers": [{"tag": "b", "selector": "bal-,x-"}],
            "rules": [{"type": "field", "port": "1", "balancerTag": "b"}],
        }
    )
    outbounds = ["direct", "bal", "bal-1", "bal-2", "x-9", ""]
    rng = _counter_rng()
    seen = {tag(r, ctx(port=1), outbound_tags=outbounds, rng=rng) for _ in range(30)}
    assert seen == {"bal-1", "bal-2", "x-9"}
    result = r.route(ctx(port=1), outbound_tags=["direct"], rng=rng)
    assert result == Route(None, 0, "b")  # no candidate: default outbound


# --------------------------------------------------------------------------
# domain strategies (spec section 9.1)


def _strategy_router(strategy: str) -> Router:
    return router(
        {
            "domainStrategy": strategy,
            "rules": [
                {"type": "field", "domain": ["full:named.test"], "outboundTag": "by-name"},
                {"type": "field", "ip": ["10.0.0.0/8"], "outboundTag": "by-ip"},
                {"type": "field", "port": "443", "outboundTag": "by-port"},
            ],
        }
    )


@pytest.mark.parametrize("strategy", ["AsIs", "AlwaysIP", "always_ip", ""])
def test_asis_and_alwaysip_never_resolve(strategy: str) -> None:
    r = _strategy_router(strategy)
    assert tag(r, ctx("other.test", 80)) is None
    assert tag(r, ctx("10.1.1.1", 80)) == "by-ip"


@pytest.mark.parametrize("strategy", ["IPIfNonMatch", "ip_if_non_match", "ip-if-non-match"])
def test_ip_if_non_match(strategy: str) -> None:
    r = _strategy_router(strategy)
    # Something matched without DNS: no lookup.
    assert tag(r, ctx("named.test", 80)) == "by-name"
    assert tag(r, ctx("other.test", 443)) == "by-port"
    # Nothing matched: resolve, then run every rule again.
    assert r.route(ctx("other.test", 80)) == NeedIps("other.test")
    assert r.route(ctx("other.test", 80), resolved=(bytes([10, 0, 0, 5]),)) == Route("by-ip", 1)
    assert r.route(ctx("other.test", 80), resolved=()) == Route(None)
    # IP targets and DNS's own lookups are never resolved.
    assert r.route(ctx("8.8.8.8", 80)) == Route(None)
    assert r.route(ctx("other.test", 80, skip_dns=True)) == Route(None)


def test_ip_if_non_match_first_pass_ignores_ips() -> None:
    r = router(
        {
            "domainStrategy": "IPIfNonMatch",
            "rules": [
                {"type": "field", "ip": ["10.0.0.0/8"], "outboundTag": "by-ip"},
                {"type": "field", "port": "80", "outboundTag": "by-port"},
            ],
        }
    )
    # The port rule matches in the first pass, before any IP is known.
    assert r.route(ctx("x.test", 80), resolved=(bytes([10, 0, 0, 1]),)) == Route("by-port", 1)


@pytest.mark.parametrize("strategy", ["IPOnDemand", "ip_on_demand", "ip-on-demand"])
def test_ip_on_demand_resolves_when_an_ip_condition_is_reached(strategy: str) -> None:
    r = _strategy_router(strategy)
    assert tag(r, ctx("named.test", 80)) == "by-name"  # decided before the IP rule
    assert r.route(ctx("other.test", 80)) == NeedIps("other.test")
    assert r.route(ctx("other.test", 80), resolved=(bytes([10, 9, 9, 9]),)) == Route("by-ip", 1)
    assert r.route(ctx("other.test", 443), resolved=()) == Route("by-port", 2)


def test_ip_on_demand_skips_dns_when_earlier_conditions_fail() -> None:
    r = router(
        {
            "domainStrategy": "IPOnDemand",
            "rules": [
                {"type": "field", "port": "22", "ip": ["10.0.0.0/8"], "outboundTag": "ssh"},
            ],
        }
    )
    assert r.route(ctx("x.test", 80)) == Route(None)  # port fails first: no lookup
    assert r.route(ctx("x.test", 22)) == NeedIps("x.test")


# --------------------------------------------------------------------------
# the fast matchers agree with naive references


def _naive_domain(rules: list[DomainRule], domain: str) -> bool:
    import re

    for rule in rules:
        v = rule.value
        if rule.kind is DomainKind.FULL and domain == v:
            return True
        if rule.kind is DomainKind.PLAIN and v in domain:
            return True
        if rule.kind is DomainKind.DOMAIN and (
            domain == v or (domain.endswith(v) and domain[-len(v) - 1] == ".")
        ):
            return True
        if rule.kind is DomainKind.REGEX and re.search(v, domain):
            return True
    return False


_labels = st.text(alphabet="abc.", min_size=1, max_size=8)
_rules = st.lists(
    st.builds(
        DomainRule,
        st.sampled_from([DomainKind.FULL, DomainKind.PLAIN, DomainKind.DOMAIN]),
        _labels,
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_rules, st.lists(_labels, min_size=1, max_size=10))
def test_domain_set_agrees_with_naive(rules: list[DomainRule], targets: list[str]) -> None:
    compiled = DomainSet(rules)
    for target in targets:
        assert compiled.matches(target) == _naive_domain(rules, target), target


_v4 = st.integers(0, 2**32 - 1)
_cidrs4 = st.lists(st.tuples(_v4, st.integers(0, 32)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_cidrs4, st.lists(_v4, min_size=1, max_size=10))
def test_ip_set_agrees_with_ipaddress(cidrs: list[tuple[int, int]], addresses: list[int]) -> None:
    nets = [ipaddress.ip_network((a, p), strict=False) for a, p in cidrs]
    compiled = IpSet(Cidr(n.network_address.packed, n.prefixlen) for n in nets)
    for value in addresses:
        address = ipaddress.IPv4Address(value)
        assert compiled.contains(address.packed) == any(address in n for n in nets)


_v6 = st.integers(0, 2**128 - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_v6, st.integers(0, 128)), max_size=8), st.lists(_v6, max_size=8))
def test_ip_set_agrees_with_ipaddress_v6(
    cidrs: list[tuple[int, int]], addresses: list[int]
) -> None:
    nets = [ipaddress.ip_network((a, p), strict=False) for a, p in cidrs]
    compiled = IpSet(Cidr(n.network_address.packed, n.prefixlen) for n in nets)
    for value in addresses:
        address = ipaddress.IPv6Address(value)
        assert compiled.contains(address.packed) == any(address in n for n in nets)
    for net in nets:  # the ends of every network are inside
        assert compiled.contains(net.network_address.packed)
        assert compiled.contains(net.broadcast_address.packed)


def test_large_keyword_list_compiles_and_matches() -> None:
    words = [f"kw{i}x" for i in range(20000)]
    compiled = DomainSet(DomainRule(DomainKind.PLAIN, w) for w in words)
    assert compiled.matches("a.kw19999x.com")
    assert compiled.matches("kw0x")
    assert not compiled.matches("kw20000y.com")


@settings(max_examples=300, deadline=None)
@given(_rules, st.lists(_labels, min_size=1, max_size=10))
def test_packed_domain_set_agrees_with_naive(rules: list[DomainRule], targets: list[str]) -> None:
    """The same with every name set packed (big geosite lists are)."""
    from v2py.app import router

    saved, router.PACKED_NAMES_MIN = router.PACKED_NAMES_MIN, 0
    try:
        compiled = DomainSet(rules)
    finally:
        router.PACKED_NAMES_MIN = saved
    assert not rules or not isinstance(compiled._full, frozenset)
    for target in targets:
        assert compiled.matches(target) == _naive_domain(rules, target), target


@settings(max_examples=300, deadline=None)
@given(
    st.sets(st.text(max_size=12)),
    st.lists(st.text(max_size=12), max_size=10),
)
def test_packed_names_is_a_set(names: set[str], others: list[str]) -> None:
    packed = PackedNames(names)
    assert len(packed) == len(names) and bool(packed) == bool(names)
    assert set(packed) == names
    for name in [*names, *others]:
        assert (name in packed) == (name in names)
    assert 7 not in packed


def test_packed_names_confirm_a_hash_hit_by_the_name() -> None:
    names = PackedNames(f"site{i}.example" for i in range(5000))
    assert "site4999.example" in names and "site5000.example" not in names
    # a colliding hash alone is not a match: the stored name is compared
    probe = "\udcff.lone-surrogate"
    assert probe not in names and probe in PackedNames([probe])
