"""Logging in V2Ray 4.34's shape (v2ray-core ``app/log``, ``common/log``, ``infra/conf/log.go``).

* Two logs: the error log (``[Debug]``/``[Info]``/``[Warning]``/``[Error]`` lines,
  filtered by ``loglevel``) and the access log (one line per accepted or rejected
  connection, whatever the level). Each goes to standard output (4.34's console
  writer), to a file, or nowhere (``"none"``; ``loglevel: "none"`` turns both off
  and opens no file). Lines start with the local time as Go's ``log.Ldate|Ltime``.
* A log file is opened when logging is configured, so a path that cannot be
  opened (a missing directory) is a :class:`ConfigError` naming ``log.access`` or
  ``log.error`` (4.34: "failed to initialize access logger", exit 23, in ``-test``
  too). Files are created ``0600`` and opened for appending, as 4.34.
* Log rotation: 4.34 closes its file after a minute without messages and reopens
  the path for the next one, so it follows a rotated file only after a quiet
  minute. v2py checks the path before each line and reopens it when the file was
  moved or deleted (:class:`LogFileHandler`, a ``WatchedFileHandler``), so
  logrotate's default create mode works without a signal; ``copytruncate`` works
  as well because the file is opened for appending. (4.34 has no SIGUSR1 handler.)
* Access lines are :func:`access_line`, 4.34's ``AccessMessage.String``:
  ``FROM accepted|rejected TO [DETOUR] REASON email: EMAIL``.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from v2py.errors import ConfigError

if TYPE_CHECKING:
    from v2py.transport.stream import Stream

__all__ = [
    "ACCESS_ACCEPTED",
    "ACCESS_LOGGER",
    "ACCESS_REJECTED",
    "LEVELS",
    "NO_LOG_PATH",
    "AccessMessage",
    "LogFileHandler",
    "access_enabled",
    "access_line",
    "configure_logging",
    "log_access",
]

#: ``access``/``error`` value that turns that log off (v2ray-core infra/conf/log.go).
NO_LOG_PATH = "none"
#: Logger name of the access log (the error log is the ``v2py`` logger tree).
ACCESS_LOGGER = "v2py.access"
ACCESS_ACCEPTED = "accepted"
ACCESS_REJECTED = "rejected"
#: Mode of a log file v2py creates (4.34 common/log ``CreateFileLogWriter``).
LOG_FILE_MODE = 0o600
GO_LOG_TIME_FORMAT = "%Y/%m/%d %H:%M:%S"

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "none": logging.CRITICAL + 10,
}

_LEVEL_NAMES = {
    logging.DEBUG: "Debug",
    logging.INFO: "Info",
    logging.WARNING: "Warning",
    logging.ERROR: "Error",
    logging.CRITICAL: "Error",
}

_access_log = logging.getLogger(ACCESS_LOGGER)


@dataclass(frozen=True, slots=True)
class AccessMessage:
    """What an inbound records for a connection's access line, as 4.34's inbounds
    fill ``log.AccessMessage`` From/To/Email: the dispatcher adds the outbound tag
    and writes it (``app/dispatcher/default.go``)."""

    source: str
    destination: str
    email: str = ""


class _V2rayFormatter(logging.Formatter):
    def __init__(self, access: bool) -> None:
        super().__init__(datefmt=GO_LOG_TIME_FORMAT)
        self._access = access

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, self.datefmt)
        msg = record.getMessage()
        if record.exc_info and not self._access:
            msg = f"{msg}: {record.exc_info[1]!r}"
        if self._access:
            return f"{stamp} {msg}"
        return f"{stamp} [{_LEVEL_NAMES.get(record.levelno, 'Info')}] {msg}"


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """Appends to ``path``, created ``0600``; reopens the path when the file it
    writes to was rotated away (moved or deleted)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8")

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """A line that cannot be written (the reopened path is not writable, disk
        full) is reported once per kind of error on standard error, not as a traceback."""
        exc = sys.exc_info()[1]
        text = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
        if text != self._last_error:
            self._last_error = text
            print(f"v2py: cannot write log file {self.baseFilename}: {text}", file=sys.stderr)

    _last_error = ""

    def emit(self, record: logging.LogRecord) -> None:
        # WatchedFileHandler lets a failed reopen raise into the caller (a connection).
        try:
            self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
        except OSError:
            self.handleError(record)
            return
        logging.FileHandler.emit(self, record)

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(
            self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE
        )
        return open(fd, "a", encoding=self.encoding, errors=self.errors)  # noqa: SIM115


