"""Socket options of ``streamSettings.sockopt`` and the original destination of
transparently proxied traffic (v2ray-core 4.34 ``transport/internet/sockopt_linux.go``,
``system_dialer.go``, ``system_listener.go``, ``tcp/sockopt_linux.go``,
``udp/hub_linux.go``).

What 4.34 does, and v2py with it:

* listening sockets (``applyInboundSocketOptions``): ``SO_MARK`` when ``mark`` is not 0;
  TCP ``TCP_FASTOPEN`` = 1 / 0 for ``tcpFastOpen`` true / false (absent: untouched);
  ``IP_TRANSPARENT`` when ``tproxy`` is "tproxy" *or* "redirect"; UDP
  ``IP_RECVORIGDSTADDR`` (and its IPv6 twin) when the inbound follows redirects;
* dialled sockets (``applyOutboundSocketOptions``): ``SO_MARK``, TCP
  ``TCP_FASTOPEN_CONNECT`` = 1 / 0, ``IP_TRANSPARENT`` the same way; the outbound's
  ``sendThrough`` is the local address bound before connecting (port 0);
* a failing ``setsockopt`` (no CAP_NET_ADMIN for ``SO_MARK`` / ``IP_TRANSPARENT``) is
  logged and the socket is used anyway, as 4.34 logs "failed to apply socket options";
* the original destination of an accepted TCP connection is ``SO_ORIGINAL_DST``
  (IPv4, iptables REDIRECT) in "redirect" mode, the socket's local address in
  "tproxy" mode; of a UDP datagram, its ``IP_ORIGDSTADDR`` control message.

The options are Linux's. On another system a config that needs them is refused at
start-up (:func:`unsupported_reason`), with one line, instead of running without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import ipaddress
import logging
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IP_ORIGDSTADDR",
    "IPV6_ORIGDSTADDR",
    "SO_ORIGINAL_DST",
    "SocketOptions",
    "TproxyMode",
    "accepted_original_destination",
    "apply_inbound_options",
    "apply_outbound_options",
    "bind_transparent",
    "bound_udp_socket",
    "original_destination_of",
    "parse_original_destination",
    "set_accepted_original_destination",
    "unsupported_reason",
]

log = logging.getLogger(__name__)

# Linux constants the socket module does not export (linux/netfilter_ipv4.h, linux/in.h,
# linux/in6.h, linux/tcp.h); the values are those 4.34 uses.
SO_ORIGINAL_DST = 80
IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20
IP_ORIGDSTADDR = IP_RECVORIGDSTADDR
IPV6_RECVORIGDSTADDR = 74
IPV6_ORIGDSTADDR = IPV6_RECVORIGDSTADDR
SOL_IP = 0
SOL_IPV6 = 41
SOL_TCP = 6
SO_MARK = 36
TCP_FASTOPEN = 23
TCP_FASTOPEN_CONNECT = 30

#: Size of ``struct sockaddr_in`` as ``SO_ORIGINAL_DST`` returns it.
_SOCKADDR_IN_BYTES = 16


class TproxyMode(enum.Enum):
    """``sockopt.tproxy``: how an inbound learns a connection's original destination."""

    OFF = "off"
    TPROXY = "tproxy"
    REDIRECT = "redirect"


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOptions:
    """The socket options of one ``streamSettings`` (4.34 ``internet.SocketConfig``).

    ``tcp_fast_open``: None leaves the kernel default, True / False set it to 1 / 0.
    ``receive_original_destination``: set for inbounds with ``followRedirect``
    (4.34 sets it there, not from JSON).
    """

    mark: int = 0
    tcp_fast_open: bool | None = None
    tproxy: TproxyMode = TproxyMode.OFF
    receive_original_destination: bool = False

    @property
    def is_default(self) -> bool:
        """True when no option changes anything."""
        return self == _DEFAULT

    @property
    def transparent(self) -> bool:
        """Whether ``IP_TRANSPARENT`` is set (4.34 ``TProxyMode.IsEnabled``)."""
        return self.tproxy is not TproxyMode.OFF


_DEFAULT = SocketOptions()


def unsupported_reason(options: SocketOptions, platform: str = sys.platform) -> str | None:
    """Why ``options`` cannot be honoured on ``platform`` (None: they can)."""
    if options.is_default or platform.startswith("linux"):
        return None
    return f"socket options (mark, tcpFastOpen, tproxy) need Linux, not {platform}"


def _set(sock: socket.socket, level: int, option: int, value: int, what: str) -> None:
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        # 4.34 logs and goes on with the socket (sockopt_linux.go callers).
        log.warning("failed to set %s: %s", what, exc)


def _is_tcp(sock: socket.socket) -> bool:
    return sock.type == socket.SOCK_STREAM


def apply_inbound_options(sock: socket.socket, options: SocketOptions) -> None:
    """Set ``options`` on a listening socket before it is bound (4.34
    ``applyInboundSocketOptions``). Failures are logged, never raised."""
    if options.mark:
        _set(sock, socket.SOL_SOCKET, SO_MARK, options.mark, "SO_MARK")
    if _is_tcp(sock) and options.tcp_fast_open is not None:
        value = int(options.tcp_fast_open)
        _set(sock, SOL_TCP, TCP_FASTOPEN, value, f"TCP_FASTOPEN={value}")
    if options.transparent:
        _set(sock, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT")
    if options.receive_original_destination and not _is_tcp(sock):
        ok = False
        for level, option in ((SOL_IPV6, IPV6_RECVORIGDSTADDR), (SOL_IP, IP_RECVORIGDSTADDR)):
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, 1)
                ok = True
        if not ok:
            log.warning("failed to set IP_RECVORIGDSTADDR")


