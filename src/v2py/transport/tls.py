"""TLS as a stream layer (v2ray-core 4.34 ``transport/internet/tls``), on stdlib ``ssl``.

A :class:`TlsStream` runs an ``ssl.SSLObject`` over ``MemoryBIO`` pairs on top of
any :class:`~v2py.transport.stream.Stream` (TCP, mKCP), so TLS composes under
WebSocket and the TCP HTTP header the way 4.34 stacks ``tls.Conn`` on a
``net.Conn``. :class:`TlsTransport` wraps another transport's ``dial``/``listen``.

What is matched to the 4.34 reference build (Go 1.19), per docs/spec/transports.md:

* ALPN: per-transport defaults (:data:`ALPN_DEFAULTS`); a server refuses an offer
  sharing nothing with its list with alert 120, except that an ``h2`` server lets an
  ``http/1.1`` client in without ALPN (Go's ``negotiateALPN``; OpenSSL would just
  continue, so the ClientHello is read first, see ``protocol/tls_hello.py``).
* SNI: ``serverName`` (``experiment:8357`` prefix stripped), else a domain
  destination; an IP destination without ``serverName`` sends none and then needs
  ``allowInsecure`` (Go refuses to start: the TCP connection is opened and closed).
  WebSocket (gorilla) uses the IP as the verification name instead.
* Server certificates: chosen by SNI as Go's ``getCertificate`` (exact name, then
  ``*.`` wildcard, else the first); ``usage: "issue"`` mints a leaf per SNI from the
  CA (ECDSA P-256, valid now-1h..now+1h, re-minted a minute after expiry).
* No session tickets unless ``enableSessionResumption`` (then one per handshake, and
  the client keeps an LRU of 128 sessions, as Go's ``ClientSessionCache``).
* Client handshakes run in ``dial``; server handshakes lazily on first I/O, so the
  proxy's handshake timeout covers them as in 4.34.

Known differences: OpenSSL's ClientHello and alerts are not Go's byte for byte, the
minimum version is TLS 1.2 (Go's server also takes 1.0/1.1), and an OpenSSL server
keeps a session-ID cache (a Go client never resumes by ID, so this is not visible
to 4.34 peers).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from v2py.common.net import is_ip
from v2py.config.stream import TlsCertificateConfig, TlsConfig
from v2py.errors import ConfigError
from v2py.protocol.tls_hello import (
    NO_APPLICATION_PROTOCOL_ALERT,
    alpn_refused,
    decode_client_hello_alpn,
)
from v2py.transport.layer import (
    DecodingLayerStream,
    InnerTransport,
    LayerAccept,
    LayerTransport,
)
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream

log = logging.getLogger(__name__)

__all__ = ["ALPN_DEFAULTS", "TlsSecurity", "TlsStream", "TlsTransport"]

#: (client offer, server list) when ``alpn`` is not configured, per network.
ALPN_DEFAULTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tcp": (("h2", "http/1.1"), ("h2",)),
    "ws": (("http/1.1",), ("h2", "http/1.1")),
    "kcp": (("h2", "http/1.1"), ("h2", "http/1.1")),
}
_GO_DEFAULT_ALPN = ("h2", "http/1.1")
EXPERIMENT_8357 = "experiment:8357"
#: Go's ``tls.NewLRUClientSessionCache(128)`` in 4.34's tls/config.go.
CLIENT_SESSION_CACHE_SIZE = 128
#: Leaves minted from an ``issue`` CA: valid this long either side of now.
ISSUED_VALIDITY = datetime.timedelta(hours=1)
#: ... and replaced once expired for longer than this.
ISSUED_GRACE = datetime.timedelta(minutes=1)
#: What Go's HTTP server answers when plain HTTP reaches its TLS port (ws+tls only).
HTTP_TO_HTTPS_REPLY = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
#: Largest batch of plaintext decrypted per arrival in push mode.
PUSH_BATCH_BYTES = 1 << 20
_HTTP_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _read_file(name: str) -> bytes:
    with open(name, "rb") as fh:
        return fh.read()


# --------------------------------------------------------------------------
# settings -> contexts


@dataclass
class _ServerCert:
    context: ssl.SSLContext
    pem: bytes
    #: Read only where they choose (:func:`server_certificates`, :func:`mint_leaf`).
    names: tuple[str, ...] = ()
    not_after: datetime.datetime | None = None


@dataclass
class IssuingCA:
    cert: object  # cryptography x509.Certificate
    key: object  # its private key


@dataclass
class _ServerContexts:
    certs: list[_ServerCert] = field(default_factory=list)
    cas: list[IssuingCA] = field(default_factory=list)
    base: ssl.SSLContext | None = None


class TlsSecurity:
    """TLS settings of one ``streamSettings``, turned into ``ssl`` contexts on first use.

    ``network`` picks the ALPN defaults; ``ip_server_name`` (WebSocket) verifies an IP
    destination by its address instead of refusing to dial it without ``serverName``.

    Raises:
        ConfigError: a certificate file cannot be read or holds no certificate
            (``path`` prefixes the JSON path in the message).
    """

    def __init__(
        self,
        config: TlsConfig,
        *,
        network: str,
        path: str = "streamSettings.tlsSettings",
        read_file: Callable[[str], bytes] = _read_file,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.config = config
        self.network = network
        self.ip_server_name = network == "ws"
        client_default, server_default = ALPN_DEFAULTS.get(
            network, (_GO_DEFAULT_ALPN, _GO_DEFAULT_ALPN)
        )
        self.client_alpn: tuple[str, ...] = config.alpn or client_default
        self.server_alpn: tuple[str, ...] = config.alpn or server_default
        self._path = path
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self._pems: list[tuple[TlsCertificateConfig, bytes, bytes | None]] = []
        for index, cert in enumerate(config.certificates):
            try:
                cert_pem, key_pem = cert.load_pem(read_file)
            except OSError as exc:
                raise ConfigError(
                    f"{path}.certificates[{index}]",
                    f"cannot read {cert.certificate_file or cert.key_file!r}: "
                    f"{exc.strerror or exc}",
                ) from None
            if not _PEM_CERT.search(cert_pem):
                raise ConfigError(f"{path}.certificates[{index}]", "no PEM certificate found in it")
            self._pems.append((cert, cert_pem, key_pem))
        self._client: ssl.SSLContext | None = None
        self._server: _ServerContexts | None = None
        self._sessions: collections.OrderedDict[str, ssl.SSLSession] = collections.OrderedDict()

    @property
    def server_name(self) -> str:
        """The configured name, ``experiment:8357`` prefix removed (4.34 ``parseServerName``)."""
        return self.config.server_name.removeprefix(EXPERIMENT_8357)

    # -- client -------------------------------------------------------------
    def client_context(self) -> ssl.SSLContext:
        """The client context (built once)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.config.allow_insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        listed = b"\n".join(block for _, pem, _ in self._pems for block in _PEM_CERT.findall(pem))
        if self.config.allow_insecure:
            # Nothing is verified; a loaded trust store would still cost ~0.3 ms of
            # OpenSSL time per handshake.
            listed = b""
        elif not self.config.disable_system_root:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if listed:
            # Every listed certificate is a root, whatever its usage (4.34 getCertPool).
            ctx.load_verify_locations(cadata=listed.decode("ascii", "replace"))
        ctx.set_alpn_protocols(list(self.client_alpn))
        if not self.config.enable_session_resumption:
            ctx.options |= ssl.OP_NO_TICKET
        return ctx

    def client_server_name(self, host: str) -> str | None:
        """SNI / verification name for a dial to ``host`` (None: none at all)."""
        name = self.server_name
        if name:
            return name
        if not is_ip(host) or self.ip_server_name:
            return host.strip("[]")
        return None

    def session_for(self, key: str) -> ssl.SSLSession | None:
        """A cached session for ``key`` (resumption enabled only)."""
        if not self.config.enable_session_resumption:
            return None
        session = self._sessions.get(key)
        if session is not None:
            self._sessions.move_to_end(key)
        return session

    def keep_session(self, key: str, session: ssl.SSLSession | None) -> None:
        """Remember ``session`` for ``key`` when it can be resumed."""
        if not self.config.enable_session_resumption or session is None:
            return
        if not session.has_ticket:
            return
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > CLIENT_SESSION_CACHE_SIZE:
            self._sessions.popitem(last=False)

    # -- server -------------------------------------------------------------
    def server_context(self) -> ssl.SSLContext:
        """The context a server connection starts with (its SNI callback picks the
        certificate)."""
        if self._server is None:
            self._server = self._make_server()
        assert self._server.base is not None
        return self._server.base

    def _context_for_server(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_alpn_protocols(list(self.server_alpn))
        if self.config.enable_session_resumption:
            ctx.num_tickets = 1
        else:
            ctx.options |= ssl.OP_NO_TICKET
            ctx.num_tickets = 0
        return ctx

    def _make_server(self) -> _ServerContexts:
        certs, cas = server_certificates(
            ((cert.usage, cert_pem, key_pem) for cert, cert_pem, key_pem in self._pems),
            self._load_pair,
            "tls",
        )
        contexts = _ServerContexts(certs=certs, cas=cas)
        base = contexts.certs[0].context if contexts.certs else self._context_for_server()
        if len(contexts.certs) <= 1 and not contexts.cas:
            # Nothing to choose: the lone certificate is served whatever the SNI (Go's
            # NameToCertificate), and no callback runs per handshake (~6 us).
            contexts.base = base
            return contexts
        select = self._selector(contexts)
        for ctx in {id(c.context): c.context for c in contexts.certs}.values():
            ctx.sni_callback = select
        if base.sni_callback is None:
            base.sni_callback = select
        contexts.base = base
        return contexts

    def _load_pair(self, cert_pem: bytes, key_pem: bytes | None) -> _ServerCert | None:
        if key_pem is None:
            return None
        ctx = self._context_for_server()
        with tempfile.TemporaryDirectory(prefix="v2py-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            with open(cert_path, "wb") as fh:
                fh.write(cert_pem)
            with open(key_path, "wb") as fh:
                fh.write(key_pem)
            try:
                ctx.load_cert_chain(cert_path, key_path)
            except (ssl.SSLError, OSError, ValueError):
                # A key OpenSSL cannot read by its label may be one Go reads
                # (v2ctl cert's "RSA PRIVATE KEY" around PKCS #8 ECDSA).
                from v2py.transport.pem import go_private_key_pem

                fixed = go_private_key_pem(key_pem)
                if fixed is None:
                    return None
                with open(key_path, "wb") as fh:
                    fh.write(fixed)
                try:
                    ctx.load_cert_chain(cert_path, key_path)
                except (ssl.SSLError, OSError, ValueError):
                    return None
        return _ServerCert(context=ctx, pem=cert_pem)

    def _selector(
        self, contexts: _ServerContexts
    ) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
        def select(obj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            chosen = self._choose(contexts, server_name or "")
            if chosen is not None and chosen is not obj.context:
                obj.context = chosen

        return select

    def _choose(self, contexts: _ServerContexts, name: str) -> ssl.SSLContext | None:
        chosen = choose_certificate(
            contexts.certs,
            name,
            issuing=bool(contexts.cas),
            now=self._now,
            mint=lambda wanted, now: self._mint(contexts.cas, wanted, now),
        )
        return chosen.context if chosen is not None else None

    def _mint(self, cas: list[IssuingCA], name: str, now: datetime.datetime) -> _ServerCert | None:
        minted = mint_leaf(cas, name, now, self._load_pair, "tls")
        if minted is not None:
            minted.context.sni_callback = None  # already chosen for its name
        return minted


def mint_leaf(
    cas: list[IssuingCA],
    name: str,
    now: datetime.datetime,
    load: Callable[[bytes, bytes | None], _C | None],
    what: str,
) -> _C | None:
    """A leaf for ``name`` (its names read) from the first issuing CA that makes one
    ``load`` takes (4.34 tries each CA in turn); failures are logged as
    ``<what>: ...``."""
    for ca in cas:
        try:
            cert_pem, key_pem = issue_leaf(ca, name, now)
        except (ValueError, TypeError) as exc:
            log.warning("%s: failed to issue a certificate for %r: %s", what, name, exc)
            continue
        loaded = load(cert_pem, key_pem)
        if loaded is not None:
            loaded.names, loaded.not_after = certificate_names(cert_pem)
            return loaded
    log.warning("%s: failed to create a new certificate for %r", what, name)
    return None


class NamedCertificate(Protocol):
    """A server certificate as :func:`server_certificates` and
    :func:`choose_certificate` see it: its PEM, and the names and expiry read from it
    (:func:`certificate_names`) where they choose."""

    pem: bytes
    names: tuple[str, ...]
    not_after: datetime.datetime | None


_C = TypeVar("_C", bound=NamedCertificate)


def server_certificates(
    pems: Iterable[tuple[str, bytes, bytes | None]],
    load: Callable[[bytes, bytes | None], _C | None],
    what: str,
) -> tuple[list[_C], list[IssuingCA]]:
    """The ``encipherment`` certificates ``load`` takes and the issuing CAs of ``pems``
    (usage, certificate PEM, key PEM), as 4.34 builds its TLS config: an invalid key
    pair or CA is skipped with a warning (``<what>: ...``), other usages are not
    served. Names are read only where they choose (several certificates, or issuing
    CAs): a lone certificate is always the one served, and cryptography's x509 is
    imported only when needed."""
    certs: list[_C] = []
    cas: list[IssuingCA] = []
    for index, (usage, cert_pem, key_pem) in enumerate(pems):
        if usage == "issue":
            ca = load_issuing_ca(cert_pem, key_pem)
            if ca is None:
                log.warning("%s: certificates[%d]: cannot use it as an issuing CA", what, index)
            else:
                cas.append(ca)
            continue
        if usage != "encipherment":
            continue
        loaded = load(cert_pem, key_pem)
        if loaded is None:
            # 4.34 skips an invalid key pair with a warning (tls/config.go).
            log.warning("%s: certificates[%d]: ignoring invalid X509 key pair", what, index)
            continue
        certs.append(loaded)
    if len(certs) > 1 or cas:
        for each in certs:
            each.names, each.not_after = certificate_names(each.pem)
    elif not certs:
        log.warning("%s: no usable server certificate; every handshake will fail", what)
    return certs, cas


def choose_certificate(
    certs: list[_C],
    name: str,
    *,
    issuing: bool,
    now: Callable[[], datetime.datetime],
    mint: Callable[[str, datetime.datetime], _C | None],
) -> _C | None:
    """The certificate 4.34 serves to a client asking for ``name`` (SNI, "" without):
    with issuing CAs (``usage: "issue"``), 4.34 ``getGetCertificateFunc``: an
    exact-name hit that has not expired, else a leaf ``mint`` makes for the name
    (appended to ``certs``; expired ones are dropped); otherwise Go's
    ``NameToCertificate``: the last certificate with the name, then with the name's
    wildcard, else the first. Used by TLS over TCP and by QUIC."""
    if issuing and (name or not certs):
        at = now()
        hit = next((c for c in certs if name in c.names), None)
        if hit is not None and not _expired(hit, at):
            return hit
        if hit is not None:
            certs[:] = [c for c in certs if not _expired(c, at)]
        minted = mint(name, at)
        if minted is not None:
            certs.append(minted)
        return minted
    if not certs:
        return None
    if len(certs) == 1:
        return certs[0]
    lowered = name.lower()
    # Go's NameToCertificate: later certificates overwrite earlier ones per name.
    for cert in reversed(certs):
        if lowered and lowered in cert.names:
            return cert
    if lowered:
        labels = lowered.split(".")
        labels[0] = "*"
        wildcard = ".".join(labels)
        for cert in reversed(certs):
            if wildcard in cert.names:
                return cert
    return certs[0]


def _expired(cert: NamedCertificate, now: datetime.datetime) -> bool:
    return cert.not_after is not None and cert.not_after < now - ISSUED_GRACE


def certificate_names(cert_pem: bytes) -> tuple[tuple[str, ...], datetime.datetime | None]:
    """Common name and DNS SANs of the first certificate (Go BuildNameToCertificate)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    match = _PEM_CERT.search(cert_pem)
    if match is None:
        return (), None
    try:
        cert = x509.load_pem_x509_certificate(match.group(0))
    except ValueError:
        return (), None
    names: list[str] = [
        str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names.extend(san.value.get_values_for_type(x509.DNSName))
    return tuple(names), cert.not_valid_after_utc


def load_issuing_ca(cert_pem: bytes, key_pem: bytes | None) -> IssuingCA | None:
    from cryptography import x509

    from v2py.transport.pem import read_private_key

    if key_pem is None:
        return None
    match = _PEM_CERT.search(cert_pem)
    if match is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(match.group(0))
    except ValueError:
        return None
    key = read_private_key(key_pem)  # also as Go reads it (v2ctl cert --ca's keys)
    if key is None:
        return None
    return IssuingCA(cert=cert, key=key)


def issue_leaf(ca: IssuingCA, name: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """A leaf for ``name`` signed by ``ca`` (4.34 ``common/protocol/tls/cert.Generate``)."""
    from v2py.transport.pem import generate_certificate

    return generate_certificate(
        common_name=name,
        not_before=now - ISSUED_VALIDITY,
        not_after=now + ISSUED_VALIDITY,
        dns_names=[name] if name else [],
        parent=(ca.cert, ca.key),
    )


# --------------------------------------------------------------------------
# the stream


class TlsStream(DecodingLayerStream):
    """TLS over another stream.

    Build with :meth:`client` (then ``await handshake()``) or :meth:`server` (the
    handshake then runs on the first ``read``/``drain``). Raises ``ssl.SSLError``
    (an OSError) or ConnectionError from I/O when the peer breaks TLS. Once the
    handshake is done it can push (when the stream below can): each arrival is
    decrypted in one batch and handed on.
    """

    def __init__(
        self,
        below: Stream,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        *,
        server_alpn: tuple[str, ...] | None = None,
        http_reply: bool = False,
        on_session: Callable[[ssl.SSLSession | None], None] | None = None,
    ) -> None:
        self._below = below
        self._obj = obj
        self._in = incoming
        self._out = outgoing
        self._server_alpn = server_alpn
        self._hello: bytearray | None = bytearray() if server_alpn is not None else None
        self._http_reply = http_reply
        self._on_session = on_session
        self._handshaken = False
        self._lock: asyncio.Lock | None = None
        self._pending: list[bytes] = []
        self._eof_pending = False
        self._eof_in = False
        self._write_closed = False
        self._closed = False
        self._push: PushTarget | None = None
        self._push_paused = False

    @classmethod
    def client(cls, below: Stream, security: TlsSecurity, host: str, port: int) -> TlsStream:
        """A client-side stream for a dial to ``host:port``; then ``await handshake()``.

        Raises:
            ssl.SSLError: no SNI can be sent and ``allowInsecure`` is off (Go refuses
                "either ServerName or InsecureSkipVerify must be specified").
        """
        ctx = security.client_context()
        name = security.client_server_name(host)
        if name is None and ctx.check_hostname:
            raise ssl.SSLError(
                "tls: either serverName or allowInsecure must be set to dial an IP address"
            )
        key = f"{name or host}:{port}"
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(
            incoming, outgoing, server_hostname=name, session=security.session_for(key)
        )
        return cls(
            below,
            obj,
            incoming,
            outgoing,
            # Reading SSLObject.session costs ~0.3 ms: only when sessions are kept.
            on_session=(lambda session: security.keep_session(key, session))
            if security.config.enable_session_resumption
            else None,
        )

    @classmethod
    def server(cls, below: Stream, security: TlsSecurity, *, http_reply: bool = False) -> TlsStream:
        """A server-side stream; ``http_reply`` answers plain HTTP as Go's HTTP server."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = security.server_context().wrap_bio(incoming, outgoing, server_side=True)
        return cls(
            below,
            obj,
            incoming,
            outgoing,
            server_alpn=security.server_alpn,
            http_reply=http_reply,
        )

    # -- handshake ------------------------------------------------------------
    @property
    def alpn(self) -> str | None:
        """The negotiated ALPN protocol (after the handshake)."""
        return self._obj.selected_alpn_protocol()

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed an earlier session."""
        return self._obj.session_reused

    @property
    def server_name(self) -> str | None:
        """The SNI the client sent (server side, after the handshake)."""
        return getattr(self._obj, "server_hostname", None)

    async def handshake(self) -> None:
        """Complete the handshake (once; concurrent callers wait for the first)."""
        if self._handshaken:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._handshaken:
                await self._run_handshake()

    async def _run_handshake(self) -> None:
        obj = self._obj
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                self._flush_out()  # OpenSSL's alert
                raise
            self._flush_out()
            data = await self._below.read()
            if not data:
                raise ConnectionResetError("connection closed during the TLS handshake")
            if self._hello is not None:
                self._hello += data
                if not self._check_hello():
                    continue
                data, self._hello = bytes(self._hello), None
            self._in.write(data)
        if self._server_alpn is not None:  # the server side
            self._flush_out()
        elif not self._pending and not self._eof_pending:
            # The client's last flight (TLS 1.3: its Finished) leaves with the first
            # record written in this loop turn (the request the caller writes next),
            # in one segment: one write here, one read for the server. The turn's end
            # sends it alone if nothing is written. (Queued writes below carry it too.)
            asyncio.get_running_loop().call_soon(self._flush_quietly)
        self._handshaken = True
        if self._on_session is not None:
            self._on_session(obj.session)
        if self._pending:
            pending, self._pending = self._pending, []
            self._write_now(b"".join(pending))
        if self._eof_pending:
            self.write_eof()

    def _check_hello(self) -> bool:
        """Server: True once the ClientHello may go to OpenSSL; raises to refuse it."""
        hello = self._hello
        assert hello is not None
        if hello[:1] != b"\x16":
            # Go: "first record does not look like a TLS handshake" ends it without an
            # alert; its HTTP server first answers what looks like plain HTTP.
            if self._http_reply:
                if len(hello) < len(_HTTP_STARTS[0]):
                    return False
                if bytes(hello[:5]) in _HTTP_STARTS:
                    with contextlib.suppress(ConnectionError):
                        self._below.write(HTTP_TO_HTTPS_REPLY)
            raise ssl.SSLError("first record does not look like a TLS handshake")
        found = decode_client_hello_alpn(hello)
        if found is None:
            return False
        if found.is_hello and alpn_refused(self._server_alpn or (), found.offered):
            with contextlib.suppress(ConnectionError):
                self._below.write(NO_APPLICATION_PROTOCOL_ALERT)
            raise ssl.SSLError("tls: client requested unsupported application protocols")
        return True

    def _flush_out(self) -> None:
        out = self._out.read()
        if out:
            self._below.write(out)

    def _flush_quietly(self) -> None:
        if not self._closed and self._out.pending:
            with contextlib.suppress(ConnectionError):
                self._flush_out()

    # -- Stream -----------------------------------------------------------------
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if not self._handshaken:
            await self.handshake()
        while True:
            data = self._decrypt(max_bytes)
            if data:
                return data
            if self._eof_in:
                return b""
            if self._in.eof:
                return b""  # the transport ended (without close_notify)
            cipher = await self._below.read()
            if cipher:
                self._in.write(cipher)
            else:
                # What OpenSSL still holds is read first (next loop), then the end.
                self._in.write_eof()

    def _decrypt(self, max_bytes: int) -> bytes:
        obj = self._obj
        incoming = self._in
        chunks: list[bytes] = []
        total = 0
        while total < max_bytes:
            if not incoming.pending and not incoming.eof and not obj.pending():
                break  # nothing to read: skip the raised SSLWantReadError (~1.4 us)
            try:
                piece = obj.read(max_bytes - total)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof_in = True
                break
            if not piece:
                self._eof_in = True
                break
            chunks.append(piece)
            total += len(piece)
        if self._out.pending:
            self._flush_out()  # post-handshake messages (key updates)
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._write_closed:
            raise ConnectionResetError("write on a closed TLS stream")
        if not self._handshaken:
            self._pending.append(bytes(data))
            return
        self._write_now(data)

    def _write_now(self, data: bytes | bytearray | memoryview) -> None:
        self._obj.write(data)
        self._below.write(self._out.read())

    async def drain(self) -> None:
        if not self._handshaken:
            await self.handshake()
        await self._below.drain()

    # -- push mode (DecodingLayerStream) -------------------------------------------
    @property
    def can_push(self) -> bool:
        return self._handshaken and bool(getattr(self._below, "can_push", False))

    def _take_held(self) -> bytes:
        return self._decrypt(PUSH_BATCH_BYTES)

    def _held_end(self) -> bool:
        return self._eof_in

    def pushed_data(self, data: bytes | bytearray) -> None:
        self._in.write(data)
        self._deliver()

    def pushed_eof(self) -> None:
        # OpenSSL reports the end (close_notify or not) after what it still holds;
        # _deliver hands both on, now or on resume.
        self._in.write_eof()
        self._deliver()

    def _deliver(self) -> None:
        """Decrypt and hand on (also on resume: what OpenSSL held from before the pause)."""
        target = self._push
        while target is not None and not self._push_paused:
            try:
                plain = self._decrypt(PUSH_BATCH_BYTES)
            except (ssl.SSLError, ConnectionError) as exc:
                self.stop_push()
                target.pushed_error(exc)
                return
            if plain:
                target.pushed_data(plain)
            if self._push is not target:
                return
            if self._eof_in:
                self.stop_push()
                target.pushed_eof()
                return
            if not plain:
                return

    def write_eof(self) -> None:
        """Send close_notify (Go ``CloseWrite``); reading goes on."""
        if self._write_closed or self._closed:
            return
        if not self._handshaken:
            self._eof_pending = True
            return
        self._write_closed = True
        with contextlib.suppress(ssl.SSLError):
            self._obj.unwrap()
        with contextlib.suppress(ConnectionError):
            self._flush_out()

    def close(self) -> None:
        if self._closed:
            return
        if self._handshaken and not self._write_closed:
            self.write_eof()
        self._closed = True
        if self._on_session is not None and self._handshaken:
            with contextlib.suppress(ssl.SSLError, ValueError):
                self._on_session(self._obj.session)
        self._below.close()


# --------------------------------------------------------------------------
# the transport


class TlsTransport(LayerTransport):
    """``security: "tls"`` over another transport (TCP or mKCP)."""

    def __init__(
        self, inner: InnerTransport, security: TlsSecurity, *, http_reply: bool = False
    ) -> None:
        super().__init__(inner)
        self.security = security
        self._http_reply = http_reply

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        below = await self.inner.dial(host, port, timeout=timeout)
        try:
            stream = TlsStream.client(below, self.security, host, port)
            async with asyncio.timeout_at(deadline):
                await stream.handshake()
        except BaseException:
            below.close()
            raise
        return stream

    def _accepting(self) -> LayerAccept:
        security = self.security
        security.server_context()  # build (and warn) once, before the first client
        http_reply = self._http_reply

        async def accept(below: Stream) -> Stream | None:
            return TlsStream.server(below, security, http_reply=http_reply)

        return accept
