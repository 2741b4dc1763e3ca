"""``routing`` / ``dns`` JSON -> models, and bad input -> one ConfigError line with its path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from v2py.config.base import to_config_error, unknown_key_warnings
from v2py.config.routing import (
    Cidr,
    DnsConfig,
    DomainKind,
    DomainRule,
    DomainStrategy,
    GeoIpRef,
    GeoSiteRef,
    RoutingConfig,
)
from v2py.errors import ConfigError


def routing(data: Any) -> RoutingConfig:
    try:
        return RoutingConfig.model_validate(data, context={})
    except ValidationError as exc:
        raise to_config_error(exc, "routing") from None


def dns(data: Any) -> DnsConfig:
    try:
        return DnsConfig.model_validate(data, context={})
    except ValidationError as exc:
        raise to_config_error(exc, "dns") from None


def rule(**fields: Any) -> dict[str, Any]:
    return {"rules": [{"type": "field", "outboundTag": "x", **fields}]}


def test_domain_entries_parse() -> None:
    cfg = routing(
        rule(
            domain=[
                "plain",
                "keyword:kw",
                "regexp:^r$",
                "domain:d.test",
                "full:f.test",
                "dotless:",
                "dotless:in",
                "geosite:cn",
                "geosite:category-ads-all@ads@ CN ",
                "ext:my.dat:list",
                "ext-domain:my.dat:list@a",
            ]
        )
    )
    assert cfg.rules[0].all_domains == (
        DomainRule(DomainKind.PLAIN, "plain"),
        DomainRule(DomainKind.PLAIN, "kw"),
        DomainRule(DomainKind.REGEX, "^r$"),
        DomainRule(DomainKind.DOMAIN, "d.test"),
        DomainRule(DomainKind.FULL, "f.test"),
        DomainRule(DomainKind.REGEX, "^[^.]*$"),
        DomainRule(DomainKind.REGEX, "^[^.]*in[^.]*$"),
        GeoSiteRef("geosite.dat", "cn", (), "domain[7]"),
        GeoSiteRef("geosite.dat", "category-ads-all", ("ads", "cn"), "domain[8]"),
        GeoSiteRef("my.dat", "list", (), "domain[9]"),
        GeoSiteRef("my.dat", "list", ("a",), "domain[10]"),
    )


def test_ip_entries_parse() -> None:
    cfg = routing(rule(ip=["1.2.3.4", "10.0.0.0/8", "::1", "geoip:cn", "ext:x.dat:tag"]))
    assert cfg.rules[0].ip == (
        Cidr(bytes([1, 2, 3, 4]), 32),
        Cidr(bytes([10, 0, 0, 0]), 8),
        Cidr(bytes(15) + b"\x01", 128),
        GeoIpRef("geoip.dat", "cn", "ip[3]"),
        GeoIpRef("x.dat", "tag", "ip[4]"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("AsIs", DomainStrategy.AS_IS),
        ("IPIfNonMatch", DomainStrategy.IP_IF_NON_MATCH),
        ("IPOnDemand", DomainStrategy.IP_ON_DEMAND),
        ("ipondemand", DomainStrategy.IP_ON_DEMAND),
        ("AlwaysIP", DomainStrategy.USE_IP),
        ("always-ip", DomainStrategy.USE_IP),
    ],
)
def test_domain_strategy_spellings(value: str, expected: DomainStrategy) -> None:
    assert routing({"domainStrategy": value}).strategy is expected


def test_legacy_settings_rules_are_appended() -> None:
    cfg = routing(
        {
            "rules": [{"type": "field", "port": 1, "outboundTag": "a"}],
            "settings": {
                "domainStrategy": "IPOnDemand",
                "rules": [{"type": "field", "port": 2, "outboundTag": "b"}],
            },
        }
    )
    assert [r.outbound_tag for r in cfg.all_rules] == ["a", "b"]
    assert cfg.strategy is DomainStrategy.IP_ON_DEMAND
    cfg = routing({"domainStrategy": "AsIs", "settings": {"domainStrategy": "IPOnDemand"}})
    assert cfg.strategy is DomainStrategy.AS_IS


def test_unknown_rule_field_warns() -> None:
    # 4.34 ignores unknown keys of a rule (Go JSON); v2py warns with the path.
    cfg = routing(rule(port=80, domian=["x"]))
    assert unknown_key_warnings(cfg, "routing") == ["routing.rules[0].domian: unknown key, ignored"]


BAD = [
    # (routing JSON, path, message fragment)
    ({"rules": [{"outboundTag": "x", "port": 1}]}, "routing.rules[0].type", "not a rule type"),
    ({"rules": [{"type": "chain", "outboundTag": "x", "port": 1}]}, "routing.rules[0].type", ""),
    ({"rules": [{"type": "field", "port": 1}]}, "routing.rules[0].outboundTag", "missing"),
    ({"rules": [{"type": "field", "outboundTag": "x"}]}, "routing.rules[0]", "no effective"),
    (rule(domian=["x"]), "routing.rules[0]", "no effective fields"),
    (rule(domain=["regexp:a(b"]), "routing.rules[0].domain[0]", "invalid regexp"),
    (rule(domain=["regexp:[[:alpha:]]"]), "routing.rules[0].domain[0]", "POSIX"),
    (rule(domain=["regexp:\\pL"]), "routing.rules[0].domain[0]", "Unicode"),
    (rule(domain=["ok", "regexp:"]), "routing.rules[0].domain[1]", "empty value"),
    (rule(domain=["full:"]), "routing.rules[0].domain[0]", "empty value"),
    (rule(domain=["geosite:"]), "routing.rules[0].domain[0]", "empty list name"),
    (rule(domain=["ext:only"]), "routing.rules[0].domain[0]", "ext:FILE:NAME"),
    (rule(domain=["dotless:a.b"]), "routing.rules[0].domain[0]", "must not contain a dot"),
    (rule(domain=[""]), "routing.rules[0].domain[0]", "empty domain"),
    (rule(domain=[1]), "routing.rules[0].domain[0]", "not a string"),
    (rule(domain=5), "routing.rules[0].domain", "not a list"),
    (rule(ip=["example.com"]), "routing.rules[0].ip[0]", "domains are not allowed"),
    (rule(ip=["1.2.3.4/33"]), "routing.rules[0].ip[0]", "too long"),
    (rule(ip=["::1/129"]), "routing.rules[0].ip[0]", "too long"),
    (rule(ip=["1.2.3.4/x"]), "routing.rules[0].ip[0]", "network mask"),
    (rule(ip=["geoip:"]), "routing.rules[0].ip[0]", "empty country"),
    (rule(ip=["ext:a.dat:"]), "routing.rules[0].ip[0]", "ext:FILE:CC"),
    (rule(source=["x"]), "routing.rules[0].source[0]", "not an IP"),
    (rule(port=[80, 443]), "routing.rules[0].port", "JSON list is not allowed"),
    (rule(port="80-x"), "routing.rules[0].port", "not a port list"),
    (rule(port="70000"), "routing.rules[0].port", "out of range"),
    (rule(port=70000), "routing.rules[0].port", "out of range"),
    (rule(port="90-80"), "routing.rules[0].port", "empty range"),
    (rule(sourcePort=True), "routing.rules[0].sourcePort", "not a port list"),
    (rule(network="tcp, udp"), "routing.rules[0].network[1]", "does not trim"),
    (rule(network="unix"), "routing.rules[0].network[0]", 'not "tcp"'),
    (rule(attrs="attrs[':method'] =="), "routing.rules[0].attrs", "not a valid expression"),
    (rule(attrs="1 < 2 < 3"), "routing.rules[0].attrs", "chained comparisons"),
    (rule(attrs="attrs.__class__"), "routing.rules[0].attrs", "Attribute is not supported"),
    (rule(attrs="attrs.keys()"), "routing.rules[0].attrs", "'keys' is not supported"),
    (rule(attrs="open('/etc/passwd')"), "routing.rules[0].attrs", "'open' is not supported"),
    (rule(attrs="x == 1"), "routing.rules[0].attrs", "unknown name 'x'"),
    (rule(attrs="attrs[':path'][1:]"), "routing.rules[0].attrs", "slices"),
    (rule(attrs="len(attrs) == True"), "routing.rules[0].attrs", "True or False"),
    (rule(attrs="attrs['a'] + 'b' == 'c'"), "routing.rules[0].attrs", "BinOp"),
    ({"domainStrategy": "bogus"}, "routing.domainStrategy", "not a domain strategy"),
    ({"balancers": [{"selector": ["a"]}]}, "routing.balancers[0].tag", "empty balancer tag"),
    ({"balancers": [{"tag": "b", "selector": []}]}, "routing.balancers[0].selector", "empty"),
    (
        {"rules": [{"type": "field", "port": 1, "balancerTag": "nope"}]},
        "routing.rules[0].balancerTag",
        'balancer "nope" not found',
    ),
    (
        {"settings": {"rules": [{"type": "field", "port": 1, "balancerTag": "nope"}]}},
        "routing.settings.rules[0].balancerTag",
        "not found",
    ),
]


@pytest.mark.parametrize(("data", "path", "fragment"), BAD)
def test_bad_routing(data: Any, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        routing(data)
    assert info.value.path == path
    assert fragment in info.value.message
    assert "\n" not in str(info.value)


def test_dns_config() -> None:
    cfg = dns(
        {
            "servers": [
                "1.1.1.1",
                {
                    "address": "127.0.0.1",
                    "port": 5353,
                    "domains": ["geosite:cn", "domain:x.test"],
                    "expectIps": ["geoip:cn"],
                },
                "localhost",
            ],
            "hosts": {
                "plain.test": "10.0.0.1",
                "domain:sub.test": "::1",
                "keyword:kw": "other.test",
            },
            "clientIp": "1.2.3.4",
            "tag": "dns-out",
        }
    )
    assert [s.address for s in cfg.servers] == ["1.1.1.1", "127.0.0.1", "localhost"]
    assert [s.effective_port for s in cfg.servers] == [53, 5353, 53]
    assert cfg.servers[1].domains[1] == DomainRule(DomainKind.DOMAIN, "x.test")
    hosts = {h.match: (h.ip, h.domain) for h in cfg.hosts}
    assert hosts[DomainRule(DomainKind.FULL, "plain.test")] == ("10.0.0.1", None)  # plain = full
    assert hosts[DomainRule(DomainKind.DOMAIN, "sub.test")] == ("::1", None)
    assert hosts[DomainRule(DomainKind.PLAIN, "kw")] == (None, "other.test")
    assert cfg.client_ip == "1.2.3.4"
    assert cfg.tag == "dns-out"


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("quic+local://dns.test", "dns.test", 784),
        ("QUIC+LOCAL://dns.test:853", "dns.test", 853),
        ("quic+local://[::1]:784", "::1", 784),
        ("quic+local://127.0.0.1", "127.0.0.1", 784),
        # 4.34 ignores a path, query and fragment (url.Parse takes them; nothing reads them)
        ("quic+local://dns.test/dns-query?x=1#f", "dns.test", 784),
    ],
)
def test_doq_name_servers(address: str, host: str, port: int) -> None:
    cfg = dns({"servers": [address, {"address": address, "port": 53}]})
    for server in cfg.servers:
        assert server.address == address and server.doh is None
        doq = server.doq
        assert doq is not None and (doq.host, doq.port) == (host, port)
        assert doq.name == "quic+local://" + address.partition("://")[2]


BAD_DNS = [
    ({"servers": ["tcp+local://1.1.1.1"]}, "dns.servers[0].address", "not supported"),
    ({"servers": ["https://"]}, "dns.servers[0].address", "not a valid DoH URL"),
    ({"servers": ["quic://dns.adguard.com"]}, "dns.servers[0].address", "not supported"),
    ({"servers": ["quic+local://"]}, "dns.servers[0].address", "not a valid DoQ URL: no valid"),
    ({"servers": ["quic+local://:784"]}, "dns.servers[0].address", "no valid host"),
    ({"servers": ["quic+local://h:abc"]}, "dns.servers[0].address", "bad port"),
    ({"servers": ["quic+local://h:0"]}, "dns.servers[0].address", "bad port"),
    ({"servers": ["quic+local://h:70000"]}, "dns.servers[0].address", "bad port"),
    (
        {"servers": ["1.1.1.1", {"address": "quic+local://u:p@h"}]},
        "dns.servers[1].address",
        "user info",
    ),
    ({"servers": ["quic+local://a,b"]}, "dns.servers[0].address", "no valid host"),
    ({"servers": ["quic+local://[::1"]}, "dns.servers[0].address", "bad IPv6 host"),
    ({"servers": ["quic+local://h/%zz"]}, "dns.servers[0].address", "bad %-escape after the host"),
    ({"servers": ["dns google"]}, "dns.servers[0].address", "use an IP"),
    ({"servers": [{"port": 53}]}, "dns.servers[0].address", "missing"),
    (
        {"servers": [{"address": "1.1.1.1", "domains": ["regexp:("]}]},
        "dns.servers[0].domains[0]",
        "regexp",
    ),
    (
        {"servers": [{"address": "1.1.1.1", "expectIps": ["x"]}]},
        "dns.servers[0].expectIps[0]",
        "IP",
    ),
    ({"hosts": {"full:": "1.1.1.1"}}, "dns.hosts.full:", "empty value"),
    ({"hosts": {"a.test": 5}}, "dns.hosts.a.test", "not an address"),
    ({"clientIp": "example.com"}, "dns.clientIp", "not an IP"),
]


@pytest.mark.parametrize(("data", "path", "fragment"), BAD_DNS)
def test_bad_dns(data: Any, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        dns(data)
    assert info.value.path == path
    assert fragment in info.value.message
