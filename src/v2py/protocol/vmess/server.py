"""VMess server connection core (docs/spec/vmess.md sections 3-8, checklist 13).

Matches v2ray-core ``proxy/vmess/encoding/server.go`` (header decoding, drain,
response writing) and the session parts of ``proxy/vmess/inbound/inbound.go``
at v4.34.0.  Sans-I/O: ``receive_data`` / ``next_event`` / ``data_to_send``.

Theory of operation::

    AUTH --16 bytes--> AEAD_LENGTH --18+8--> AEAD_HEADER --L+16--+
      |                                                          +--> BODY
      +--legacy auth--> LEGACY_HEADER --CFB plaintext complete---+
    any header failure --> FAILED (VmessError raised once; drain or close)

``now`` is wall-clock Unix time (VMess timestamps are absolute).  Failure
handling follows spec 7: authentication failures raise ``VmessError`` with
``drain=True`` and the shell reads ``drain_remaining`` more bytes before
closing (probe resistance, as v2ray-core ``drainConnection``); other
failures close at once.  The server never writes a byte on failure.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from cryptography.hazmat.primitives.ciphers import CipherContext

from v2py.errors import LocalProtocolError, VmessError
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.body import BodyReader, BodyWriter, take_output
from v2py.protocol.vmess.commands import SwitchAccount, encode_command
from v2py.protocol.vmess.constants import RequestCommand, RequestOption, SecurityType
from v2py.protocol.vmess.events import (
    RequestReceived,
    StreamEnded,
    VmessEvent,
    feed_body_events,
)
from v2py.protocol.vmess.header import (
    AEAD_LENGTH_BLOCK,
    AEAD_NONCE_LEN,
    GCM_TAG_LEN,
    RequestHeader,
    decode_request_plaintext,
    encode_response_plaintext,
    legacy_iv,
    new_cfb_decryptor,
    new_cfb_encryptor,
    open_aead_request_length,
    open_aead_request_payload,
    request_plaintext_needed,
    response_keys,
    seal_aead_response,
)
from v2py.protocol.vmess.impl import DEFAULT_IMPL, VmessImpl
from v2py.protocol.vmess.validator import UserValidator

__all__ = ["VmessServerConnection", "ServerState"]

_AUTH_LEN = 16
_OPT_GLOBAL_PADDING = int(RequestOption.GLOBAL_PADDING)
_OPT_CHUNK_MASKING = int(RequestOption.CHUNK_MASKING)
_INSECURE = frozenset({SecurityType.UNKNOWN, SecurityType.LEGACY, SecurityType.NONE})
_KNOWN_BODY_SECURITY = frozenset(
    {
        SecurityType.LEGACY,
        SecurityType.AES_128_GCM,
        SecurityType.CHACHA20_POLY1305,
        SecurityType.NONE,
    }
)

Rng = Callable[[int], bytes]


class ServerState(Enum):
    """Server connection states (see module docstring)."""

    AUTH = "auth"
    AEAD_LENGTH = "aead_length"
    AEAD_HEADER = "aead_header"
    LEGACY_HEADER = "legacy_header"
    BODY = "body"
    FAILED = "failed"


class VmessServerConnection:
    """One inbound VMess connection (spec 13).

    Parameters: ``validator`` (the shared user table), ``now`` (Unix
    seconds), ``rng``, ``disable_insecure`` (spec 10
    ``disableInsecureEncryption``), ``impl`` (implementation choices),
    ``hint`` (the client's address: its last matched AEAD user is tried first,
    see :meth:`UserValidator.match_aead`).
    """

    def __init__(
        self,
        validator: UserValidator,
        *,
        now: float,
        rng: Rng,
        disable_insecure: bool = False,
        impl: VmessImpl = DEFAULT_IMPL,
        hint: object = None,
    ) -> None:
        self._validator = validator
        self._hint = hint
        self._impl = impl
        self._now = now
        self._rng = rng
        self._disable_insecure = disable_insecure
        self._state = ServerState.AUTH
        self._buf = bytearray()
        self._received = 0
        self._consumed = 0
        self._events: list[VmessEvent] = []  # a deque costs ~600 B more per connection
        self._out: list[bytes | bytearray] = []
        self._drain_budget = validator.drain_size(rng)
        self._user: VmessUser | None = None
        self._aead = False
        self._auth = b""
        self._legacy_ts = 0
        self._aead_len = 0
        self._cfb: CipherContext | None = None  # legacy header decryptor
        self._plain = bytearray()
        self._header: RequestHeader | None = None
        self._reader: BodyReader | None = None
        self._writer: BodyWriter | None = None
        self._response_sent = False
        self._response_cmd: SwitchAccount | None = None
        self._eof = False
        self._ended_reported = False
        self._packet = False

    # ------------------------------------------------------------ properties

    @property
    def state(self) -> ServerState:
        """Current state."""
        return self._state

    @property
    def bytes_consumed(self) -> int:
        """Header bytes consumed by the decoder so far."""
        return self._consumed

    @property
    def drain_budget(self) -> int:
        """Total bytes a 4.34 server reads before closing a failed connection (spec 7)."""
        return self._drain_budget

    @property
    def drain_remaining(self) -> int:
        """After a draining failure: bytes still to read and discard before closing."""
        return max(0, self._drain_budget - self._received)

    @property
    def header(self) -> RequestHeader | None:
        """The decoded request header, once received."""
        return self._header

    @property
    def user(self) -> VmessUser | None:
        """The authenticated user, once known."""
        return self._user

    # ------------------------------------------------------------ input

    def _fail(self, msg: str, *, drain: bool = False, tainted: bool = False) -> VmessError:
        self._state = ServerState.FAILED
        self._buf.clear()
        self._out.clear()
        return VmessError(msg, drain=drain, tainted=tainted)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float | None = None) -> None:
        """Feed bytes from the client (``b""`` = EOF).

        ``now`` (Unix seconds) updates the connection's clock for the header
        checks.  Raises VmessError on a bad header (after entering FAILED);
        afterwards input is ignored.
        """
        if now is not None:
            self._now = now
        if self._state is ServerState.FAILED:
            return
        if not data:
            self._eof = True
            if self._state is not ServerState.BODY:
                raise self._fail("connection closed during request header")
            self._body_eof()
            return
        self._received += len(data)
        if self._state is ServerState.BODY:
            self._feed_body(data)
            return
        self._buf += data
        self._parse_header()
        if self._reader is not None and self._buf:
            rest = bytes(self._buf)
            self._buf.clear()
            self._feed_body(rest)

    def _take(self, n: int) -> bytes:
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._consumed += n
        return chunk

    def _parse_header(self) -> None:
        v = self._validator
        while True:
            st = self._state
            if st is ServerState.AUTH:
                if len(self._buf) < _AUTH_LEN:
                    return
                auth = self._take(_AUTH_LEN)
                self._auth = auth
                try:
                    user = v.match_aead(auth, self._now, hint=self._hint)
                except VmessError as exc:
                    raise self._fail(str(exc), drain=True) from None
                if user is not None:
                    self._user = user
                    self._aead = True
                    self._state = ServerState.AEAD_LENGTH
                    continue
                match = v.lookup_legacy(auth)
                if match is None:
                    raise self._fail("invalid user", drain=True)
                if match.tainted:
                    raise self._fail("invalid user: tainted auth", drain=True, tainted=True)
                self._user = match.user
                self._legacy_ts = match.ts
                self._cfb = new_cfb_decryptor(match.user.cmd_key, legacy_iv(match.ts))
                self._state = ServerState.LEGACY_HEADER
            elif st is ServerState.AEAD_LENGTH:
                if len(self._buf) < AEAD_LENGTH_BLOCK + AEAD_NONCE_LEN:
                    return
                enc_len = bytes(self._buf[:AEAD_LENGTH_BLOCK])
                nonce = bytes(self._buf[AEAD_LENGTH_BLOCK : AEAD_LENGTH_BLOCK + AEAD_NONCE_LEN])
                assert self._user is not None
                n = open_aead_request_length(
                    self._user.cmd_key, self._auth, enc_len, nonce, kdf_impl=self._impl.kdf
                )
                self._take(AEAD_LENGTH_BLOCK + AEAD_NONCE_LEN)
                if n is None:
                    raise self._fail("AEAD header length authentication failed", drain=True)
                self._aead_len = n
                self._aead_nonce = nonce
                self._state = ServerState.AEAD_HEADER
            elif st is ServerState.AEAD_HEADER:
                need = self._aead_len + GCM_TAG_LEN
                if len(self._buf) < need:
                    return
                assert self._user is not None
                pt = open_aead_request_payload(
                    self._user.cmd_key,
                    self._auth,
                    self._take(need),
                    self._aead_nonce,
                    kdf_impl=self._impl.kdf,
                )
                if pt is None:
                    raise self._fail("AEAD header authentication failed", drain=True)
                if len(pt) < request_plaintext_needed(pt) or len(pt) < 38:
                    raise self._fail("AEAD header plaintext truncated")
                self._accept(pt)
                return
            elif st is ServerState.LEGACY_HEADER:
                assert self._cfb is not None
                while True:
                    need = request_plaintext_needed(self._plain)
                    if len(self._plain) >= need:
                        break
                    if not self._buf:
                        return
                    self._plain += self._cfb.update(
                        self._take(min(need - len(self._plain), len(self._buf)))
                    )
                self._accept(bytes(self._plain))
                return
            else:
                return

    def _accept(self, pt: bytes) -> None:
        """Apply the post-decryption checks in 4.34's order (spec 7, 13)."""
        v = self._validator
        user = self._user
        assert user is not None
        dec = decode_request_plaintext(pt)
        h = dec.header
        legacy = not self._aead
        if not v.check_session(user, h.body_key, h.body_iv, self._now):
            if legacy:
                v.burn_taint(self._auth, self._legacy_ts)
                raise self._fail("duplicated session id (replay?)", drain=True)
            raise self._fail("duplicated session id (replay?)")
        if not dec.checksum_ok:
            if legacy:
                v.burn_taint(self._auth, self._legacy_ts)
                raise self._fail("invalid request header checksum", drain=True)
            raise self._fail("invalid request header checksum")
        if not dec.address_valid:
            raise self._fail("invalid remote address")
        sec = h.security
        if sec == SecurityType.UNKNOWN:
            sec = SecurityType.LEGACY
        if sec not in _KNOWN_BODY_SECURITY:
            raise self._fail(f"unknown security type {sec}")
        option = int(h.option)
        if option & _OPT_GLOBAL_PADDING and not option & _OPT_CHUNK_MASKING:
            raise self._fail("option GlobalPadding without ChunkMasking")
        if self._disable_insecure and h.security in _INSECURE:
            raise self._fail("insecure encryption disabled")
        if h.command not in (RequestCommand.TCP, RequestCommand.UDP, RequestCommand.MUX):
            raise self._fail(f"unknown request command {h.command}")
        self._header = h
        self._packet = h.command == RequestCommand.UDP
        self._reader = BodyReader(
            sec, h.option, h.body_key, h.body_iv, packet=self._packet, impl=self._impl.body
        )
        self._state = ServerState.BODY
        self._cfb = None
        self._plain.clear()
        self._events.append(RequestReceived(header=h, user=user, aead=self._aead))

    def _feed_body(self, data: bytes | bytearray | memoryview) -> None:
        reader = self._reader
        assert reader is not None
        try:
            just_ended = feed_body_events(reader, data, packet=self._packet, events=self._events)
        except VmessError:
            self._state = ServerState.FAILED
            raise
        if just_ended:
            self._report_end()

    def _body_eof(self) -> None:
        self._report_end()

    def _report_end(self) -> None:
        if not self._ended_reported:
            self._ended_reported = True
            self._events.append(StreamEnded())

    def next_event(self) -> VmessEvent | None:
        """Pop the next event, or None."""
        return self._events.pop(0) if self._events else None

    # ------------------------------------------------------------ output

    def set_response_command(self, cmd: SwitchAccount | None) -> None:
        """Attach a SwitchAccount to the response header (before the first send)."""
        if self._response_sent:
            raise LocalProtocolError("response header already sent")
        self._response_cmd = cmd

    def _ensure_response(self) -> BodyWriter:
        if self._writer is not None:
            return self._writer
        h = self._header
        if self._state is not ServerState.BODY or h is None:
            raise LocalProtocolError("no request received")
        key, iv = response_keys(h.body_key, h.body_iv, self._aead)
        cmd = encode_command(self._response_cmd) if self._response_cmd is not None else None
        hdr = encode_response_plaintext(h.response_auth, cmd)
        sec = SecurityType.LEGACY if h.security == SecurityType.UNKNOWN else h.security
        cfb = None
        if self._aead:
            self._out.append(seal_aead_response(key, iv, hdr, kdf_impl=self._impl.kdf))
        else:
            cfb = new_cfb_encryptor(key, iv)
            self._out.append(cfb.update(hdr))
            if sec != SecurityType.LEGACY:
                cfb = None
        self._writer = BodyWriter(
            sec,
            h.option,
            key,
            iv,
            packet=self._packet,
            rng=self._rng,
            cfb_encryptor=cfb,
            impl=self._impl.body,
        )
        self._response_sent = True
        return self._writer

    def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue response stream data (with the response header first time); flush afterwards."""
        w = self._ensure_response()
        self._out.append(w.seal(data))

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one UDP response datagram as one chunk (spec 8.9), or drop it where 4.34
        would (:meth:`BodyWriter.packet_fits`); flush afterwards."""
        w = self._ensure_response()
        if w.packet_fits(len(data)):  # else dropped, as 4.34 drops it
            self._out.append(w.seal_packet(data))

    def send_eof(self) -> None:
        """Queue the end marker (and the header if nothing was sent); flush afterwards."""
        w = self._ensure_response()
        self._out.append(w.seal_end())

    @property
    def response_started(self) -> bool:
        """Whether the response header has been queued (with data, or by an end)."""
        return self._response_sent

    def end_before_data(self) -> None:
        """The response ended before any data: queue the bare response header and no
        end marker. 4.34's ``transferResponse`` fails its first read of the response,
        and the deferred ``Flush`` writes the header alone; the connection then ends
        (the shell closes it)."""
        self._ensure_response()

    def data_to_send(self) -> bytes | bytearray:
        """Return and clear the bytes to write to the client (a buffer nobody reuses)."""
        return take_output(self._out)
