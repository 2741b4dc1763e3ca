"""Exception tree of v2py (see docs/style.md section 5)."""

from __future__ import annotations


class V2pyError(Exception):
    """Base class of every error v2py raises on purpose."""


#: A ConfigError's path or message longer than this is cut in the middle.
MAX_CONFIG_TEXT = 1000


def printable(text: str, limit: int = MAX_CONFIG_TEXT) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x85``,
    ``\\u202e``...) and cut in the middle past ``limit`` characters.

    Config messages quote user strings; this keeps any of them from breaking the
    one-line form (a newline in a key could otherwise forge a ``config error:`` line)
    or reordering the terminal's text. Idempotent: escapes are printable.
    """
    if len(text) > limit:
        keep = limit // 2
        text = f"{text[:keep]}...({len(text) - 2 * keep} characters cut)...{text[-keep:]}"
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(out)


class ConfigError(V2pyError):
    """A configuration problem, located by its JSON path.

    ``str(err)`` is one line: ``<path>: <message>``, both passed through
    :func:`printable` (user text in them cannot add lines or control characters).
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = printable(path)
        self.message = printable(message)
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


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
