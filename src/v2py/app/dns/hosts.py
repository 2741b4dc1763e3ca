"""``dns.hosts``: static answers and domain replacements (v2ray-core 4.34 ``app/dns/hosts.go``).

Every matching entry contributes (4.34 ``StaticHosts.lookupInternal``): exact
names first, then ``domain:`` entries from the most specific suffix up, then
keywords and regexps in config order. One replacement domain is followed up
to 5 times; a single ``127.0.0.1`` also answers ``::1`` (4.34's localhost
workaround).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from v2py.app.router import DomainSet, GeoSource
from v2py.common.net import pack_ip
from v2py.config.routing import DnsHostConfig, DomainKind, DomainRule, GeoSiteRef

__all__ = ["HostAnswer", "StaticHosts"]

MAX_REPLACEMENTS = 5
_LOCALHOST_V4 = bytes([127, 0, 0, 1])
_LOCALHOST_V6 = bytes(15) + b"\x01"


@dataclass(frozen=True, slots=True)
class HostAnswer:
    """What the hosts table says: IPs (packed, possibly filtered to nothing) or a
    replacement ``domain`` to resolve instead."""

    ips: tuple[bytes, ...] = ()
    domain: str | None = None


class StaticHosts:
    """The compiled hosts table. ``geo`` expands ``geosite:``/``ext:`` keys."""

    def __init__(self, entries: Sequence[DnsHostConfig], geo: GeoSource, base: str = "dns") -> None:
        self._full: dict[str, list[int]] = {}
        self._suffix: dict[str, list[int]] = {}
        self._other: list[tuple[int, DomainRule, re.Pattern[str] | None]] = []
        self._values: list[tuple[bytes, ...] | str] = []
        for entry in entries:
            value: tuple[bytes, ...] | str
            if entry.ip is not None:
                packed = pack_ip(entry.ip)
                ips: tuple[bytes, ...] = (packed,) if packed is not None else ()
                if ips == (_LOCALHOST_V4,):
                    ips = (_LOCALHOST_V4, _LOCALHOST_V6)
                value = ips
            else:
                value = entry.domain or ""
            if isinstance(entry.match, GeoSiteRef):
                # A geosite key adds one mapping per domain of the list.
                rules = _rules_of(geo.domain_set(entry.match, f"{base}.{entry.match.key}"))
            else:
                rules = [entry.match]
            for rule in rules:
                self._add(rule, value)

    def _add(self, rule: DomainRule, value: tuple[bytes, ...] | str) -> None:
        index = len(self._values)
        self._values.append(value)
        if rule.kind is DomainKind.FULL:
            self._full.setdefault(rule.value, []).append(index)
        elif rule.kind is DomainKind.DOMAIN:
            self._suffix.setdefault(rule.value, []).append(index)
        else:
            pattern = re.compile(rule.value) if rule.kind is DomainKind.REGEX else None
            self._other.append((index, rule, pattern))

    def __len__(self) -> int:
        return len(self._values)

    def _matches(self, domain: str) -> list[tuple[bytes, ...] | str]:
        ids = list(self._full.get(domain, ()))
        if self._suffix:
            labels = domain.split(".")
            for start in range(len(labels)):
                ids.extend(self._suffix.get(".".join(labels[start:]), ()))
        for index, rule, pattern in self._other:
            if pattern is not None:
                if pattern.search(domain):
                    ids.append(index)
            elif rule.value in domain:
                ids.append(index)
        return [self._values[i] for i in ids]

    def lookup(self, domain: str, *, ipv4: bool, ipv6: bool) -> HostAnswer | None:
        """The static answer for ``domain``, or None when no entry matches."""
        return self._lookup(domain, ipv4, ipv6, MAX_REPLACEMENTS)

    def _lookup(self, domain: str, ipv4: bool, ipv6: bool, depth: int) -> HostAnswer | None:
        found = self._matches(domain)
        if not found:
            return None
        if len(found) == 1 and isinstance(found[0], str):
            if depth > 0:
                deeper = self._lookup(found[0], ipv4, ipv6, depth - 1)
                if deeper is not None:
                    return deeper
            return HostAnswer(domain=found[0])
        ips = [
            ip
            for value in found
            if not isinstance(value, str)
            for ip in value
            if (len(ip) == 4 and ipv4) or (len(ip) == 16 and ipv6)
        ]
        return HostAnswer(ips=tuple(ips))


def _rules_of(domains: DomainSet) -> list[DomainRule]:
    return list(domains.rules())
