"""Config models of the stream layers: ``tlsSettings``, ``wsSettings`` and the TCP
``header`` of type ``http`` (v2ray-core 4.34 ``infra/conf/transport_internet.go``,
``infra/conf/transport_authenticators.go``; docs/spec/transports.md in this project).

Certificate files are read while loading (as 4.34 does when it builds its config, so
``v2py test`` reports a missing file) through a ``read_file`` callable passed in the
validation context; this module itself does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from v2py.config.base import Bool, ConfigModel, Str, describe, fail, one_of

__all__ = [
    "HttpHeaderConfig",
    "HttpRequestConfig",
    "HttpResponseConfig",
    "TlsCertificateConfig",
    "TlsConfig",
    "WsConfig",
    "go_string_list",
]

#: Read a file's bytes (raises OSError); passed in the validation context as "read_file".
FileReader = Callable[[str], bytes]

_NOT_IN_434 = "not in V2Ray 4.34 (ignored there too), ignored"


def go_string_list(value: object) -> tuple[str, ...]:
    """4.34's ``StringList``: a JSON list of strings, or one string split at every comma.

    Unlike the socks/sniffing lists this keeps entries verbatim (no trimming, no
    dropping of empties, no de-duplication), as Go's ``strings.Split`` does.
    """
    if isinstance(value, str):
        return tuple(value.split(","))
    if isinstance(value, list):
        for entry in value:
            if not isinstance(entry, str):
                raise fail(f"{describe(entry)} is not a string")
        return tuple(value)
    raise fail(f"{describe(value)} is not a list of strings or a comma-separated string")


GoStringList = Annotated[tuple[str, ...], BeforeValidator(go_string_list)]


def _pem_lines(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{describe(value)} is not a list of PEM lines")
    return tuple(value)


PemLines = Annotated[tuple[str, ...], BeforeValidator(_pem_lines)]

_USAGES = {"encipherment": "encipherment", "verify": "verify", "issue": "issue"}


class TlsCertificateConfig(ConfigModel):
    """One ``tlsSettings.certificates`` entry.

    ``certificate_pem`` / ``key_pem`` are the loaded bytes: the file when its name is
    set, else the inline lines joined with newlines (4.34 ``readFileOrString``). They
    are filled while loading from JSON; built from Python without a reader, the
    transport reads the files itself.
    """

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"certificate_pem", "key_pem"})

    certificate_file: Str = ""
    certificate: PemLines = ()
    key_file: Str = ""
    key: PemLines = ()
    # 4.34 silently treats an unknown usage as "encipherment"; v2py refuses it.
    usage: Annotated[str, BeforeValidator(one_of(_USAGES))] = "encipherment"
    certificate_pem: bytes | None = None
    key_pem: bytes | None = None

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> TlsCertificateConfig:
        if not self.certificate_file and not self.certificate:
            raise fail(
                'missing; give "certificateFile" or "certificate" (a list of PEM lines)',
                "certificate",
            )
        reader: FileReader | None = (info.context or {}).get("read_file")
        if reader is None:
            return self
        cert = _read(reader, self.certificate_file, self.certificate, "certificateFile")
        key: bytes | None = None
        if self.key_file or self.key:
            key = _read(reader, self.key_file, self.key, "keyFile")
        object.__setattr__(self, "certificate_pem", cert)
        object.__setattr__(self, "key_pem", key)
        return self

    def load_pem(self, reader: FileReader) -> tuple[bytes, bytes | None]:
        """The certificate and key PEM bytes (key None when neither key field is set).

        Raises:
            OSError: a named file cannot be read.
        """
        if self.certificate_pem is not None:
            return self.certificate_pem, self.key_pem
        cert = _pick(reader, self.certificate_file, self.certificate)
        key = _pick(reader, self.key_file, self.key) if self.key_file or self.key else None
        return cert, key


def _pick(reader: FileReader, name: str, lines: tuple[str, ...]) -> bytes:
    if name:
        return reader(name)
    return "\n".join(lines).encode()


def _read(reader: FileReader, name: str, lines: tuple[str, ...], key: str) -> bytes:
    try:
        return _pick(reader, name, lines)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise fail(f"cannot read {describe(name)}: {reason}", key) from None


#: RFC 7301: a protocol name is 1 to 255 bytes.
MAX_ALPN_NAME_BYTES = 255


def _alpn_list(value: object) -> tuple[str, ...]:
    names = go_string_list(value)
    for name in names:
        if not 1 <= len(name.encode()) <= MAX_ALPN_NAME_BYTES:
            # Go would fail every handshake ("tls: invalid NextProtos value").
            raise fail(f"{describe(name)} is not an ALPN protocol name (1-255 bytes)")
    return names


class TlsConfig(ConfigModel):
    """``tlsSettings`` (read only when ``security`` is ``"tls"``, as in 4.34).

    ``alpn`` empty means the transport's default (docs/spec/transports.md section 3.3).
    """

    IGNORED_KEYS: ClassVar[Mapping[str, str]] = dict.fromkeys(
        (
            "pinnedpeercertificatechainsha256",
            "verifyclientcertificate",
            "fingerprint",
            "disablesessionresumption",
            "minversion",
            "maxversion",
            "ciphersuites",
            "rejectunknownsni",
        ),
        _NOT_IN_434,
    )

    server_name: Str = ""
    allow_insecure: Bool = False
    alpn: Annotated[tuple[str, ...], BeforeValidator(_alpn_list)] = ()
    certificates: tuple[TlsCertificateConfig, ...] = ()
    enable_session_resumption: Bool = False
    disable_system_root: Bool = False


def _ws_path(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a string")
    return value


class WsConfig(ConfigModel):
    """``wsSettings``. ``path`` is normalized as 4.34 does (``""`` -> ``"/"``, a
    leading ``/`` added); the legacy key ``Path`` is used when ``path`` is empty.

    The legacy key differs from ``path`` only in case, which the case-insensitive key
    matching cannot tell apart, so both are read from the raw JSON in ``normalize``.
    """

    IGNORED_KEYS: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("maxearlydata", "usebrowserforwarding", "earlydataheadername"), _NOT_IN_434
    )

    path: Annotated[str, BeforeValidator(_ws_path)] = "/"
    headers: Mapping[str, Str] = Field(default_factory=dict)
    accept_proxy_protocol: Bool = False

    @model_validator(mode="wrap")
    @classmethod
    def _legacy_path(cls, data: object, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(data, dict):
            exact = data.get("path")
            legacy = data.get("Path")
            others = {k: v for k, v in data.items() if k.lower() != "path"}
            chosen = exact if isinstance(exact, str) and exact else legacy
            if chosen is None or chosen == "":
                chosen = exact if exact is not None else "/"
            data = {**others, "path": chosen}
        return handler(data)

    @property
    def normalized_path(self) -> str:
        """The path the client requests and the server matches (4.34 ``GetNormalizedPath``)."""
        path = self.path
        if not path:
            return "/"
        return path if path.startswith("/") else "/" + path

    @property
    def host(self) -> str | None:
        """The ``Host`` override from ``headers`` (any case), or None."""
        for name, value in self.headers.items():
            if name.lower() == "host":
                return value
        return None


def _header_value_list(value: object) -> tuple[str, ...]:
    return go_string_list(value)


HeaderValues = Annotated[tuple[str, ...], BeforeValidator(_header_value_list)]

#: 4.34 defaults (``AuthenticatorRequest.Build``), in their written order.
DEFAULT_REQUEST_HEADERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Host", ("www.baidu.com", "www.bing.com")),
    (
        "User-Agent",
        (
            "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/53.0.2785.143 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 10_0_2 like Mac OS X) AppleWebKit/601.1 "
            "(KHTML, like Gecko) CriOS/53.0.2785.109 Mobile/14A456 Safari/601.1.46",
        ),
    ),
    ("Accept-Encoding", ("gzip, deflate",)),
    ("Connection", ("keep-alive",)),
    ("Pragma", ("no-cache",)),
)
DEFAULT_RESPONSE_HEADERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Content-Type", ("application/octet-stream", "video/mpeg")),
    ("Transfer-Encoding", ("chunked",)),
    ("Connection", ("keep-alive",)),
    ("Pragma", ("no-cache",)),
    ("Cache-Control", ("private", "no-cache")),
)


def _sorted_headers(
    headers: Mapping[str, tuple[str, ...]],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    # Go's sort.Strings: byte order of the names as written (map keys keep their case).
    return tuple((name, headers[name]) for name in sorted(headers, key=lambda n: n.encode()))


class HttpRequestConfig(ConfigModel):
    """``header.request`` of the TCP ``http`` header; empty values mean 4.34's defaults."""

    version: Str = ""
    method: Str = ""
    path: GoStringList = ()
    headers: Mapping[str, HeaderValues] = Field(default_factory=dict)

    @property
    def effective_version(self) -> str:
        """The HTTP version written after ``HTTP/``."""
        return self.version or "1.1"

    @property
    def effective_method(self) -> str:
        """The request method."""
        return self.method or "GET"

    @property
    def effective_paths(self) -> tuple[str, ...]:
        """Paths the client picks from and the server accepts."""
        return self.path or ("/",)

    @property
    def effective_headers(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(name, candidate values) in the order written: configured ones sorted by name."""
        return _sorted_headers(self.headers) if self.headers else DEFAULT_REQUEST_HEADERS


class HttpResponseConfig(ConfigModel):
    """``header.response`` of the TCP ``http`` header."""

    version: Str = ""
    status: Str = ""
    reason: Str = ""
    headers: Mapping[str, HeaderValues] = Field(default_factory=dict)

    @property
    def effective_version(self) -> str:
        """The HTTP version written after ``HTTP/``."""
        return self.version or "1.1"

    @property
    def effective_status(self) -> tuple[str, str]:
        """(code, reason); a reason alone keeps code 200 and vice versa (4.34)."""
        return (self.status or "200", self.reason or "OK")

    @property
    def effective_headers(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(name, candidate values) in the order written: configured ones sorted by name."""
        return _sorted_headers(self.headers) if self.headers else DEFAULT_RESPONSE_HEADERS


class HttpHeaderConfig(ConfigModel):
    """``tcpSettings.header`` with ``type: "http"``: both templates always exist (4.34)."""

    request: HttpRequestConfig = Field(default_factory=lambda: HttpRequestConfig())
    response: HttpResponseConfig = Field(default_factory=lambda: HttpResponseConfig())
