"""Logging in V2Ray's shape: error log with ``[Level]`` and an access log."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

#: ``access``/``error`` value that turns that log off (v2ray-core infra/conf/log.go).
NO_LOG_PATH = "none"

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


class _V2rayFormatter(logging.Formatter):
    def __init__(self, access: bool) -> None:
        super().__init__(datefmt="%Y/%m/%d %H:%M:%S")
        self._access = access

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, self.datefmt)
        msg = record.getMessage()
        if record.exc_info and not self._access:
            msg = f"{msg}: {record.exc_info[1]!r}"
        if self._access:
            return f"{stamp} {msg}"
        return f"{stamp} [{_LEVEL_NAMES.get(record.levelno, 'Info')}] {msg}"


def _handler(path: str, console: TextIO) -> logging.Handler:
    """A file handler for ``path``; the console for ""; nothing for "none" (as 4.34)."""
    if path == NO_LOG_PATH:
        return logging.NullHandler()
    if path:
        return logging.FileHandler(path)
    return logging.StreamHandler(console)


def configure_logging(loglevel: str = "warning", access: str = "", error: str = "") -> None:
    """Route ``v2py`` logs to stderr or ``error`` and ``v2py.access`` to stdout or ``access``."""
    root = logging.getLogger("v2py")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    err_handler = _handler(error, sys.stderr)
    err_handler.setFormatter(_V2rayFormatter(access=False))
    root.addHandler(err_handler)
    root.setLevel(LEVELS.get(loglevel.lower(), logging.WARNING))
    root.propagate = False

    acc = logging.getLogger("v2py.access")
    for handler in list(acc.handlers):
        acc.removeHandler(handler)
    acc_handler = _handler(access, sys.stdout)
    acc_handler.setFormatter(_V2rayFormatter(access=True))
    acc.addHandler(acc_handler)
    access_off = access == NO_LOG_PATH or (loglevel.lower() == "none" and not access)
    # An access logger that is off must refuse records early: the dispatcher asks
    # isEnabledFor() on every connection before it formats anything.
    acc.setLevel(LEVELS["none"] if access_off else logging.INFO)
    acc.propagate = False