def apply_outbound_options(sock: socket.socket, options: SocketOptions) -> None:
    """Set ``options`` on a socket about to be connected (4.34
    ``applyOutboundSocketOptions``). Failures are logged, never raised."""
    if options.mark:
        _set(sock, socket.SOL_SOCKET, SO_MARK, options.mark, "SO_MARK")
    if _is_tcp(sock) and options.tcp_fast_open is not None:
        value = int(options.tcp_fast_open)
        _set(sock, SOL_TCP, TCP_FASTOPEN_CONNECT, value, f"TCP_FASTOPEN_CONNECT={value}")
    if options.transparent:
        _set(sock, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT")


def bind_transparent(sock: socket.socket, address: tuple[str, int]) -> bool:
    """Bind a dialled UDP socket to ``address`` with SO_REUSEADDR and SO_REUSEPORT (4.34
    ``bindAddr``, used to answer a TPROXY client from its original destination).
    Returns False (and logs) when the bind fails; 4.34 then dials unbound."""
    for option in (socket.SO_REUSEADDR, socket.SO_REUSEPORT):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        log.warning("failed to bind source address to %s: %s", address[0], exc)
        return False
    return True


def parse_sockaddr_in(data: bytes) -> tuple[str, int] | None:
    """(ip, port) of a ``struct sockaddr_in`` (as SO_ORIGINAL_DST / IP_ORIGDSTADDR give
    it; 4.34 reads port bytes 2-3 and address bytes 4-7), None when too short."""
    if len(data) < 8:
        return None
    port = struct.unpack_from("!H", data, 2)[0]
    return str(ipaddress.IPv4Address(data[4:8])), port


def parse_sockaddr_in6(data: bytes) -> tuple[str, int] | None:
    """(ip, port) of a ``struct sockaddr_in6`` (port bytes 2-3, address 8-23)."""
    if len(data) < 24:
        return None
    port = struct.unpack_from("!H", data, 2)[0]
    return str(ipaddress.IPv6Address(data[8:24])), port


def parse_original_destination(
    ancillary: list[tuple[int, int, bytes]],
) -> tuple[str, int] | None:
    """The original destination in ``recvmsg`` control messages (4.34
    ``RetrieveOriginalDest``); None when absent or malformed."""
    for level, kind, data in ancillary:
        if level == SOL_IP and kind == IP_ORIGDSTADDR:
            return parse_sockaddr_in(data)
        if level == SOL_IPV6 and kind == IPV6_ORIGDSTADDR:
            return parse_sockaddr_in6(data)
    return None


def original_destination_of(sock: socket.socket, mode: TproxyMode) -> tuple[str, int] | None:
    """The original destination of an accepted TCP socket (4.34 ``tcpWorker.callback``):
    ``SO_ORIGINAL_DST`` in "redirect" mode, the local address in "tproxy" mode.
    None when it cannot be read (logged, as 4.34 logs "failed to get original
    destination"); the dokodemo door then falls back to its ``address``."""
    try:
        if mode is TproxyMode.REDIRECT:
            # 4.34 asks SOL_IP for every socket (IPv4 NAT only).
            raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN_BYTES)
            found = parse_sockaddr_in(raw)
        elif mode is TproxyMode.TPROXY:
            name = sock.getsockname()
            found = (str(name[0]), int(name[1]))
        else:
            return None
    except OSError as exc:
        log.info("failed to get original destination: %s", exc)
        return None
    if found is None or found[1] == 0:
        return None
    host, port = found
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return host, port


_ORIGINAL_DESTINATION: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "v2py_original_destination", default=None
)


def set_accepted_original_destination(destination: tuple[str, int] | None) -> None:
    """Record the original destination of the connection this task serves.

    Set by a transparent listener in the connection's own task before its handler
    runs, so that the stream layers above (stats, TLS...) need not carry it: 4.34
    likewise puts it in the connection's context (``session.Outbound.Target``).
    """
    _ORIGINAL_DESTINATION.set(destination)


def accepted_original_destination() -> tuple[str, int] | None:
    """The original destination recorded for the connection this task serves."""
    return _ORIGINAL_DESTINATION.get()


def make_socket(family: int, kind: int) -> socket.socket:
    """A non-blocking socket of ``family`` / ``kind``."""
    sock = socket.socket(family, kind)
    sock.setblocking(False)
    return sock


async def resolve_family(host: str, port: int, kind: int) -> list[tuple[int, tuple[str, int]]]:
    """(family, sockaddr) candidates for ``host:port`` in getaddrinfo order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=kind)
    return [(int(info[0]), (str(info[4][0]), int(info[4][1]))) for info in infos]


def bound_udp_socket(
    family: int,
    address: tuple[Any, ...],
    options: SocketOptions | None,
    *,
    reuse_port: bool = False,
    proto: int = 0,
) -> socket.socket:
    """A non-blocking UDP socket with ``options`` set (as 4.34's ``ListenSystemPacket``
    sets a packet socket's) and SO_REUSEPORT when asked, bound to ``address``."""
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.setblocking(False)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if options is not None:
            apply_inbound_options(sock, options)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


async def connected_udp_socket(
    host: str, port: int, *, source: str | None, options: SocketOptions | None
) -> socket.socket:
    """A non-blocking UDP socket with ``options`` set, bound to ``source`` (``sendThrough``;
    else any address of the destination's family) and connected to ``host:port``.

    As Go's dialer, only destination addresses of the family of ``source`` are tried.
    Raises OSError.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if source is not None:
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
        infos = [info for info in infos if info[0] == family]
        if not infos:
            raise OSError(f"no {host} address of the family of sendThrough {source}")
    family, _, proto, _, address = infos[0]
    any_address = "::" if family == socket.AF_INET6 else "0.0.0.0"
    sock = bound_udp_socket(family, (source or any_address, 0), options, proto=proto)
    try:
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock
