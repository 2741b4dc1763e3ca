"""VMess client connection core (docs/spec/vmess.md sections 2-8, checklist 12).

Matches v2ray-core ``proxy/vmess/encoding/client.go`` and the session parts
of ``proxy/vmess/outbound/outbound.go`` at v4.34.0.  Sans-I/O:
``data_to_send`` starts with the sealed request header; ``receive_data``
parses the response header, then the response body.

States: RESPONSE_HEADER (waiting for the response header) -> BODY; any
response-header failure -> FAILED (VmessError raised once).  A 4.34 server
answers nothing on failure, so "EOF before any response" also raises.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from cryptography.hazmat.primitives.ciphers import CipherContext

from v2py.errors import LocalProtocolError, VmessError
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.body import BodyReader, BodyWriter, take_output
from v2py.protocol.vmess.commands import SwitchAccount, decode_command
from v2py.protocol.vmess.constants import RequestCommand, SecurityType, client_options
from v2py.protocol.vmess.events import (
    ResponseReceived,
    StreamEnded,
    VmessEvent,
    feed_body_events,
)
from v2py.protocol.vmess.header import (
    AEAD_LENGTH_BLOCK,
    GCM_TAG_LEN,
    RequestHeader,
    choose_legacy_identity,
    encode_request_plaintext,
    new_cfb_decryptor,
    open_aead_response_length,
    open_aead_response_payload,
    response_keys,
    seal_aead_request,
    seal_legacy_request,
)
from v2py.protocol.vmess.impl import DEFAULT_IMPL, VmessImpl

__all__ = ["VmessClientConnection", "ClientState"]

_RESPONSE_FIXED = 4
_MAX_REQUEST_PADDING = 16

Rng = Callable[[int], bytes]


class ClientState(Enum):
    """Client connection states."""

    RESPONSE_HEADER = "response_header"
    BODY = "body"
    FAILED = "failed"


class VmessClientConnection:
    """One outbound VMess connection (spec 12).

    ``security`` must be resolved (not AUTO/UNKNOWN).  ``use_aead`` selects
    the AEAD header (a 4.34 client uses it iff alterId == 0, spec 2).
    ``now`` is wall-clock Unix seconds.  ``padding_env`` mirrors
    V2RAY_VMESS_PADDING (spec 8.2).  Raises ValueError for bad arguments.
    """

    def __init__(
        self,
        user: VmessUser,
        security: SecurityType,
        *,
        command: RequestCommand,
        address: str,
        port: int,
        now: float,
        rng: Rng,
        use_aead: bool,
        padding_env: bool = False,
        option: int | None = None,
        impl: VmessImpl = DEFAULT_IMPL,
    ) -> None:
        if security in (SecurityType.AUTO, SecurityType.UNKNOWN) or security not in SecurityType:
            raise ValueError("security must be resolved before use")
        self._rng = rng
        self._aead = use_aead
        self._impl = impl
        self._security = SecurityType(security)
        opt = client_options(self._security, padding_env) if option is None else option
        body_iv = rng(16)
        body_key = rng(16)
        v = rng(1)[0]
        padding = rng(rng(1)[0] % _MAX_REQUEST_PADDING)
        self._request = RequestHeader(
            body_iv=body_iv,
            body_key=body_key,
            response_auth=v,
            option=opt,
            security=self._security,
            command=command,
            address=address,
            port=port,
        )
        plaintext = encode_request_plaintext(self._request, padding)
        ts = int(now)
        if use_aead:
            sealed = seal_aead_request(user.cmd_key, plaintext, ts, rng, kdf_impl=self._impl.kdf)
        else:
            id16, lts = choose_legacy_identity(user, ts, rng)
            sealed = seal_legacy_request(user.cmd_key, id16, plaintext, lts)
        self._out: list[bytes | bytearray] = [sealed]
        self._packet = command == RequestCommand.UDP
        self._writer = BodyWriter(
            self._security, opt, body_key, body_iv, packet=self._packet, rng=rng, impl=impl.body
        )
        self._resp_key, self._resp_iv = response_keys(body_key, body_iv, use_aead)
        self._state = ClientState.RESPONSE_HEADER
        self._buf = bytearray()
        self._events: list[VmessEvent] = []  # a deque costs ~600 B more per connection
        self._reader: BodyReader | None = None
        self._cfb = None if use_aead else new_cfb_decryptor(self._resp_key, self._resp_iv)
        self._hdr_plain = bytearray()
        self._aead_len: int | None = None
        self._ended_reported = False

    @property
    def state(self) -> ClientState:
        """Current state."""
        return self._state

    @property
    def request(self) -> RequestHeader:
        """The request header this connection sent."""
        return self._request

    # ------------------------------------------------------------ output

    def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue request stream data; flush afterwards."""
        self._out.append(self._writer.seal(data))

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one UDP datagram as one chunk (spec 8.9), or drop it where 4.34 would
        (:meth:`BodyWriter.packet_fits`); flush afterwards."""
        if not self._packet:
            raise LocalProtocolError("send_datagram on a stream connection")
        if self._writer.packet_fits(len(data)):  # else dropped, as 4.34 drops it
            self._out.append(self._writer.seal_packet(data))

    def send_eof(self) -> None:
        """Queue the end marker (spec 8.8); flush afterwards."""
        self._out.append(self._writer.seal_end())

    def data_to_send(self) -> bytes | bytearray:
        """Return and clear the bytes to write to the server (a buffer nobody reuses)."""
        return take_output(self._out)

    # ------------------------------------------------------------ input

    def _fail(self, msg: str) -> VmessError:
        self._state = ClientState.FAILED
        self._buf.clear()
        return VmessError(msg)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the server (``b""`` = EOF). Raises VmessError on a bad response."""
        if self._state is ClientState.FAILED:
            return
        if not data:
            if self._state is ClientState.RESPONSE_HEADER:
                raise self._fail("connection closed before the response header")
            self._report_end()
            return
        if self._state is ClientState.BODY:
            self._feed_body(data)
            return
        self._buf += data
        if self._aead:
            self._parse_aead()
        else:
            self._parse_legacy()
        if self._reader is not None and self._buf:
            rest = bytes(self._buf)
            self._buf.clear()
            self._feed_body(rest)

    def _parse_aead(self) -> None:
        if self._aead_len is None:
            if len(self._buf) < AEAD_LENGTH_BLOCK:
                return
            n = open_aead_response_length(
                self._resp_key,
                self._resp_iv,
                bytes(self._buf[:AEAD_LENGTH_BLOCK]),
                kdf_impl=self._impl.kdf,
            )
            if n is None:
                raise self._fail("response header length authentication failed")
            del self._buf[:AEAD_LENGTH_BLOCK]
            self._aead_len = n
        need = self._aead_len + GCM_TAG_LEN
        if len(self._buf) < need:
            return
        hdr = open_aead_response_payload(
            self._resp_key, self._resp_iv, bytes(self._buf[:need]), kdf_impl=self._impl.kdf
        )
        del self._buf[:need]
        if hdr is None:
            raise self._fail("response header authentication failed")
        if len(hdr) < _RESPONSE_FIXED or len(hdr) < _RESPONSE_FIXED + hdr[3] * (hdr[2] != 0):
            raise self._fail("response header truncated")
        self._accept(hdr, None)

    def _parse_legacy(self) -> None:
        cfb = self._cfb
        assert cfb is not None
        while True:
            p = self._hdr_plain
            need = (
                _RESPONSE_FIXED
                if len(p) < _RESPONSE_FIXED
                else (_RESPONSE_FIXED + (p[3] if p[2] != 0 else 0))
            )
            if len(p) >= need:
                break
            if not self._buf:
                return
            take = min(need - len(p), len(self._buf))
            p += cfb.update(bytes(self._buf[:take]))
            del self._buf[:take]
        keep = cfb if self._security == SecurityType.LEGACY else None
        self._accept(bytes(self._hdr_plain), keep)

    def _accept(self, hdr: bytes, cfb: CipherContext | None) -> None:
        if hdr[0] != self._request.response_auth:
            raise self._fail("unexpected response header (V mismatch)")
        cmd: SwitchAccount | None = None
        if hdr[2] != 0:
            cmd = decode_command(hdr[2], hdr[4 : 4 + hdr[3]])
        self._reader = BodyReader(
            self._security,
            self._request.option,
            self._resp_key,
            self._resp_iv,
            packet=self._packet,
            cfb_decryptor=cfb,
            impl=self._impl.body,
        )
        self._state = ClientState.BODY
        self._events.append(ResponseReceived(command=cmd))

    def _feed_body(self, data: bytes | bytearray | memoryview) -> None:
        reader = self._reader
        assert reader is not None
        try:
            just_ended = feed_body_events(reader, data, packet=self._packet, events=self._events)
        except VmessError:
            self._state = ClientState.FAILED
            raise
        if just_ended:
            self._report_end()

    def _report_end(self) -> None:
        if not self._ended_reported:
            self._ended_reported = True
            self._events.append(StreamEnded())

    def next_event(self) -> VmessEvent | None:
        """Pop the next event, or None."""
        return self._events.pop(0) if self._events else None
