"""Config models of the HTTP/2, QUIC and domain-socket transports: ``httpSettings``,
``quicSettings`` and ``dsSettings`` (v2ray-core 4.34 ``infra/conf/transport_internet.go``
``HTTPConfig``, ``QUICConfig``, ``DomainSocketConfig``; docs/spec/transports.md sections
4-6 in this project).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field, model_validator

from v2py.config.base import Bool, ConfigModel, Str, fail, one_of
from v2py.config.stream import GoStringList

__all__ = [
    "DEFAULT_HTTP_HOST",
    "QUIC_ABSENT_SECURITY",
    "DsConfig",
    "HttpConfig",
    "QuicConfig",
    "QuicHeaderConfig",
]

_NOT_IN_434 = "not in V2Ray 4.34 (ignored there too), ignored"

#: ``httpSettings.host`` when the list is empty (4.34 ``http.Config.getHosts``).
DEFAULT_HTTP_HOST = "www.example.com"

#: 4.34 with no ``quicSettings`` at all: security AUTO, which is AES-128-GCM on
#: amd64/arm64/s390x (``common/protocol/headers.go`` ``GetSecurityType``), key "".
QUIC_ABSENT_SECURITY = "aes-128-gcm"


class DsConfig(ConfigModel):
    """``dsSettings``: a Unix domain socket (``transport/internet/domainsocket``).

    ``abstract`` puts ``path`` in the Linux abstract namespace (``@`` prepended);
    ``padding`` then pads the address to the whole 108-byte ``sun_path``. 4.34 fails
    at listen/dial time on an empty path; v2py refuses it while loading.
    """

    path: Str = ""
    abstract: Bool = False
    padding: Bool = False

    @model_validator(mode="after")
    def _has_path(self) -> DsConfig:
        if not self.path:
            raise fail("empty domain socket path; set it", "path")
        return self


class HttpConfig(ConfigModel):
    """``httpSettings`` of ``network: "h2"`` (``transport/internet/http/config.go``).

    ``method`` and ``headers`` arrived in v4.39.0; 4.34 ignores them, so v2py warns.
    """

    IGNORED_KEYS: ClassVar[Mapping[str, str]] = dict.fromkeys(("method", "headers"), _NOT_IN_434)

    host: GoStringList = ()
    path: Str = ""

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts a client picks ``:authority`` from and a server accepts."""
        return self.host or (DEFAULT_HTTP_HOST,)

    @property
    def normalized_path(self) -> str:
        """``path`` with a leading ``/`` (4.34 ``getNormalizedPath``)."""
        path = self.path
        if not path:
            return "/"
        return path if path.startswith("/") else "/" + path


_QUIC_HEADERS = {
    name: name for name in ("none", "srtp", "utp", "wechat-video", "dtls", "wireguard")
}
# 4.34 maps every other string (typos included) to no encryption; v2py refuses them.
_QUIC_SECURITIES = {
    "": "none",
    "none": "none",
    "aes-128-gcm": "aes-128-gcm",
    "chacha20-poly1305": "chacha20-poly1305",
}


class QuicHeaderConfig(ConfigModel):
    """``quicSettings.header``: one of the mKCP packet obfuscators."""

    type: Annotated[str, BeforeValidator(one_of(_QUIC_HEADERS))] = "none"


class QuicConfig(ConfigModel):
    """``quicSettings``: the packet security (AEAD keyed from ``key``) and header.

    Absent altogether it is not "none": see :data:`QUIC_ABSENT_SECURITY` (the loader
    builds that default, as 4.34 does).
    """

    security: Annotated[
        str,
        BeforeValidator(
            one_of(_QUIC_SECURITIES, shown=("none", "aes-128-gcm", "chacha20-poly1305"))
        ),
    ] = "none"
    key: Str = ""
    header: QuicHeaderConfig = Field(default_factory=lambda: QuicHeaderConfig())

    @property
    def header_type(self) -> str:
        """The obfuscator name (``"none"``, ``"srtp"``, ...)."""
        return self.header.type
