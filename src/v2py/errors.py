"""Exception tree of v2py (see STYLE.md section 5)."""

from __future__ import annotations


class V2pyError(Exception):
    """Base class of every error v2py raises on purpose."""


class ConfigError(V2pyError):
    """A configuration problem, located by its JSON path.

    ``str(err)`` is one line: ``<path>: <message>``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ProtocolError(V2pyError):
    """Abstract base of protocol violations."""


class LocalProtocolError(ProtocolError):
    """We misused a core object (wrong state or bad argument)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol."""


class VmessError(RemoteProtocolError):
    """A VMess peer sent something invalid.

    ``drain`` tells the shell to drain the connection before closing (probe
    resistance, as v2ray-core proxy/vmess/encoding/server.go drainConnection).
    """

    def __init__(self, message: str, *, drain: bool = False, tainted: bool = False) -> None:
        super().__init__(message)
        self.drain = drain
        self.tainted = tainted


class Socks5Error(RemoteProtocolError):
    """A SOCKS client sent something invalid; ``reply_code`` is what to answer (or None)."""

    def __init__(self, message: str, *, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code


class KcpError(RemoteProtocolError):
    """An mKCP peer broke the protocol."""


class MuxError(RemoteProtocolError):
    """A Mux.Cool peer sent a frame that ends the whole mux connection."""