def _handler(path: str, console: TextIO, key: str) -> logging.Handler:
    """A file handler for ``path``; the console for ""; nothing for "none"."""
    if path == NO_LOG_PATH:
        return logging.NullHandler()
    if path:
        try:
            return LogFileHandler(path)
        except OSError as exc:
            raise ConfigError(
                f"log.{key}",
                f"failed to initialize {key} logger: cannot open {path}: {exc.strerror or exc}",
            ) from None
    return logging.StreamHandler(console)


def _replace_handlers(logger: logging.Logger, handler: logging.Handler) -> None:
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.propagate = False


def configure_logging(
    loglevel: str = "warning",
    access: str = "",
    error: str = "",
    *,
    console: TextIO | None = None,
) -> None:
    """Send the ``v2py`` error log and the access log where 4.34 would.

    ``access``/``error``: a file path, ``""`` for the console (standard output,
    or ``console``), ``"none"`` for nothing. ``loglevel`` ``"none"`` turns both
    logs off without opening any file. Raises ConfigError (``log.access`` /
    ``log.error``) when a file cannot be opened; then nothing is changed.
    """
    out = console if console is not None else sys.stdout
    level = loglevel.lower()
    if level == "none":
        access = error = NO_LOG_PATH
    access_handler = _handler(access, out, "access")
    try:
        error_handler = _handler(error, out, "error")
    except ConfigError:
        access_handler.close()
        raise
    error_handler.setFormatter(_V2rayFormatter(access=False))
    access_handler.setFormatter(_V2rayFormatter(access=True))

    root = logging.getLogger("v2py")
    _replace_handlers(root, error_handler)
    root.setLevel(LEVELS["none"] if error == NO_LOG_PATH else LEVELS.get(level, logging.WARNING))

    _replace_handlers(_access_log, access_handler)
    # An access logger that is off refuses records early: callers ask
    # access_enabled() on every connection before they format anything.
    _access_log.setLevel(LEVELS["none"] if access == NO_LOG_PATH else logging.INFO)


def access_enabled() -> bool:
    """False when an access line would reach no output (skip building it)."""
    if not _access_log.isEnabledFor(logging.INFO):
        return False
    if _access_log.propagate:
        return True
    return not all(isinstance(h, logging.NullHandler) for h in _access_log.handlers)


def access_line(
    source: object,
    status: str,
    destination: object = "",
    *,
    detour: str = "",
    reason: object = "",
    email: str = "",
) -> str:
    """One access line as 4.34's ``AccessMessage.String`` (common/log/access.go).

    ``source`` is printed as the inbound gives it (VMess, HTTP and dokodemo give
    ``IP:PORT``, socks ``tcp:IP:PORT``); ``destination`` is ``tcp:HOST:PORT`` (empty
    for a rejection, hence the double space after ``rejected``).
    """
    parts = [str(source), " ", status, " ", str(destination)]
    if detour:
        parts.append(f" [{detour}]")
    reason_text = str(reason)
    if reason_text:
        parts.append(f" {reason_text}")
    if email:
        parts.append(f" email: {email}")
    return "".join(parts)


def log_access(
    source: object,
    status: str,
    destination: object = "",
    *,
    detour: str = "",
    reason: object = "",
    email: str = "",
) -> None:
    """Write one access line (:func:`access_line`) if the access log is on."""
    if access_enabled():
        _access_log.info(
            "%s",
            access_line(source, status, destination, detour=detour, reason=reason, email=email),
        )


def go_read_timeout(stream: Stream) -> str:
    """Go's error for a read past its deadline on ``stream``, as 4.34 puts it in access
    lines: ``read tcp LOCAL->PEER: i/o timeout``."""

    def text(address: tuple[str, int] | None) -> str:
        if address is None:
            return ""
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    return f"read tcp {text(stream.local)}->{text(stream.peer)}: i/o timeout"
