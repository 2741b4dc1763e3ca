"""geoip.dat / geosite.dat: search path, lazy per-list loading, attributes, errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.support.geodat import geoip_bytes, geosite_bytes, write_assets
from v2py.app import geodata
from v2py.app.geodata import GeoData, asset_location, asset_search_path
from v2py.app.router import build_router
from v2py.config.routing import GeoIpRef, GeoSiteRef, RoutingConfig
from v2py.errors import ConfigError

SITES = {
    "CN": ["domain:cn", "full:www.baidu.com", "plain:qq", "regexp:^tao[a-z]+\\.com$"],
    "ADS": [("domain:ads.test", ["ads"]), ("full:track.test", ["ads", "cn"]), "domain:ok.test"],
    "OTHER": ["full:other.test"],
}
IPS = {"CN": ["1.0.1.0/24", "2400:3200::/32"], "PRIVATE": ["10.0.0.0/8"], "US": ["3.0.0.0/8"]}


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    return write_assets(tmp_path / "assets", geosite=SITES, geoip=IPS)


def env_for(directory: Path) -> dict[str, str]:
    return {"V2RAY_LOCATION_ASSET": str(directory)}


def site(geo: GeoData, code: str, attrs: tuple[str, ...] = (), file: str = "geosite.dat") -> object:
    return geo.domain_set(GeoSiteRef(file, code, attrs, "domain[0]"), "routing.rules[0].domain[0]")


def ip(geo: GeoData, code: str, file: str = "geoip.dat") -> object:
    return geo.ip_set(GeoIpRef(file, code, "ip[0]"), "routing.rules[0].ip[0]")


def packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def test_geosite_list_loaded_by_code_case_insensitively(assets: Path) -> None:
    geo = GeoData(env_for(assets))
    cn = site(geo, "cn")
    assert cn.matches("a.b.cn")  # type: ignore[attr-defined]
    assert cn.matches("www.baidu.com")  # type: ignore[attr-defined]
    assert cn.matches("xqqx.com")  # type: ignore[attr-defined]
    assert cn.matches("taobao.com")  # type: ignore[attr-defined]
    assert not cn.matches("other.test")  # type: ignore[attr-defined]


def test_geosite_attribute_filter(assets: Path) -> None:
    geo = GeoData(env_for(assets))
    ads = site(geo, "ads", ("ads",))
    assert ads.matches("x.ads.test")  # type: ignore[attr-defined]
    assert ads.matches("track.test")  # type: ignore[attr-defined]
    assert not ads.matches("ok.test")  # type: ignore[attr-defined]
    both = site(geo, "ads", ("ads", "cn"))
    assert both.matches("track.test") and not both.matches("x.ads.test")  # type: ignore[attr-defined]
    assert site(geo, "ads").matches("ok.test")  # type: ignore[attr-defined]


def test_sets_are_shared(assets: Path) -> None:
    geo = GeoData(env_for(assets))
    assert site(geo, "CN") is site(geo, "cn")
    assert ip(geo, "cn") is ip(GeoData(env_for(assets)), "CN")


def test_geoip_list(assets: Path) -> None:
    geo = GeoData(env_for(assets))
    cn = ip(geo, "CN")
    assert cn.contains(packed("1.0.1.200"))  # type: ignore[attr-defined]
    assert cn.contains(packed("2400:3200::1"))  # type: ignore[attr-defined]
    assert not cn.contains(packed("3.3.3.3"))  # type: ignore[attr-defined]


def test_private_from_the_file_wins_over_the_builtin(assets: Path) -> None:
    private = ip(GeoData(env_for(assets)), "private")
    assert private.contains(packed("10.1.1.1"))  # type: ignore[attr-defined]
    assert not private.contains(packed("127.0.0.1"))  # type: ignore[attr-defined]


def test_private_works_without_any_geoip_file(tmp_path: Path) -> None:
    geo = GeoData(env_for(tmp_path))  # an empty asset dir
    private = ip(geo, "private")
    for inside in ("127.0.0.1", "10.2.3.4", "192.168.1.1", "172.16.0.1", "::1", "fd00::1"):
        assert private.contains(packed(inside)), inside  # type: ignore[attr-defined]
    for outside in ("8.8.8.8", "1.1.1.1", "2001:4860::8888"):
        assert not private.contains(packed(outside)), outside  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        ip(geo, "cn")
    assert info.value.path == "routing.rules[0].ip[0]"
    assert "failed to open file: geoip.dat" in info.value.message


def test_missing_list_and_missing_file(assets: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        site(GeoData(env_for(assets)), "nope")
    assert str(info.value) == "routing.rules[0].domain[0]: list not found in geosite.dat: nope"
    with pytest.raises(ConfigError) as info:
        site(GeoData(env_for(tmp_path / "none")), "cn")
    assert f"{tmp_path}/none/geosite.dat does not exist" in info.value.message


@pytest.mark.parametrize(
    "content",
    [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x0b\x00", b"\x0a\x03\x0a\x01\xff"],
)
def test_broken_dat_file_is_one_config_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "geosite.dat").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        site(GeoData(env_for(tmp_path)), "cn")
    assert info.value.path == "routing.rules[0].domain[0]"
    assert "\n" not in str(info.value)


def test_broken_entry_body_and_bad_ip_length(tmp_path: Path) -> None:
    # Entry with a valid name but a truncated domain message inside.
    body = b"\x0a\x02CN" + b"\x12\x03\x08\x02\x12"
    (tmp_path / "geosite.dat").write_bytes(b"\x0a" + bytes([len(body)]) + body)
    with pytest.raises(ConfigError, match="broken|not a valid"):
        site(GeoData(env_for(tmp_path)), "cn")
    entry = b"\x0a\x02CN" + b"\x12\x05\x0a\x03\x01\x02\x03"  # a 3-byte IP
    (tmp_path / "geoip.dat").write_bytes(b"\x0a" + bytes([len(entry)]) + entry)
    with pytest.raises(ConfigError, match="unexpected IP length 3"):
        ip(GeoData(env_for(tmp_path)), "cn")


def test_regexp_in_a_list_is_checked(tmp_path: Path) -> None:
    write_assets(tmp_path, geosite={"BAD": ["regexp:a(b"]})
    with pytest.raises(ConfigError, match="invalid regexp"):
        site(GeoData(env_for(tmp_path)), "bad")


def test_ext_file_is_joined_under_the_asset_dir(assets: Path) -> None:
    (assets / "mine.dat").write_bytes(geosite_bytes({"LIST": ["full:mine.test"]}))
    (assets / "ips.dat").write_bytes(geoip_bytes({"T": ["9.9.9.0/24"]}))
    geo = GeoData(env_for(assets))
    assert site(geo, "list", file="mine.dat").matches("mine.test")  # type: ignore[attr-defined]
    assert site(geo, "list", file="/mine.dat").matches("mine.test")  # type: ignore[attr-defined]
    assert ip(geo, "t", file="ips.dat").contains(packed("9.9.9.9"))  # type: ignore[attr-defined]


def test_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert asset_search_path(
        "geoip.dat", {"v2ray.location.asset": "/a", "V2RAY_LOCATION_ASSET": "/b"}
    ) == [
        "/a/geoip.dat",
        "/usr/local/share/v2ray/geoip.dat",
        "/usr/share/v2ray/geoip.dat",
    ]
    assert asset_search_path("x.dat", {"V2RAY_LOCATION_ASSET": "/b"})[0] == "/b/x.dat"
    monkeypatch.setattr(geodata, "_program_dir", lambda: str(tmp_path))
    assert asset_search_path("geoip.dat", {})[0] == f"{tmp_path}/geoip.dat"
    path, exists = asset_location("geoip.dat", {})
    assert (path, exists) == (f"{tmp_path}/geoip.dat", False) or exists
    monkeypatch.setattr(geodata, "ASSET_DIRS", (str(tmp_path / "second"),))
    write_assets(tmp_path / "second", geoip=IPS)
    assert asset_location("geoip.dat", {}) == (f"{tmp_path}/second/geoip.dat", True)


def test_router_from_files_and_only_named_lists_decoded(
    assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from v2py.app.geo_proto import geodata_pb2

    parsed: list[bytes] = []
    original = geodata_pb2.GeoSite.ParseFromString

    def spy(self: object, data: bytes) -> object:
        parsed.append(data)
        return original(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(geodata_pb2.GeoSite, "ParseFromString", spy)
    geodata._SITE_CACHE.clear()
    cfg = RoutingConfig.model_validate(
        {
            "rules": [
                {"type": "field", "domain": ["geosite:other"], "outboundTag": "o"},
                {"type": "field", "ip": ["geoip:us", "geoip:private"], "outboundTag": "p"},
            ]
        },
        context={},
    )
    r = build_router(cfg, GeoData(env_for(assets)))
    assert len(parsed) == 1 and b"OTHER" in parsed[0]
    from v2py.app.router import Route, RoutingContext

    assert r.route(RoutingContext(target_domain="other.test")) == Route("o", 0)
    assert r.route(RoutingContext(target_ip=packed("3.1.1.1"))) == Route("p", 1)
    assert r.route(RoutingContext(target_ip=packed("10.0.0.1"))) == Route("p", 1)


def test_rule_whose_lists_are_empty_is_refused(assets: Path) -> None:
    # 4.34 would drop the condition (the rule then matches more); v2py refuses.
    cfg = RoutingConfig.model_validate(
        {
            "rules": [
                {"type": "field", "domain": ["geosite:ads@nope"], "port": 80, "outboundTag": "b"}
            ]
        },
        context={},
    ).with_paths("routing")
    with pytest.raises(ConfigError) as info:
        build_router(cfg, GeoData(env_for(assets)))
    assert info.value.path == "routing.rules[0].domain"
