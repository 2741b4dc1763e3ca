"""Names in /etc/hosts answered in-process, as Go's resolver answers them (net/hosts.go).

4.34's dials resolve a name with Go's resolver, which reads /etc/hosts itself (kept for
5 s, re-read when the file changed) before asking DNS when ``/etc/nsswitch.conf`` puts
``files`` first. v2py's dials went to ``getaddrinfo`` in the event loop's thread pool
for every name: ~65 µs of CPU and a thread round trip for ``localhost``. A name this
finds is dialled at its addresses in file order; any other name goes to
``getaddrinfo`` as before. Pure apart from :func:`static_addresses`'s file reads.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable

from v2py.common.net import is_ip

__all__ = ["HostsFile", "parse_hosts", "static_addresses"]

HOSTS_PATH = "/etc/hosts"
NSSWITCH_PATH = "/etc/nsswitch.conf"
#: Go's ``cacheMaxAge`` for /etc/hosts.
CACHE_S = 5.0
#: A larger file (an ad-blocking list of 100,000 names) is not kept in memory: its
#: names go to ``getaddrinfo`` as before (~20 MB of dict and a parse blocking the loop
#: each time the file changes would cost more than the thread round trip saves).
MAX_HOSTS_BYTES = 64 * 1024


def parse_hosts(text: str) -> dict[str, tuple[str, ...]]:
    """Lower-case name (no trailing dot) -> its addresses in file order (Go
    ``readHosts``: ``#`` starts a comment, the first field is an IP, the rest names)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0].partition("%")[0]))
        except ValueError:
            continue
        if "%" in fields[0]:
            address += "%" + fields[0].partition("%")[2]
        for name in fields[1:]:
            found.setdefault(name.lower().rstrip("."), []).append(address)
    return {name: tuple(addresses) for name, addresses in found.items()}


def files_first(nsswitch: str | None) -> bool:
    """Whether the ``hosts:`` line asks ``files`` before anything else (a missing file
    means glibc's default, ``dns`` first)."""
    if nsswitch is None:
        return False
    for line in nsswitch.splitlines():
        fields = line.partition("#")[0].split()
        if fields and fields[0] == "hosts:":
            return len(fields) > 1 and fields[1] == "files"
    return False


class HostsFile:
    """/etc/hosts, re-read at most every :data:`CACHE_S` seconds when it changed."""

    def __init__(
        self,
        path: str = HOSTS_PATH,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.enabled = enabled
        self._clock = clock
        self._expires = float("-inf")
        self._stamp: tuple[int, int] | None = None
        self._names: dict[str, tuple[str, ...]] = {}

    def lookup(self, name: str) -> tuple[str, ...]:
        """The addresses of ``name`` (case and a trailing dot ignored), or ()."""
        if not self.enabled:
            return ()
        now = self._clock()
        if now >= self._expires:
            self._expires = now + CACHE_S
            self._refresh()
        return self._names.get(name.lower().rstrip("."), ())

    def _refresh(self) -> None:
        try:
            status = os.stat(self.path)
        except OSError:
            self._stamp, self._names = None, {}
            return
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return
        if status.st_size > MAX_HOSTS_BYTES:
            self._stamp, self._names = stamp, {}
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            self._stamp, self._names = None, {}
            return
        self._stamp, self._names = stamp, parse_hosts(text)


_SYSTEM: HostsFile | None = None


def static_addresses(name: str) -> tuple[str, ...]:
    """The system /etc/hosts addresses of ``name`` when nsswitch asks files first; ()
    for an IP literal, which Go dials as it is without looking it up."""
    global _SYSTEM
    if is_ip(name):
        return ()
    if _SYSTEM is None:
        try:
            with open(NSSWITCH_PATH, encoding="utf-8", errors="replace") as fh:
                nsswitch: str | None = fh.read()
        except OSError:
            nsswitch = None
        _SYSTEM = HostsFile(enabled=files_first(nsswitch))
    return _SYSTEM.lookup(name)
