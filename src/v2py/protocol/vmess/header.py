"""VMess request and response headers (docs/spec/vmess.md sections 3, 4, 5, 6).

Matches v2ray-core ``proxy/vmess/encoding/{client,server}.go`` and
``proxy/vmess/aead/{authid,encrypt}.go`` at v4.34.0.  Pure: time comes in as
``now``/``ts`` integers and randomness as ``rng(n) -> bytes``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:  # CFB moved to the "decrepit" namespace in cryptography 47
    from cryptography.hazmat.decrepit.ciphers.modes import CFB as _CFB
except ImportError:  # pragma: no cover
    _CFB = modes.CFB  # type: ignore[misc]

from v2py.common.fnv import fnv1a32
from v2py.common.net import canonical_ip, ip_text, pack_ip
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.constants import AddressType, RequestCommand
from v2py.protocol.vmess.kdf import DEFAULT_KDF_IMPL, KdfImpl, kdf, kdf16

__all__ = [
    "RequestHeader",
    "DecodedRequest",
    "encode_request_plaintext",
    "request_plaintext_needed",
    "decode_request_plaintext",
    "auth_id_key",
    "create_auth_id",
    "decode_auth_id",
    "aead_header_keys",
    "seal_aead_request",
    "open_aead_request_length",
    "open_aead_request_payload",
    "legacy_auth",
    "legacy_iv",
    "choose_legacy_identity",
    "seal_legacy_request",
    "new_cfb_encryptor",
    "new_cfb_decryptor",
    "response_keys",
    "encode_response_plaintext",
    "seal_aead_response",
    "aead_response_keys",
    "open_aead_response_length",
    "open_aead_response_payload",
    "MAX_DOMAIN_LEN",
    "AEAD_TIME_WINDOW_S",
    "LEGACY_TS_JITTER",
    "REQUEST_FIXED_LEN",
    "AEAD_LENGTH_BLOCK",
    "AEAD_NONCE_LEN",
    "GCM_TAG_LEN",
]

REQUEST_FIXED_LEN = 38  # version .. command (spec 3)
GCM_TAG_LEN = 16
AEAD_LENGTH_BLOCK = 2 + GCM_TAG_LEN  # sealed u16 length (spec 5.4)
AEAD_NONCE_LEN = 8
AEAD_TIME_WINDOW_S = 120  # spec 5.3
LEGACY_TS_JITTER = (-30, 29)  # inclusive, spec 4.1
MAX_DOMAIN_LEN = 255
MUX_COOL_HOST = "v1.mux.cool"

_AUTH_ID_LABEL = b"AES Auth ID Encryption"
_HDR_LEN_KEY = b"VMess Header AEAD Key_Length"
_HDR_LEN_NONCE = b"VMess Header AEAD Nonce_Length"
_HDR_KEY = b"VMess Header AEAD Key"
_HDR_NONCE = b"VMess Header AEAD Nonce"
_RESP_LEN_KEY = b"AEAD Resp Header Len Key"
_RESP_LEN_IV = b"AEAD Resp Header Len IV"
_RESP_KEY = b"AEAD Resp Header Key"
_RESP_IV = b"AEAD Resp Header IV"

_DOMAIN_RE = re.compile(rb"[0-9A-Za-z._-]+")
Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """The parts of a VMess request header that matter after decoding (spec 3).

    ``address`` is an IP literal (``"127.0.0.1"``, ``"::1"``) or a domain;
    for ``RequestCommand.MUX`` it is ``"v1.mux.cool"`` and port 0.
    ``security`` is the wire nibble (0..5) as an int or SecurityType.
    """

    body_iv: bytes
    body_key: bytes
    response_auth: int
    option: int
    security: int
    command: int
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """Raw result of :func:`decode_request_plaintext`; the server applies the checks.

    ``address`` is None when the address type is unknown or invalid.
    """

    header: RequestHeader
    address_valid: bool
    checksum_ok: bool


def _encode_address(address: str) -> bytes:
    packed = pack_ip(address)
    if packed is None:
        raw = address.encode("ascii")
        if not raw or len(raw) > MAX_DOMAIN_LEN:
            raise ValueError(f"domain length out of range: {address!r}") from None
        return bytes((AddressType.DOMAIN, len(raw))) + raw
    if len(packed) == 4:
        return bytes((AddressType.IPV4,)) + packed
    return bytes((AddressType.IPV6,)) + packed


def encode_request_plaintext(h: RequestHeader, padding: bytes) -> bytes:
    """Encode the request "command section" of spec 3, FNV checksum included.

    ``padding`` (0..15 bytes) becomes the P nibble and the padding bytes.
    Raises ValueError for bad field sizes or addresses.
    """
    if len(h.body_iv) != 16 or len(h.body_key) != 16:
        raise ValueError("body key and IV are 16 bytes")
    if len(padding) > 15:
        raise ValueError("padding is at most 15 bytes")
    buf = bytearray()
    buf.append(1)
    buf += h.body_iv
    buf += h.body_key
    buf.append(h.response_auth & 0xFF)
    buf.append(h.option & 0xFF)
    buf.append((len(padding) << 4) | (int(h.security) & 0x0F))
    buf.append(0)
    buf.append(int(h.command))
    if h.command != RequestCommand.MUX:
        buf += int(h.port).to_bytes(2, "big")
        buf += _encode_address(h.address)
    buf += padding
    buf += fnv1a32(buf).to_bytes(4, "big")
    return bytes(buf)


def request_plaintext_needed(prefix: bytes | bytearray) -> int:
    """Total plaintext length, as far as ``prefix`` allows knowing it (spec 3).

    Returns a length ``n``; if ``len(prefix) >= n`` the plaintext is complete
    at ``n``, otherwise at least ``n`` bytes are needed before asking again.
    """
    if len(prefix) < REQUEST_FIXED_LEN:
        return REQUEST_FIXED_LEN
    pad = prefix[35] >> 4
    if prefix[37] == RequestCommand.MUX:
        return REQUEST_FIXED_LEN + pad + 4
    if len(prefix) < 41:
        return 41
    atype = prefix[40]
    if atype == AddressType.IPV4:
        addr_len = 4
    elif atype == AddressType.IPV6:
        addr_len = 16
    elif atype == AddressType.DOMAIN:
        if len(prefix) < 42:
            return 42
        addr_len = 1 + prefix[41]
    else:
        addr_len = 0
    return 41 + addr_len + pad + 4


def _decode_domain(raw: bytes) -> str | None:
    if raw[:1] == b"[" or raw[:1].isdigit():
        try:
            ip = canonical_ip(raw.strip(b"[]").decode("ascii"))
        except UnicodeDecodeError:
            ip = None
        if ip is not None:
            return ip
    if _DOMAIN_RE.fullmatch(raw) is None:
        return None
    return raw.decode("ascii")


def decode_request_plaintext(pt: bytes | bytearray) -> DecodedRequest:
    """Decode a complete request plaintext (length from request_plaintext_needed).

    Never raises for content problems; reports them in the result.  Raises
    ValueError only if ``pt`` is shorter than its own declared length.
    """
    pt = bytes(pt)
    total = request_plaintext_needed(pt)
    if len(pt) < total:
        raise ValueError("incomplete request plaintext")
    pad = pt[35] >> 4
    command = pt[37]
    address: str | None
    port = 0
    if command == RequestCommand.MUX:
        address = MUX_COOL_HOST
    else:
        port = int.from_bytes(pt[38:40], "big")
        atype = pt[40]
        if atype == AddressType.IPV4:
            address = ip_text(pt[41:45])
        elif atype == AddressType.IPV6:
            address = ip_text(pt[41:57])
        elif atype == AddressType.DOMAIN:
            address = _decode_domain(pt[42 : 42 + pt[41]])
        else:
            address = None
    body_end = total - 4
    checksum_ok = fnv1a32(pt[:body_end]) == int.from_bytes(pt[body_end:total], "big")
    del pad
    header = RequestHeader(
        body_iv=pt[1:17],
        body_key=pt[17:33],
        response_auth=pt[33],
        option=pt[34],
        security=pt[35] & 0x0F,
        command=command,
        address=address or "",
        port=port,
    )
    return DecodedRequest(header=header, address_valid=address is not None, checksum_ok=checksum_ok)


# ---------------------------------------------------------------- AEAD (spec 5)


#: Users whose AuthID encryptor a client keeps ready.
_AUTH_ID_CACHE_SIZE = 1024


def auth_id_key(cmd_key: bytes) -> bytes:
    """AES-128 key that encrypts AuthIDs for this user (spec 5.3)."""
    return kdf16(cmd_key, _AUTH_ID_LABEL)


@functools.lru_cache(maxsize=_AUTH_ID_CACHE_SIZE)
def _auth_id_encryptor(cmd_key: bytes) -> Any:
    """One AES-128-ECB context per user: ECB keeps no state between whole blocks, so
    the context is reused for every AuthID (a client seals one per connection)."""
    return Cipher(algorithms.AES(auth_id_key(cmd_key)), modes.ECB()).encryptor()


def create_auth_id(cmd_key: bytes, now: int, rand4: bytes) -> bytes:
    """``AuthID`` of spec 5.3 for second ``now`` and 4 random bytes."""
    plain = int(now).to_bytes(8, "big", signed=True) + rand4
    plain += zlib.crc32(plain).to_bytes(4, "big")
    return _auth_id_encryptor(bytes(cmd_key)).update(plain)  # type: ignore[no-any-return]


def decode_auth_id(plain: bytes) -> int | None:
    """Check the CRC of a decrypted AuthID block; return its timestamp or None."""
    if zlib.crc32(plain[:12]) != int.from_bytes(plain[12:16], "big"):
        return None
    return int.from_bytes(plain[:8], "big", signed=True)


def aead_header_keys(
    cmd_key: bytes, auth_id: bytes, nonce: bytes, *, kdf_impl: KdfImpl = DEFAULT_KDF_IMPL
) -> tuple[bytes, bytes, bytes, bytes]:
    """``(K_len, N_len, K_hdr, N_hdr)`` of spec 5.2."""
    return (
        kdf16(cmd_key, _HDR_LEN_KEY, auth_id, nonce, impl=kdf_impl),
        kdf(cmd_key, _HDR_LEN_NONCE, auth_id, nonce, impl=kdf_impl)[:12],
        kdf16(cmd_key, _HDR_KEY, auth_id, nonce, impl=kdf_impl),
        kdf(cmd_key, _HDR_NONCE, auth_id, nonce, impl=kdf_impl)[:12],
    )


def seal_aead_request(
    cmd_key: bytes,
    plaintext: bytes,
    now: int,
    rng: Rng,
    *,
    auth_rand: bytes | None = None,
    conn_nonce: bytes | None = None,
    kdf_impl: KdfImpl = DEFAULT_KDF_IMPL,
) -> bytes:
    """Seal a request plaintext into the AEAD header of spec 5.4.

    ``now`` is the Unix second (a 4.34 client uses the exact second).  The
    AuthID random part and the connection nonce come from ``rng`` unless given.
    """
    rand4 = auth_rand if auth_rand is not None else rng(4)
    nonce = conn_nonce if conn_nonce is not None else rng(AEAD_NONCE_LEN)
    auth_id = create_auth_id(cmd_key, now, rand4)
    k_len, n_len, k_hdr, n_hdr = aead_header_keys(cmd_key, auth_id, nonce, kdf_impl=kdf_impl)
    enc_len = AESGCM(k_len).encrypt(n_len, len(plaintext).to_bytes(2, "big"), auth_id)
    enc_hdr = AESGCM(k_hdr).encrypt(n_hdr, bytes(plaintext), auth_id)
    return auth_id + enc_len + nonce + enc_hdr


def open_aead_request_length(
    cmd_key: bytes,
    auth_id: bytes,
    enc_len: bytes,
    nonce: bytes,
    *,
    kdf_impl: KdfImpl = DEFAULT_KDF_IMPL,
) -> int | None:
    """Open the sealed header length (spec 5.4); None if authentication fails."""

    try:
        raw = AESGCM(kdf16(cmd_key, _HDR_LEN_KEY, auth_id, nonce, impl=kdf_impl)).decrypt(
            kdf(cmd_key, _HDR_LEN_NONCE, auth_id, nonce, impl=kdf_impl)[:12],
            bytes(enc_len),
            auth_id,
        )
    except InvalidTag:
        return None
    return int.from_bytes(raw, "big")


def open_aead_request_payload(
    cmd_key: bytes,
    auth_id: bytes,
    enc_hdr: bytes,
    nonce: bytes,
    *,
    kdf_impl: KdfImpl = DEFAULT_KDF_IMPL,
) -> bytes | None:
    """Open the sealed header plaintext (spec 5.4); None if authentication fails."""

    try:
        return AESGCM(kdf16(cmd_key, _HDR_KEY, auth_id, nonce, impl=kdf_impl)).decrypt(
            kdf(cmd_key, _HDR_NONCE, auth_id, nonce, impl=kdf_impl)[:12], bytes(enc_hdr), auth_id
        )
    except InvalidTag:
        return None


# ---------------------------------------------------------------- legacy (spec 4)


def legacy_auth(id16: bytes, ts: int) -> bytes:
    """``HMAC-MD5(id, u64(ts))``, the 16-byte legacy authenticator (spec 4.1)."""
    return hmac.digest(id16, int(ts).to_bytes(8, "big"), hashlib.md5)


def legacy_iv(ts: int) -> bytes:
    """``MD5(u64(ts) * 4)``, the IV of the legacy header CFB (spec 4.1)."""
    return hashlib.md5(int(ts).to_bytes(8, "big") * 4).digest()


def choose_legacy_identity(user: VmessUser, now: int, rng: Rng) -> tuple[bytes, int]:
    """Pick ``(id16, ts)`` as a 4.34 legacy client does (spec 4.1).

    ``ts`` is ``now`` plus a uniform offset in [-30, +29]; the ID is a uniform
    random alter ID, or the primary when alter_id == 0.
    """
    lo, hi = LEGACY_TS_JITTER
    span = hi - lo + 1
    ts = int(now) + lo + int.from_bytes(rng(4), "big") % span
    if user.alter_id > 0:
        idx = int.from_bytes(rng(4), "big") % user.alter_id
        return user.alter_id_list[idx], ts
    return user.id, ts


def new_cfb_encryptor(key: bytes, iv: bytes) -> CipherContext:
    """A streaming AES-128-CFB (CFB128) encryptor."""
    return Cipher(algorithms.AES(key), _CFB(iv)).encryptor()


def new_cfb_decryptor(key: bytes, iv: bytes) -> CipherContext:
    """A streaming AES-128-CFB (CFB128) decryptor."""
    return Cipher(algorithms.AES(key), _CFB(iv)).decryptor()


def seal_legacy_request(cmd_key: bytes, auth_id16: bytes, plaintext: bytes, ts: int) -> bytes:
    """Legacy header of spec 4.1: ``HMAC-MD5(id, ts) || CFB(cmdKey, IVts)(plaintext)``.

    ``cmd_key`` is the *primary* ID's cmdKey; ``auth_id16`` is the ID that
    makes the authenticator (an alter ID when alterId > 0).
    """
    enc = new_cfb_encryptor(cmd_key, legacy_iv(ts))
    return legacy_auth(auth_id16, ts) + enc.update(bytes(plaintext))


# ---------------------------------------------------------------- response (spec 6)


def response_keys(req_key: bytes, req_iv: bytes, aead: bool) -> tuple[bytes, bytes]:
    """``(respKey, respIV)`` of spec 6.1: SHA256[:16] for AEAD, MD5 for legacy."""
    if aead:
        return hashlib.sha256(req_key).digest()[:16], hashlib.sha256(req_iv).digest()[:16]
    return hashlib.md5(req_key).digest(), hashlib.md5(req_iv).digest()


def encode_response_plaintext(v: int, command: tuple[int, bytes] | None = None) -> bytes:
    """Response header plaintext of spec 6.2.

    ``command`` is ``(cmd_id, cmd_data)`` where cmd_data already carries its
    FNV prefix (see commands.encode_command).
    """
    if command is None:
        return bytes((v & 0xFF, 0, 0, 0))
    cmd_id, data = command
    if len(data) > 255:
        raise ValueError("response command longer than 255 bytes")
    return bytes((v & 0xFF, 0, cmd_id, len(data))) + data


def aead_response_keys(
    resp_key: bytes, resp_iv: bytes, *, kdf_impl: KdfImpl = DEFAULT_KDF_IMPL
) -> tuple[bytes, bytes, bytes, bytes]:
    """``(len_key, len_nonce, hdr_key, hdr_nonce)`` of spec 6.4."""
    return (
        kdf16(resp_key, _RESP_LEN_KEY, impl=kdf_impl),
        kdf(resp_iv, _RESP_LEN_IV, impl=kdf_impl)[:12],
        kdf16(resp_key, _RESP_KEY, impl=kdf_impl),
        kdf(resp_iv, _RESP_IV, impl=kdf_impl)[:12],
    )


def seal_aead_response(
    resp_key: bytes, resp_iv: bytes, hdr: bytes, *, kdf_impl: KdfImpl = DEFAULT_KDF_IMPL
) -> bytes:
    """AEAD response header of spec 6.4 (no AAD)."""
    lk, ln, hk, hn = aead_response_keys(resp_key, resp_iv, kdf_impl=kdf_impl)
    return AESGCM(lk).encrypt(ln, len(hdr).to_bytes(2, "big"), None) + AESGCM(hk).encrypt(
        hn, bytes(hdr), None
    )


def open_aead_response_length(
    resp_key: bytes, resp_iv: bytes, enc_len: bytes, *, kdf_impl: KdfImpl = DEFAULT_KDF_IMPL
) -> int | None:
    """Open the 18-byte sealed response length; None on authentication failure."""

    try:
        raw = AESGCM(kdf16(resp_key, _RESP_LEN_KEY, impl=kdf_impl)).decrypt(
            kdf(resp_iv, _RESP_LEN_IV, impl=kdf_impl)[:12], bytes(enc_len), None
        )
    except InvalidTag:
        return None
    return int.from_bytes(raw, "big")


def open_aead_response_payload(
    resp_key: bytes, resp_iv: bytes, enc_hdr: bytes, *, kdf_impl: KdfImpl = DEFAULT_KDF_IMPL
) -> bytes | None:
    """Open the sealed response header; None on authentication failure."""

    try:
        return AESGCM(kdf16(resp_key, _RESP_KEY, impl=kdf_impl)).decrypt(
            kdf(resp_iv, _RESP_IV, impl=kdf_impl)[:12], bytes(enc_hdr), None
        )
    except InvalidTag:
        return None
