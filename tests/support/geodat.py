"""Build small geoip.dat / geosite.dat files for tests (4.34's protobuf format)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from v2py.app.geo_proto import geodata_pb2

#: Domain type names of the .dat format.
TYPES = {"plain": 0, "regexp": 1, "domain": 2, "full": 3}


def geosite_bytes(lists: Mapping[str, Sequence[str | tuple[str, Iterable[str]]]]) -> bytes:
    """``{"CN": ["domain:a.cn", ("full:ad.cn", ["ads"]), ...]}`` -> GeoSiteList bytes.

    Each entry is ``"<type>:<value>"`` (type plain/regexp/domain/full), optionally
    paired with attribute keys.
    """
    out = geodata_pb2.GeoSiteList()
    for code, entries in lists.items():
        site = out.entry.add(country_code=code)
        for entry in entries:
            text, attrs = (entry, ()) if isinstance(entry, str) else entry
            kind, _, value = text.partition(":")
            domain = site.domain.add(type=TYPES[kind], value=value)
            for key in attrs:
                domain.attribute.add(key=key, bool_value=True)
    return out.SerializeToString()


def geoip_bytes(lists: Mapping[str, Iterable[str]]) -> bytes:
    """``{"CN": ["1.0.1.0/24", "2001:db8::/32"]}`` -> GeoIPList bytes."""
    out = geodata_pb2.GeoIPList()
    for code, cidrs in lists.items():
        entry = out.entry.add(country_code=code)
        for text in cidrs:
            net = ipaddress.ip_network(text, strict=False)
            entry.cidr.add(ip=net.network_address.packed, prefix=net.prefixlen)
    return out.SerializeToString()


def write_assets(
    directory: Path,
    *,
    geosite: Mapping[str, Sequence[str | tuple[str, Iterable[str]]]] | None = None,
    geoip: Mapping[str, Iterable[str]] | None = None,
) -> Path:
    """Write geosite.dat / geoip.dat into ``directory``; returns it (for V2RAY_LOCATION_ASSET)."""
    directory.mkdir(parents=True, exist_ok=True)
    if geosite is not None:
        (directory / "geosite.dat").write_bytes(geosite_bytes(geosite))
    if geoip is not None:
        (directory / "geoip.dat").write_bytes(geoip_bytes(geoip))
    return directory
