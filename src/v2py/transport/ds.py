"""Domain sockets (``network: "ds"`` / ``"domainsocket"``), as v2ray-core 4.34
``transport/internet/domainsocket`` (docs/spec/transports.md section 6).

* The address is ``dsSettings.path``; ``abstract`` prepends ``@`` (the Linux abstract
  namespace, a leading NUL byte on the wire), ``padding`` pads it with NULs to the whole
  108-byte ``sun_path`` as Go's ``syscall`` writes such a name. A path that starts with
  ``@`` is abstract even without ``abstract``, as in Go.
* Listening binds the socket itself: an existing file at the path (a stale socket left by
  a crashed process) makes the bind fail with "address already in use", which fails the
  start as in 4.34 (asyncio's ``create_unix_server`` would silently delete it). For a
  file path, ``<path>.lock`` is then created and ``flock``-ed; closing unlocks and
  removes it and removes the socket file (Go's ``UnixListener`` unlinks on close).
  Difference: 4.34 waits for the lock forever if another process holds it; v2py fails.
* Dialing connects to the configured address and ignores the destination host and port.
* The listen host and port of the inbound are ignored (4.34 still demands a port).
  TLS goes on top as a layer (``transport/stack.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from v2py.config.model import is_unix_listen
from v2py.config.transport_extra import DsConfig
from v2py.transport.layer import LayerHandler, LayerListener
from v2py.transport.stream import Stream
from v2py.transport.tcp import TcpListener, TcpStream, _AcceptingStream

if TYPE_CHECKING:
    from v2py.config.model import InboundConfig

__all__ = [
    "SUN_PATH_BYTES",
    "DsListener",
    "DsTransport",
    "dial_unix_address",
    "shown_address",
    "unix_address",
]

log = logging.getLogger(__name__)

#: ``sizeof(sockaddr_un.sun_path)`` on Linux (4.34 ``sizeofSunPath``).
SUN_PATH_BYTES = 108
_BACKLOG = 1024


def unix_address(config: DsConfig) -> str | bytes:
    """The socket address of ``config`` as Python's ``socket`` takes it (4.34
    ``Config.GetUnixAddr`` then Go's ``SockaddrUnix``): a file path, or bytes that start
    with NUL for an abstract name (exactly 108 bytes with ``padding``).

    Raises:
        ValueError: the path is empty.
    """
    path = config.path
    if not path:
        raise ValueError("empty domain socket path")
    if config.abstract and not path.startswith("@"):
        path = "@" + path
    if not path.startswith("@"):
        return path
    raw = path.encode()
    if config.abstract and config.padding:
        raw = raw[:SUN_PATH_BYTES].ljust(SUN_PATH_BYTES, b"\0")
    return b"\0" + raw[1:]


def shown_address(address: str | bytes) -> str:
    """A Unix socket address as 4.34 names it: an abstract one with a leading ``@``."""
    if isinstance(address, bytes):
        return "@" + address[1:].rstrip(b"\0").decode(errors="replace")
    return address


class DsListener(TcpListener):
    """A listening Unix socket; each connection runs ``handler(stream)`` in a task."""

    def __init__(self, handler: LayerHandler, config: DsConfig) -> None:
        super().__init__(handler)
        self._config = config
        self._address = unix_address(config)
        self._lock_fd: int | None = None
        self._lock_path = config.path + ".lock"
        self._socket_path: str | None = None  # set once bound: ours to unlink

    def bind_now(self) -> socket.socket:
        """Bind, listen and lock (no event loop needed). Raises OSError (a stale socket
        file: EADDRINUSE); on failure nothing is left behind."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(self._address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"failed to listen domain socket: listen unix {shown_address(self._address)}: "
                    f"bind: {exc.strerror}",
                ) from None
            if isinstance(self._address, str):
                self._socket_path = self._address
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            if not self._config.abstract:
                self._lock_fd = self._acquire_lock()
        except BaseException:
            sock.close()
            self._unlink_socket()
            self._release_lock()
            raise
        return sock

    async def start_unix(self) -> None:
        """Bind, listen and lock (or, in a ``--workers`` worker, take the socket the
        parent bound before forking: it owns the file and the lock). Raises OSError (a
        stale socket file: EADDRINUSE)."""
        loop = asyncio.get_running_loop()
        inherited = _PREBOUND.get(self._address)
        sock = inherited if inherited is not None else self.bind_now()
        try:
            self._server = await loop.create_unix_server(
                lambda: _AcceptingStream(self, loop), sock=sock, backlog=_BACKLOG
            )
        except BaseException:
            if inherited is None:
                sock.close()
                self._unlink_socket()
                self._release_lock()
            raise

    def _acquire_lock(self) -> int:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise OSError(exc.errno, f"failed to lock file: {self._lock_path}") from None
        return fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        try:
            os.remove(self._lock_path)
        except OSError as exc:
            log.info("ds: failed to remove file: %s: %s", self._lock_path, exc)

    def _unlink_socket(self) -> None:
        if self._socket_path is not None:
            with contextlib.suppress(OSError):
                os.remove(self._socket_path)
            self._socket_path = None

    def _shutdown_socket(self) -> None:
        # Go's Listener.Close: release the lock, then close (which unlinks the file).
        self._release_lock()
        self._unlink_socket()

    def close(self) -> None:
        super().close()
        self._shutdown_socket()

    def stop_accepting(self) -> None:
        super().stop_accepting()
        self._shutdown_socket()


