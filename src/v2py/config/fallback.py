"""VLESS and Trojan inbound ``fallbacks`` (v2ray-core 4.34 ``infra/conf/vless.go`` and
``infra/conf/trojan.go``, which read them the same way).

Each entry: ``alpn``, ``path``, ``type`` and ``dest`` (a port number or a string), and
``xver`` (PROXY protocol version). As 4.34: a number (or a string of digits) is
``127.0.0.1:N``; a ``dest`` starting with ``/`` or ``@`` is a Unix socket (``@@name``:
the abstract name padded to the whole 108-byte ``sun_path``); a ``host:port`` is TCP;
``path`` must be empty or start with ``/``; ``xver`` is 0, 1 or 2; anything else is
4.34's own error. Unlike 4.34, a ``type`` Go cannot dial (so every fallback to it
fails there), and ``serve-ws-none`` (a later Xray feature 4.34 cannot dial either), are
refused while loading.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from pydantic import ValidatorFunctionWrapHandler, model_validator

from v2py.config.base import ConfigModel, Str, Uint32, describe, fail
from v2py.errors import printable

__all__ = ["FallbackConfig", "FallbackInboundSettings", "check_fallbacks"]

#: Go's ``net.Dial`` networks for a stream (what a fallback's ``type`` can name).
_NETWORKS = frozenset({"tcp", "tcp4", "tcp6", "unix"})
_SUN_PATH_BYTES = 108
_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):([0-9a-zA-Z]*)$")


class FallbackConfig(ConfigModel):
    """One ``fallbacks`` entry as 4.34 reads it; ``dest`` is kept as given (a number or
    a string) until :func:`check_fallbacks` resolves it."""

    alpn: Str = ""
    path: Str = ""
    type: Str = ""
    dest: Any = None
    xver: Uint32 = 0

    @model_validator(mode="after")
    def _dest_kind(self) -> FallbackConfig:
        dest = self.dest
        if dest is not None and not isinstance(dest, (str, int)) or isinstance(dest, bool):
            raise fail(f"{describe(dest)} is not a port number or an address string", "dest")
        return self


def _dest_text(dest: object) -> str:
    """4.34 reads ``dest`` as a uint16 when it can, else as a string, else as ""."""
    if isinstance(dest, int) and 0 <= dest <= 0xFFFF:
        return str(dest)
    if isinstance(dest, str):
        return dest
    return ""


def _split_host_port(text: str) -> bool:
    """Whether Go's ``net.SplitHostPort`` takes ``text``."""
    return _HOST_PORT.match(text) is not None


def check_fallbacks(
    fallbacks: tuple[FallbackConfig, ...], protocol: str
) -> tuple[tuple[str, str, str, str | bytes, int], ...]:
    """The fallbacks as (alpn, path, network, address, xver): ``address`` is
    ``host:port`` for TCP, a path or NUL-led abstract name (bytes) for ``unix``.
    Raises the loader's error (under ``fallbacks[i]``) with 4.34's words (``protocol``:
    "VLESS" or "Trojan")."""
    resolved = []
    for index, fb in enumerate(fallbacks):
        where = f"fallbacks[{index}]"
        dest = _dest_text(fb.dest)
        if fb.path and not fb.path.startswith("/"):
            raise fail(f'{protocol} fallbacks: "path" must be empty or start with "/"', where)
        network = fb.type
        padded = False
        if not network and dest:
            if dest == "serve-ws-none":
                raise fail(
                    f"{json.dumps(dest)} is not supported by v2py (4.34 cannot dial it either)",
                    f"{where}.dest",
                )
            if dest[0] in "@/":
                network = "unix"
                padded = dest.startswith("@@")
            else:
                if dest.isdigit():
                    dest = "127.0.0.1:" + dest
                if _split_host_port(dest):
                    network = "tcp"
        if not network:
            raise fail(
                f'{protocol} fallbacks: please fill in a valid value for every "dest"', where
            )
        if fb.xver > 2:
            raise fail(
                f"{protocol} fallbacks: invalid PROXY protocol version, "
                '"xver" only accepts 0, 1, 2',
                f"{where}.xver",
            )
        if network not in _NETWORKS:
            raise fail(f"{describe(network)} is not a stream network Go can dial", f"{where}.type")
        address: str | bytes = dest
        if network == "unix" and dest.startswith("@"):
            # Go dials an address starting with "@" in the abstract namespace; 4.34 pads
            # an inferred "@@name" to the whole sun_path (as haproxy listens).
            name = dest[2:] if padded else dest[1:]
            raw = b"\0" + name.encode()
            address = raw.ljust(_SUN_PATH_BYTES, b"\0") if padded else raw
        resolved.append((fb.alpn, fb.path, network, address, fb.xver))
    return tuple(resolved)


class FallbackInboundSettings(ConfigModel):
    """What the VLESS and Trojan inbound ``settings`` share, read alike by 4.34:
    ``clients`` whose emails are unique case-insensitively (4.34 adds each through its
    validator at start: ``User X already exists.``), ``fallbacks`` as
    :func:`check_fallbacks` reads them, and ``fallback`` refused whatever its value
    (``protocol_name`` names the protocol in 4.34's messages)."""

    protocol_name: ClassVar[str]
    clients: tuple[Any, ...] = ()
    fallbacks: tuple[FallbackConfig, ...] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _no_fallback(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # 4.34's own words: it fails on the key whatever its value, null too (a
        # json.RawMessage), so this looks before nulls are dropped.
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key.lower() == "fallback":
                    raise fail(
                        f"{cls.protocol_name} settings: please use "
                        '"fallbacks":[{}] instead of "fallback":{}',
                        key,
                    )
        return handler(data)

    @model_validator(mode="after")
    def _fallbacks_and_emails(self) -> FallbackInboundSettings:
        check_fallbacks(self.fallbacks, self.protocol_name)
        seen: set[str] = set()
        for index, client in enumerate(self.clients):
            email = client.email.lower()
            if email and email in seen:
                raise fail(
                    f"User {printable(client.email)} already exists.", f"clients[{index}].email"
                )
            seen.add(email)
        return self
