"""Which fallback takes a connection, and the PROXY header it is given (v2ray-core 4.34
``proxy/vless/inbound`` and ``proxy/trojan/server.go``, which share the logic), pure.

The table maps ``alpn`` to ``path`` to the fallback; entries with ``alpn`` "" fill in
the paths an ALPN's own entries lack. A connection picks by the TLS ALPN it negotiated
(only when there is more than one ALPN or no "" one; an ALPN without entries is ""),
then by the path of an HTTP/1 request line in its first read (only when there is more
than one path or no "" one; a path without an entry is ""); a missing one is 4.34's
error. The PROXY header (``xver`` 1 or 2) names the client and the inbound's address
exactly as 4.34 writes it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["FallbackTable", "FallbackTarget", "proxy_header", "request_path"]


@dataclass(frozen=True, slots=True)
class FallbackTarget:
    """Where a fallback goes: Go's dial ``network`` and ``address`` (``host:port``, a
    path, or an abstract name as NUL-led bytes), and the PROXY header version."""

    alpn: str
    path: str
    network: str
    address: str | bytes
    xver: int


class FallbackTable:
    """4.34's ``map[alpn]map[path]*Fallback`` of an inbound's fallbacks."""

    def __init__(self, targets: list[FallbackTarget]) -> None:
        table: dict[str, dict[str, FallbackTarget]] = {}
        for target in targets:  # a later entry for the same alpn and path wins
            table.setdefault(target.alpn, {})[target.path] = target
        defaults = table.get("")
        if defaults is not None:
            for alpn, paths in table.items():
                if alpn:
                    for path, target in defaults.items():
                        paths.setdefault(path, target)
        self._table = table

    def __bool__(self) -> bool:
        return bool(self._table)

    def pick(self, alpn: str | None, first: bytes) -> FallbackTarget:
        """The fallback of a connection that negotiated ``alpn`` (None without TLS) and
        whose first read was ``first``; raises ValueError with 4.34's reason."""
        table = self._table
        key = ""
        if len(table) > 1 or "" not in table:
            key = alpn or ""
            if key not in table:
                key = ""
        paths = table.get(key)
        if paths is None:
            raise ValueError('failed to find the default "alpn" config')
        path = ""
        if len(paths) > 1 or "" not in paths:
            path = request_path(first) or ""
            if path not in paths:
                path = ""
        target = paths.get(path)
        if target is None:
            raise ValueError('failed to find the default "path" config')
        return target


def request_path(first: bytes) -> str | None:
    """The path of an HTTP/1 request line at the start of ``first`` as 4.34 finds it:
    a "/" after a space at offset 4-8, up to the next space within the first 64 bytes
    (none past a CR or LF), not for an HTTP/2 preface ("PRI *")."""
    if len(first) < 18 or first[4] == ord("*"):
        return None
    for i in range(4, 9):
        if first[i] == ord("/") and first[i - 1] == ord(" "):
            for j in range(i + 1, min(len(first), 64)):
                k = first[j]
                if k in (0x0D, 0x0A):
                    return None
                if k == ord(" "):
                    return first[i:j].decode("latin-1")
            return None
    return None


def proxy_header(xver: int, remote: tuple[str, int], local: tuple[str, int]) -> bytes:
    """The PROXY protocol header 4.34 sends a fallback (``xver`` 1: the text line, 2:
    the binary form, TCP over IPv4 unless the client's address is IPv6)."""
    (remote_host, remote_port), (local_host, local_port) = remote, local
    ipv4 = ":" not in remote_host
    if xver == 1:
        family = "TCP4" if ipv4 else "TCP6"
        line = f"PROXY {family} {remote_host} {local_host} {remote_port} {local_port}\r\n"
        return line.encode()
    if xver != 2:
        return b""
    head = b"\r\n\r\n\x00\r\nQUIT\n\x21"
    if ipv4:
        body = _ipv4(remote_host) + _ipv4(local_host)
        head += b"\x11\x00\x0c"
    else:
        body = _ipv6(remote_host) + _ipv6(local_host)
        head += b"\x21\x00\x24"
    return head + body + remote_port.to_bytes(2, "big") + local_port.to_bytes(2, "big")


def _ipv4(host: str) -> bytes:
    """Go's ``net.ParseIP(host).To4()``: 4 bytes, or none when it is not IPv4."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return b""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return mapped.packed if mapped is not None else b""
    return address.packed


def _ipv6(host: str) -> bytes:
    """Go's ``net.ParseIP(host).To16()``: 16 bytes (an IPv4 one mapped)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return b""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{address}").packed
    return address.packed