#: Unix sockets the ``--workers`` parent bound before forking, by address: every worker
#: listens on the inherited socket (a path or abstract name binds once, unlike a TCP port
#: with SO_REUSEPORT) and the kernel hands each connection to one of them.
_PREBOUND: dict[str | bytes, socket.socket] = {}


def prebind_unix(configs: Iterable[DsConfig]) -> Callable[[], None]:
    """Bind, listen and lock each socket now, for workers forked next to inherit
    (:meth:`DsListener.start_unix`). Returns what the parent calls once they are gone:
    close, unlink and unlock, as a single process does at stop. Raises OSError (what
    was bound already is released)."""
    listeners: list[tuple[DsListener, socket.socket]] = []

    def release() -> None:
        for listener, sock in listeners:
            _PREBOUND.pop(listener._address, None)
            sock.close()
            listener._shutdown_socket()
        listeners.clear()

    try:
        for config in configs:
            listener = DsListener(lambda stream: None, config)  # type: ignore[arg-type,return-value]
            if listener._address in _PREBOUND:  # named twice: fails as one process does
                shown = shown_address(listener._address)
                raise OSError(
                    errno.EADDRINUSE,
                    f"failed to listen domain socket: listen unix {shown}: "
                    f"bind: {os.strerror(errno.EADDRINUSE)}",
                )
            sock = listener.bind_now()
            listeners.append((listener, sock))
            _PREBOUND[listener._address] = sock
    except BaseException:
        release()
        raise
    return release


def inbound_unix_socket(inbound: InboundConfig) -> DsConfig | None:
    """The Unix socket ``inbound`` listens on (``network: "ds"``, or a ``listen``
    path), None for an IP listener. Such a socket binds in one process only."""
    if inbound.stream.network == "ds":
        return inbound.stream.ds
    if is_unix_listen(inbound.listen):
        return listen_path_config(inbound.listen)
    return None


def listen_path_config(address: str) -> DsConfig:
    """The socket an inbound's ``listen`` path names (4.34 ``ListenSystem``): ``@name``
    is abstract, ``@@name`` abstract and padded to the whole ``sun_path`` (for
    HAProxy), anything else a file path, locked with ``<path>.lock``."""
    if address.startswith("@@"):
        return DsConfig.trusted(path=address[1:], abstract=True, padding=True)
    if address.startswith("@"):
        return DsConfig.trusted(path=address, abstract=True)
    return DsConfig.trusted(path=address)


async def listen_unix_path(address: str, handler: LayerHandler) -> DsListener:
    """Listen on the Unix socket of an inbound's ``listen`` path (tcp, ws and h2)."""
    listener = DsListener(handler, listen_path_config(address))
    await listener.start_unix()
    return listener


async def dial_unix(config: DsConfig, *, timeout: float | None = None) -> TcpStream:
    """Connect to the socket of ``config``. Raises OSError / TimeoutError."""
    return await dial_unix_address(unix_address(config), timeout=timeout)


async def dial_unix_address(address: str | bytes, *, timeout: float | None = None) -> TcpStream:
    """Connect to the Unix socket ``address`` (a path, or a NUL-led abstract name as
    :func:`unix_address` gives). Raises OSError / TimeoutError."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, address)
            _, proto = await loop.create_unix_connection(lambda: TcpStream(loop), sock=sock)
    except BaseException:
        sock.close()
        raise
    return proto


class DsTransport:
    """``network: "ds"``: streams over one Unix socket address (``dsSettings``)."""

    name = "domainsocket"
    listener_ends_sessions = False

    def __init__(self, config: DsConfig) -> None:
        self.config = config

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        # 4.34 dials the configured socket whatever the destination.
        return await dial_unix(self.config, timeout=timeout)

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener:
        listener = DsListener(handler, self.config)
        await listener.start_unix()
        return listener

    async def aclose(self) -> None:
        return None
