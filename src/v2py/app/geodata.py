"""geoip.dat / geosite.dat: find, read and cache the lists a config names
(v2ray-core 4.34 ``infra/conf/router.go`` ``loadIP``/``loadSite``/``loadGeositeWithAttr``,
``common/platform/others.go`` ``GetAssetLocation``).

File format: a serialized ``v2ray.core.app.router.GeoIPList`` / ``GeoSiteList``
(``geo_proto/geodata.proto``). 4.34 decodes the whole file and keeps every list
in memory; v2py walks the top-level entries by their protobuf framing, decodes
with protobuf only the entries the config names, and turns them into compiled
:class:`~v2py.app.router.DomainSet` / :class:`~v2py.app.router.IpSet` objects
shared by every rule (and by the DNS settings) naming the same list. The file
is memory-mapped while it is read and closed afterwards.

Search path, as 4.34 on Linux: ``$v2ray.location.asset`` or
``$V2RAY_LOCATION_ASSET`` (else the directory of the running program), then
``/usr/local/share/v2ray``, then ``/usr/share/v2ray``; the first existing file
wins. ``ext:FILE:NAME`` joins FILE under the same directories, even when FILE
is absolute.

``geoip:private`` works without any geoip.dat: when no geoip.dat exists at
all, the fixed private and reserved ranges of :data:`PRIVATE_CIDRS` are used
(4.34 itself fails without the file; Debian ships none).
"""

from __future__ import annotations

import gc
import ipaddress
import mmap
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from v2py.app.router import DomainSet, IpSet
from v2py.config.routing import (
    GEOIP_FILE,
    Cidr,
    DomainKind,
    GeoIpRef,
    GeoSiteRef,
    check_regexp,
)
from v2py.errors import ConfigError

__all__ = ["PRIVATE_CIDRS", "GeoData", "asset_location", "asset_search_path"]

ASSET_ENV = "v2ray.location.asset"
ASSET_DIRS = ("/usr/local/share/v2ray", "/usr/share/v2ray")

#: ``geoip:private`` when there is no geoip.dat: the private, loopback,
#: link-local, shared, documentation, multicast and reserved ranges, as in the
#: ``private`` list of the v2fly geoip data.
PRIVATE_CIDRS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

#: Lists with at least this many entries hand the decoding's freed heap back to the
#: OS (glibc ``malloc_trim``): the transient protobuf objects would otherwise stay in
#: the process (measured: 100,000 domains + 10,000 CIDRs, RSS +31 MiB -> +14 MiB).
#: Reference cycles are collected first: start-up runs with the collector paused, and
#: the cycles that compiling a list's keyword regex leaves (``re``'s parser, the
#: keyword trie) are scattered over the allocator's arenas, which keeps every arena
#: the decoding used (bench/routing.py: RSS at rest 55 -> 48 MiB).
TRIM_AFTER_ENTRIES = 10_000

_WIRE_VARINT = 0
_WIRE_I64 = 1
_WIRE_LEN = 2
_WIRE_I32 = 5
_ENTRY_FIELD = 1
_CODE_FIELD = 1
_VARINT_MAX_BYTES = 10


def _program_dir() -> str:
    return os.path.dirname(os.path.realpath(sys.argv[0] or sys.executable))


def asset_search_path(file: str, env: Mapping[str, str]) -> list[str]:
    """The candidate paths of an asset file, in 4.34's order."""
    base = env.get(ASSET_ENV)
    if base is None:
        base = env.get(ASSET_ENV.upper().replace(".", "_"))
    if base is None:
        base = _program_dir()
    # Go's filepath.Join: a leading "/" in ``file`` does not make it absolute.
    return [os.path.normpath(f"{d}/{file}") for d in (base, *ASSET_DIRS)]


def asset_location(file: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """``(path, exists)``: the first existing candidate, else the first candidate."""
    candidates = asset_search_path(file, env)
    for path in candidates:
        if os.path.exists(path):
            return path, True
    return candidates[0], False


class _Broken(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    for _ in range(_VARINT_MAX_BYTES):
        if pos >= end:
            raise _Broken("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Broken("varint too long")


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Length-delimited fields in ``buf[pos:end]`` as ``(number, start, stop)``; other
    wire types are skipped. Raises _Broken on bad framing."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_LEN:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise _Broken("field runs past its end")
            yield number, pos, stop
            pos = stop
        elif wire == _WIRE_VARINT:
            _, pos = _varint(buf, pos, end)
        elif wire == _WIRE_I64:
            pos += 8
        elif wire == _WIRE_I32:
            pos += 4
        else:
            raise _Broken(f"unsupported wire type {wire}")
    if pos != end:
        raise _Broken("field runs past its end")


def _find_entry(buf: memoryview, code: str) -> bytes | None:
    """The serialized first entry whose country_code equals ``code`` (case-insensitive)."""
    wanted = code.upper()
    for number, start, stop in _fields(buf, 0, len(buf)):
        if number != _ENTRY_FIELD:
            continue
        for inner, cstart, cstop in _fields(buf, start, stop):
            if inner == _CODE_FIELD:
                try:
                    name = bytes(buf[cstart:cstop]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _Broken("list name is not UTF-8") from exc
                if name.upper() == wanted:
                    return bytes(buf[start:stop])
                break
    return None


@dataclass(frozen=True, slots=True)
class _FileKey:
    path: str
    size: int
    mtime_ns: int


# Compiled lists by (file identity, list name, attributes): shared across
# Instances of one process (``v2py test`` then run, reloads, workers' parent).
_SITE_CACHE: dict[tuple[_FileKey, str, tuple[str, ...]], DomainSet] = {}
_IP_CACHE: dict[tuple[_FileKey, str], IpSet] = {}
_PRIVATE: IpSet | None = None


def _private_set() -> IpSet:
    global _PRIVATE
    if _PRIVATE is None:
        cidrs = []
        for text in PRIVATE_CIDRS:
            net = ipaddress.ip_network(text)
            cidrs.append(Cidr(net.network_address.packed, net.prefixlen))
        _PRIVATE = IpSet(cidrs)
    return _PRIVATE


class GeoData:
    """Loads geo lists for one config (implements :class:`~v2py.app.router.GeoSource`).

    ``env`` gives the asset location variables. Every failure is a
    :class:`ConfigError` at the JSON path of the entry that named the list.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)

    def _open(self, file: str, path: str) -> _FileKey:
        location, exists = asset_location(file, self._env)
        if not exists:
            raise ConfigError(path, f"failed to open file: {file}: {location} does not exist")
        try:
            st = os.stat(location)
        except OSError as exc:
            raise ConfigError(path, f"failed to open file: {file}: {exc.strerror}") from None
        return _FileKey(location, st.st_size, st.st_mtime_ns)

    def _entry(self, key: _FileKey, file: str, code: str, path: str, what: str) -> bytes:
        try:
            with open(key.path, "rb") as handle:
                if key.size == 0:
                    found = None
                else:
                    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                        view = memoryview(mapped)
                        try:
                            found = _find_entry(view, code)
                        finally:
                            view.release()
        except OSError as exc:
            raise ConfigError(path, f"failed to read {file}: {exc.strerror or exc}") from None
        except _Broken as exc:
            raise ConfigError(
                path, f"{file} ({key.path}) is not a valid {what} file: {exc}"
            ) from None
        if found is None:
            raise ConfigError(path, f"list not found in {file}: {code}")
        return found

    def domain_set(self, ref: GeoSiteRef, path: str) -> DomainSet:
        """The domains of ``geosite:``/``ext:`` list ``ref`` (filtered by its attributes)."""
        key = self._open(ref.file, path)
        cache_key = (key, ref.code.upper(), ref.attrs)
        cached = _SITE_CACHE.get(cache_key)
        if cached is not None:
            return cached
        from v2py.app.geo_proto import geodata_pb2

        raw = self._entry(key, ref.file, ref.code, path, "geosite")
        site = geodata_pb2.GeoSite()
        try:
            site.ParseFromString(raw)
        except Exception as exc:  # protobuf's DecodeError has no stable base class
            raise ConfigError(path, f"{ref.file}: list {ref.code} is broken: {exc}") from None
        entries: Sequence[geodata_pb2.Domain] = site.domain
        if ref.attrs:
            entries = [d for d in entries if _has_attrs(d, ref.attrs)]
        for domain in entries:
            if domain.type == DomainKind.REGEX:
                problem = check_regexp(domain.value)
                if problem is not None:
                    raise ConfigError(
                        path, f"{ref.file}: list {ref.code}: {domain.value!r}: {problem}"
                    )
        try:
            built = DomainSet.from_values((d.type, d.value) for d in entries)
        except ValueError as exc:
            raise ConfigError(path, f"{ref.file}: list {ref.code}: {exc}") from None
        del site, entries
        if built.size >= TRIM_AFTER_ENTRIES:
            _release_heap()
        _SITE_CACHE[cache_key] = built
        return built

    def ip_set(self, ref: GeoIpRef, path: str) -> IpSet:
        """The CIDRs of ``geoip:``/``ext:`` list ``ref``."""
        _, exists = asset_location(ref.file, self._env)
        if not exists and ref.file == GEOIP_FILE and ref.code.lower() == "private":
            return _private_set()
        key = self._open(ref.file, path)
        cache_key = (key, ref.code.upper())
        cached = _IP_CACHE.get(cache_key)
        if cached is not None:
            return cached
        from v2py.app.geo_proto import geodata_pb2

        raw = self._entry(key, ref.file, ref.code, path, "geoip")
        geoip = geodata_pb2.GeoIP()
        try:
            geoip.ParseFromString(raw)
        except Exception as exc:  # protobuf's DecodeError has no stable base class
            raise ConfigError(path, f"{ref.file}: list {ref.code} is broken: {exc}") from None
        cidrs = []
        for cidr in geoip.cidr:
            ip = bytes(cidr.ip)
            if len(ip) not in (4, 16):
                raise ConfigError(
                    path, f"{ref.file}: list {ref.code}: unexpected IP length {len(ip)}"
                )
            if cidr.prefix > len(ip) * 8:
                raise ConfigError(
                    path, f"{ref.file}: list {ref.code}: prefix /{cidr.prefix} is too long"
                )
            cidrs.append(Cidr(ip, cidr.prefix))
        del geoip
        built = IpSet(cidrs)
        del cidrs
        if built.size >= TRIM_AFTER_ENTRIES:
            _release_heap()
        _IP_CACHE[cache_key] = built
        return built


def _release_heap() -> None:
    """Free the garbage cycles, then return freed heap pages to the OS (glibc only;
    a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    gc.collect()
    trim(0)


def _has_attrs(domain: object, wanted: tuple[str, ...]) -> bool:
    keys = {attr.key.lower() for attr in domain.attribute}  # type: ignore[attr-defined]
    return all(a in keys for a in wanted)
