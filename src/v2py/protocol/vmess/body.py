"""VMess body framing: chunks, masking, padding, end marker (docs/spec/vmess.md section 8).

Matches v2ray-core ``common/crypto/{auth,chunk}.go`` and
``proxy/vmess/encoding/{auth,client,server}.go`` (body reader/writer
selection) at v4.34.0.

Shaped for throughput (STYLE "bulk data path"): one ``seal`` call turns a
whole socket read into many chunks in one buffer; one ``feed`` call opens
every complete chunk it was given.  AEAD objects are built once per
direction; the SHAKE128 mask is squeezed in blocks.

Body modes, by security and option bits:

=================  ==============  ==========================================
security           ChunkStream     framing
=================  ==============  ==========================================
AES-GCM / ChaCha   (any)           AEAD chunks (8.4); end marker only if 0x01
LEGACY             set             FNV chunks (8.4), whole stream under CFB
LEGACY             clear           raw AES-128-CFB stream, no end marker
NONE               set, stream     ChunkStream framing (8.7), size 0 = end
NONE               set, packet     plain chunks (8.4, overhead 0)
NONE               clear           raw bytes, no end marker
=================  ==============  ==========================================
"""

from __future__ import annotations

import enum
import hashlib
import struct
import sys
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import CipherContext
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from v2py.common.fnv import fnv1a32
from v2py.errors import VmessError
from v2py.protocol.vmess.constants import RequestOption, SecurityType
from v2py.protocol.vmess.header import new_cfb_decryptor, new_cfb_encryptor

__all__ = [
    "BodyWriter",
    "BodyReader",
    "ShakeMask",
    "chacha_key",
    "chunk_nonce",
    "max_chunk_payload",
    "take_output",
    "accelerator_available",
    "best_body_impl",
    "BodyImpl",
    "DEFAULT_BODY_IMPL",
    "CHUNK_BUFFER_SIZE",
    "NONE_STREAM_MAX_PAYLOAD",
    "MAX_CHUNK_SIZE",
]

CHUNK_BUFFER_SIZE = 2048  # v2ray's buf.Size: chunk budget incl. size field (spec 8.6)
NONE_STREAM_MAX_PAYLOAD = 8192  # spec 8.7
MAX_CHUNK_SIZE = 0xFFFF
MAX_PADDING = 64
AEAD_OVERHEAD = 16
FNV_OVERHEAD = 4
_MASK_BLOCK = 1024
_MASK_FIRST_BLOCK = 168  # the SHAKE128 rate
#: Mask words a reader peeks at a time (two per chunk with padding).
_MASK_BATCH = 64
_OPT_CHUNK_STREAM = int(RequestOption.CHUNK_STREAM)
_OPT_CHUNK_MASKING = int(RequestOption.CHUNK_MASKING)
_OPT_GLOBAL_PADDING = int(RequestOption.GLOBAL_PADDING)
_pack_u16 = struct.Struct(">H").pack_into

Rng = Callable[[int], bytes]

try:
    from cryptography.hazmat.primitives.hashes import SHAKE128, XOFHash

    _HAVE_XOF = True
except ImportError:  # pragma: no cover - cryptography < 45
    _HAVE_XOF = False

#: ``encrypt_into`` / ``decrypt_into`` (newer cryptography) let the hot paths work in place.
_HAVE_INTO = hasattr(AESGCM, "encrypt_into") and hasattr(ChaCha20Poly1305, "decrypt_into")

try:  # optional C accelerator (setup.py): whole batches of chunks per call
    from v2py import _chunkcrypt
except ImportError:  # not built, or no system libcrypto: the loops below do the work
    _chunkcrypt = None  # type: ignore[assignment]

_ACCEL_CIPHERS = {
    int(SecurityType.AES_128_GCM): "aes-128-gcm",
    int(SecurityType.CHACHA20_POLY1305): "chacha20-poly1305",
}


class BodyImpl(enum.Enum):
    """How AEAD chunks are sealed and opened (a constructor choice; every one puts
    identical bytes on the wire).

    ``C_BATCH``: whole batches of chunks per call in the optional C module
    ``v2py._chunkcrypt``; ``IN_PLACE``: ``cryptography``'s ``encrypt_into`` /
    ``decrypt_into`` into one buffer; ``GENERIC``: one ``encrypt``/``decrypt`` call
    and bytes object per chunk (the reference).
    """

    C_BATCH = "c-batch"
    IN_PLACE = "in-place"
    GENERIC = "generic"


def accelerator_available() -> bool:
    """True when the optional C module ``v2py._chunkcrypt`` loaded."""
    return _chunkcrypt is not None


def best_body_impl(*, accelerated: bool = True) -> BodyImpl:
    """The fastest implementation this process has (without C unless ``accelerated``)."""
    if accelerated and _chunkcrypt is not None:
        return BodyImpl.C_BATCH
    return BodyImpl.IN_PLACE if _HAVE_INTO else BodyImpl.GENERIC


#: What writers and readers use unless told otherwise.
DEFAULT_BODY_IMPL = best_body_impl()


def _make_accel(security: int, key: bytes, encrypt: bool, impl: BodyImpl) -> Any:
    name = _ACCEL_CIPHERS.get(int(security))
    if impl is not BodyImpl.C_BATCH or _chunkcrypt is None or name is None:
        return None
    real_key = chacha_key(key) if name == "chacha20-poly1305" else bytes(key)
    try:
        return _chunkcrypt.Aead(name, real_key, encrypt)
    except (ValueError, RuntimeError):  # cipher missing from this libcrypto
        return None


class ShakeMask:
    """SHAKE128(seed) read as 16-bit big-endian words (spec 8.5).

    The first block comes from hashlib (cheap, and most connections need no
    more); beyond it, an XOF squeezes further blocks (or, without an XOF API,
    hashlib's digest is recomputed at doubling lengths).  Only the unread tail is
    kept.  ``next`` reads one word; the batch paths ``peek`` many and ``skip`` the
    ones they used.
    """

    __slots__ = ("_buf", "_pos", "_xof", "_seed", "_made", "_block")

    def __init__(self, seed: bytes) -> None:
        self._seed = bytes(seed)
        self._buf = b""
        self._pos = 0
        self._made = 0  # bytes of the SHAKE stream produced so far
        self._block = _MASK_FIRST_BLOCK
        self._xof: XOFHash | None = None

    def _refill(self, need: int = 2) -> None:
        rest = self._buf[self._pos :]
        more = max(self._block, need - len(rest))
        self._block = min(2 * self._block, _MASK_BLOCK)
        made = self._made
        if made == 0 or not _HAVE_XOF:
            n = more if made == 0 else max(made + more, made * 2)
            fresh = hashlib.shake_128(self._seed).digest(n)[made:]
        else:
            xof = self._xof
            if xof is None:
                xof = self._xof = XOFHash(SHAKE128(digest_size=sys.maxsize))
                xof.update(self._seed)
                xof.squeeze(made)  # already produced by hashlib
            fresh = xof.squeeze(more)
            n = made + more
        self._made = n
        self._buf = rest + fresh
        self._pos = 0

    def next(self) -> int:
        """Consume and return the next 16-bit word."""
        p = self._pos
        if p + 2 > len(self._buf):
            self._refill()
            p = 0
        self._pos = p + 2
        return (self._buf[p] << 8) | self._buf[p + 1]

    def peek(self, count: int) -> tuple[int, ...]:
        """The next ``count`` words, not consumed (``skip`` consumes them)."""
        if self._pos + 2 * count > len(self._buf):
            self._refill(2 * count)
        return struct.unpack_from(f">{count}H", self._buf, self._pos)

    def peek_raw(self, count: int) -> bytes:
        """The next ``count`` words as raw big-endian bytes, not consumed."""
        if self._pos + 2 * count > len(self._buf):
            self._refill(2 * count)
        return self._buf[self._pos : self._pos + 2 * count]

    def skip(self, count: int) -> None:
        """Consume ``count`` words (at most as many as the last ``peek`` returned)."""
        self._pos += 2 * count


def take_output(parts: list[bytes | bytearray]) -> bytes | bytearray:
    """Join and clear a core's pending output parts without copying a lone part."""
    if not parts:
        return b""
    out = parts[0] if len(parts) == 1 else b"".join(parts)
    parts.clear()
    return out


def chacha_key(key16: bytes) -> bytes:
    """``MD5(K) || MD5(MD5(K))``, the 32-byte ChaCha20-Poly1305 key (spec 8.1)."""
    first = hashlib.md5(key16).digest()
    return first + hashlib.md5(first).digest()


def chunk_nonce(counter: int, iv: bytes) -> bytes:
    """AEAD chunk nonce ``u16(counter) || IV[2:12]`` (spec 8.4)."""
    return (counter & 0xFFFF).to_bytes(2, "big") + iv[2:12]


def _overhead(security: int) -> int:
    if security in (SecurityType.AES_128_GCM, SecurityType.CHACHA20_POLY1305):
        return AEAD_OVERHEAD
    if security == SecurityType.LEGACY:
        return FNV_OVERHEAD
    return 0


def max_chunk_payload(security: int, option: int) -> int:
    """Largest plaintext per stream chunk a 4.34 writer produces (spec 8.6)."""
    if security == SecurityType.NONE:
        return NONE_STREAM_MAX_PAYLOAD
    pad = MAX_PADDING if option & _OPT_GLOBAL_PADDING else 0
    return CHUNK_BUFFER_SIZE - _overhead(security) - 2 - pad


class _Mode:
    """Body mode derived from (security, option, packet); shared by reader and writer."""

    RAW = 0  # no framing (NONE / LEGACY without ChunkStream)
    CHUNKS = 1  # AuthenticationWriter framing (8.4)
    NONE_STREAM = 2  # ChunkStreamWriter framing (8.7)


def _select(security: int, option: int, packet: bool) -> tuple[int, int]:
    """Return (security, mode); UNKNOWN maps to LEGACY (spec 3)."""
    if security == SecurityType.UNKNOWN:
        security = SecurityType.LEGACY
    if security not in (
        SecurityType.LEGACY,
        SecurityType.AES_128_GCM,
        SecurityType.CHACHA20_POLY1305,
        SecurityType.NONE,
    ):
        raise ValueError(f"unsupported body security {security!r}")
    if option & _OPT_GLOBAL_PADDING and not option & _OPT_CHUNK_MASKING:
        # 4.34 would crash here (spec 8.2); refuse instead.
        raise ValueError("GlobalPadding (0x08) requires ChunkMasking (0x04)")
    chunked = bool(option & _OPT_CHUNK_STREAM)
    if security in (SecurityType.AES_128_GCM, SecurityType.CHACHA20_POLY1305):
        return security, _Mode.CHUNKS
    if not chunked:
        return security, _Mode.RAW
    if security == SecurityType.NONE and not packet:
        return security, _Mode.NONE_STREAM
    return security, _Mode.CHUNKS


def _make_aead(security: int, key: bytes) -> AESGCM | ChaCha20Poly1305 | None:
    if security == SecurityType.AES_128_GCM:
        return AESGCM(key)
    if security == SecurityType.CHACHA20_POLY1305:
        return ChaCha20Poly1305(chacha_key(key))
    return None


_AEAD_SECURITIES = (SecurityType.AES_128_GCM, SecurityType.CHACHA20_POLY1305)


class _LazyAead:
    """The ``cryptography`` AEAD object of a writer/reader, made on first use (with
    the C accelerator most connections never need it)."""

    _security: int
    _key: bytes
    _is_aead: bool
    _aead_obj: AESGCM | ChaCha20Poly1305 | None

    @property
    def _aead(self) -> AESGCM | ChaCha20Poly1305 | None:
        aead = self._aead_obj
        if aead is None and self._is_aead:
            aead = self._aead_obj = _make_aead(self._security, self._key)
        return aead


class BodyWriter(_LazyAead):
    """Seals one direction of a VMess body (spec 8).

    Parameters: ``security`` (SecurityType, not AUTO), ``option`` (request
    option byte), ``key``/``iv`` of this direction (spec 8.3), ``packet``
    for UDP (one chunk per datagram, 8.9), ``rng`` for padding bytes, and
    ``cfb_encryptor`` to continue an existing CFB stream (legacy response
    header, 6.3) for LEGACY security.  Raises ValueError for AUTO/unknown
    security or option 0x08 without 0x04.
    """

    def __init__(
        self,
        security: int,
        option: int,
        key: bytes,
        iv: bytes,
        *,
        packet: bool = False,
        rng: Rng,
        cfb_encryptor: CipherContext | None = None,
        impl: BodyImpl = DEFAULT_BODY_IMPL,
    ) -> None:
        option = int(option)
        self._security, self._mode = _select(security, option, packet)
        self._option = option
        self._packet = packet
        self._iv_tail = bytes(iv[2:12])
        self._rng = rng
        self._key = key
        self._aead_obj: AESGCM | ChaCha20Poly1305 | None = None
        self._is_aead = self._security in _AEAD_SECURITIES
        self._overhead = _overhead(self._security)
        self._counter = 0
        self._mask = ShakeMask(iv) if option & _OPT_CHUNK_MASKING else None
        self._padding = bool(option & _OPT_GLOBAL_PADDING)
        self._max_payload = max_chunk_payload(self._security, option)
        self._cfb: CipherContext | None = None
        if self._security == SecurityType.LEGACY:
            self._cfb = cfb_encryptor if cfb_encryptor is not None else new_cfb_encryptor(key, iv)
        self._ended = False
        self._in_place = self._is_aead and _HAVE_INTO and impl is not BodyImpl.GENERIC
        self._accel = (
            _make_accel(self._security, key, True, impl) if self._mode == _Mode.CHUNKS else None
        )

    @property
    def ended(self) -> bool:
        """True once ``seal_end`` was called."""
        return self._ended

    def _append_chunk(self, out: bytearray, payload: bytes | memoryview) -> None:
        pad = 0
        mask = self._mask
        if self._padding and mask is not None:
            pad = mask.next() % MAX_PADDING
        aead = self._aead
        if aead is not None:
            nonce = (self._counter & 0xFFFF).to_bytes(2, "big") + self._iv_tail
            self._counter += 1
            sealed: bytes | memoryview = aead.encrypt(nonce, payload, None)
        elif self._security == SecurityType.LEGACY:
            sealed = fnv1a32(payload).to_bytes(4, "big") + bytes(payload)
        else:
            sealed = payload
        size = len(sealed) + pad
        if size > MAX_CHUNK_SIZE:
            raise ValueError("chunk too large")
        if mask is not None:
            size ^= mask.next()
        out += size.to_bytes(2, "big")
        out += sealed
        if pad:
            out += self._rng(pad)

    def _finish(self, out: bytearray) -> bytes:
        if self._cfb is not None:
            return self._cfb.update(bytes(out))
        return bytes(out)

    def seal(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Seal stream data of any length into as many chunks as needed.

        Returns all chunks in one buffer, never reused by the writer (empty input → b"").
        """
        if self._ended:
            raise ValueError("seal after seal_end")
        n = len(data)
        if n == 0:
            return b""
        if self._mode == _Mode.RAW:
            return self._cfb.update(bytes(data)) if self._cfb is not None else bytes(data)
        mv = memoryview(data).cast("B")
        step = self._max_payload
        out = bytearray()
        if self._mode == _Mode.NONE_STREAM:
            mask = self._mask
            for off in range(0, n, step):
                piece = mv[off : off + step]
                size = len(piece)
                if mask is not None:
                    size ^= mask.next()
                out += size.to_bytes(2, "big")
                out += piece
            return bytes(out)
        accel = self._accel
        if accel is not None:
            return self._seal_accel(accel, mv, (n + step - 1) // step)
        if self._in_place:
            return self._seal_aead(mv, n, step)
        for off in range(0, n, step):
            self._append_chunk(out, mv[off : off + step])
        return self._finish(out)

    def _seal_accel(self, accel: Any, data: bytes | memoryview, nchunks: int) -> bytearray:
        """Seal ``data`` (``nchunks`` chunks; empty data: one empty chunk) with the C
        accelerator, handing it this writer's mask words, padding and counter."""
        masks = None
        mask = self._mask
        if mask is not None:
            words = 2 * nchunks if self._padding else nchunks
            masks = mask.peek_raw(words)
            mask.skip(words)
        sealed, self._counter = accel.seal(
            data, self._max_payload, self._iv_tail, self._counter, masks, self._padding, self._rng
        )
        return sealed  # type: ignore[no-any-return]

    def _seal_aead(self, mv: memoryview, n: int, step: int) -> bytearray:
        """AEAD chunks sealed in place into one buffer sized up front (the hot path)."""
        aead = self._aead
        assert aead is not None
        encrypt_into = aead.encrypt_into
        nchunks = (n + step - 1) // step
        mask = self._mask
        padding = self._padding
        pads: tuple[int, ...] | list[int] = ()
        sizes: tuple[int, ...] = ()
        total = n + nchunks * (2 + AEAD_OVERHEAD)
        pool = b""
        if mask is not None:
            words = mask.peek(2 * nchunks if padding else nchunks)
            mask.skip(len(words))
            if padding:
                pads = [w % MAX_PADDING for w in words[0::2]]
                sizes = words[1::2]
                pad_total = sum(pads)
                total += pad_total
                if pad_total:
                    pool = self._rng(pad_total)
            else:
                sizes = words
        out = bytearray(total)
        omv = memoryview(out)
        nonce = bytearray(2) + self._iv_tail
        counter = self._counter
        pos = 0
        pp = 0
        off = 0
        for i in range(nchunks):
            plen = step if n - off > step else n - off
            clen = plen + AEAD_OVERHEAD
            pad = pads[i] if padding else 0
            if mask is not None:
                _pack_u16(out, pos, (clen + pad) ^ sizes[i])
            else:
                _pack_u16(out, pos, clen)
            _pack_u16(nonce, 0, counter & 0xFFFF)
            counter += 1
            pos += 2
            encrypt_into(nonce, mv[off : off + plen], None, omv[pos : pos + clen])
            pos += clen
            off += plen
            if pad:
                omv[pos : pos + pad] = pool[pp : pp + pad]
                pos += pad
                pp += pad
        self._counter = counter
        return out

    def packet_fits(self, size: int) -> bool:
        """Whether a ``size``-byte datagram fits 4.34's 2048-byte chunk buffer with the
        padding the next chunk will draw (size field + sealed payload + padding).

        4.34's ``AuthenticationWriter.seal`` refuses a larger chunk and ``writePacket``
        silently skips that datagram (common/crypto/auth.go), so callers drop it too.
        The padding is only peeked: 4.34 consumes that draw without the size mask,
        which desynchronises the rest of its own session; v2py does not copy that.
        """
        if self._mode == _Mode.RAW:
            return True
        pad = 0
        if self._padding and self._mask is not None:
            pad = self._mask.peek(1)[0] % MAX_PADDING
        return 2 + size + self._overhead + pad <= CHUNK_BUFFER_SIZE

    def seal_packet(self, datagram: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Seal one UDP datagram as exactly one chunk (spec 8.9).

        Raises ValueError if it cannot fit in a 16-bit chunk size.
        """
        if self._ended:
            raise ValueError("seal after seal_end")
        if self._mode == _Mode.RAW:
            return self.seal(datagram)
        max_pad = MAX_PADDING - 1 if self._padding else 0
        if len(datagram) + self._overhead + max_pad > MAX_CHUNK_SIZE:
            raise ValueError("datagram too large for one chunk")
        out = bytearray()
        self._append_chunk(out, bytes(datagram))
        return self._finish(out)

    def seal_end(self) -> bytes:
        """The end-of-stream marker (spec 8.8); b"" when ChunkStream is not set."""
        if self._ended:
            return b""
        self._ended = True
        if not self._option & _OPT_CHUNK_STREAM or self._mode == _Mode.RAW:
            return b""
        out = bytearray()
        if self._mode == _Mode.NONE_STREAM:
            size = 0
            if self._mask is not None:
                size ^= self._mask.next()
            return size.to_bytes(2, "big")
        accel = self._accel
        if accel is not None:
            return bytes(self._seal_accel(accel, b"", 1))  # one empty chunk
        self._append_chunk(out, b"")
        return self._finish(out)


class BodyReader(_LazyAead):
    """Opens one direction of a VMess body (spec 8); the mirror of BodyWriter.

    Stream mode: ``feed(data)`` returns all plaintext completed so far.
    Packet mode: ``feed_packets(data)`` returns the datagrams completed.
    Partial chunks are buffered; chunk sizes up to 65535 are accepted.
    Authentication failure or a malformed size raises VmessError; bytes after
    the end marker are ignored.
    """

    def __init__(
        self,
        security: int,
        option: int,
        key: bytes,
        iv: bytes,
        *,
        packet: bool = False,
        cfb_decryptor: CipherContext | None = None,
        impl: BodyImpl = DEFAULT_BODY_IMPL,
    ) -> None:
        option = int(option)
        self._security, self._mode = _select(security, option, packet)
        self._packet = packet
        self._iv_tail = bytes(iv[2:12])
        self._key = key
        self._aead_obj: AESGCM | ChaCha20Poly1305 | None = None
        self._is_aead = self._security in _AEAD_SECURITIES
        self._overhead = _overhead(self._security)
        self._counter = 0
        self._mask = ShakeMask(iv) if option & _OPT_CHUNK_MASKING else None
        self._padding = bool(option & _OPT_GLOBAL_PADDING)
        self._cfb: CipherContext | None = None
        if self._security == SecurityType.LEGACY:
            self._cfb = cfb_decryptor if cfb_decryptor is not None else new_cfb_decryptor(key, iv)
        self._buf = bytearray()
        self._size = -1  # current chunk size (after unmasking), -1 = not read yet
        self._pad = 0
        self._ended = False
        self._fast = self._is_aead and not packet and _HAVE_INTO and impl is not BodyImpl.GENERIC
        self._accel = _make_accel(self._security, key, False, impl) if self._fast else None

    @property
    def ended(self) -> bool:
        """True once the end marker was seen."""
        return self._ended

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a chunk."""
        return len(self._buf)

    def _chunks(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._ended or not data:
            return []
        if self._cfb is not None:
            data = self._cfb.update(bytes(data))
        if self._mode == _Mode.RAW:
            return [bytes(data)]
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        mask = self._mask
        aead = self._aead
        none_stream = self._mode == _Mode.NONE_STREAM
        overhead = self._overhead
        try:
            while True:
                size = self._size
                if size < 0:
                    if end - pos < 2:
                        break
                    pad = 0
                    if mask is not None and self._padding and not none_stream:
                        pad = mask.next() % MAX_PADDING
                    size = (buf[pos] << 8) | buf[pos + 1]
                    if mask is not None:
                        size ^= mask.next()
                    pos += 2
                    if none_stream:
                        if size == 0:
                            self._ended = True
                            break
                    else:
                        if size == overhead + pad:
                            self._ended = True
                            break
                        if size < overhead + pad:
                            raise VmessError("chunk size smaller than overhead and padding")
                    self._size = size
                    self._pad = pad
                if end - pos < size:
                    break
                body = buf[pos : pos + size - self._pad]
                pos += size
                self._size = -1
                if aead is not None:
                    nonce = (self._counter & 0xFFFF).to_bytes(2, "big") + self._iv_tail
                    self._counter += 1
                    try:
                        out.append(aead.decrypt(nonce, body, None))
                    except InvalidTag:
                        raise VmessError("body chunk authentication failed") from None
                elif overhead:
                    payload = bytes(body[FNV_OVERHEAD:])
                    if fnv1a32(payload) != int.from_bytes(body[:FNV_OVERHEAD], "big"):
                        raise VmessError("body chunk checksum mismatch")
                    out.append(payload)
                else:
                    out.append(bytes(body))
        finally:
            if self._ended:
                buf.clear()
            else:
                del buf[:pos]
        return out

    def _size_field(self, hi: int, lo: int) -> int:
        """Unmask one AEAD size field and check it; -1 for the end marker.

        Sets ``_size``/``_pad`` for the chunk that follows.
        """
        mask = self._mask
        pad = 0
        if mask is not None and self._padding:
            pad = mask.next() % MAX_PADDING
        size = (hi << 8) | lo
        if mask is not None:
            size ^= mask.next()
        if size <= AEAD_OVERHEAD + pad:
            if size == AEAD_OVERHEAD + pad:
                self._ended = True
                return -1
            raise VmessError("chunk size smaller than overhead and padding")
        self._size = size
        self._pad = pad
        return size

    def _open_into(self, body: memoryview | bytearray, out: memoryview, opos: int) -> int:
        """Open one AEAD chunk body (padding cut off) into ``out[opos:]``; return its length."""
        aead = self._aead
        assert aead is not None
        plen = len(body) - AEAD_OVERHEAD
        nonce = (self._counter & 0xFFFF).to_bytes(2, "big") + self._iv_tail
        self._counter += 1
        try:
            aead.decrypt_into(nonce, body, None, out[opos : opos + plen])
        except InvalidTag:
            raise VmessError("body chunk authentication failed") from None
        return plen

    def _feed_aead(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Stream-mode AEAD: open every complete chunk of ``data`` into one new buffer.

        Only the chunk that straddles two reads is copied; everything else is opened
        in place from ``data``.
        """
        if self._ended or not data:
            return b""
        mv = memoryview(data).cast("B")
        end = len(mv)
        buf = self._buf
        out = bytearray(end + len(buf))
        omv = memoryview(out)
        opos = 0
        pos = 0
        if buf or self._size >= 0:
            # Finish the chunk left over from the previous read.
            if self._size < 0:
                pos = 2 - len(buf)
                buf += mv[:pos]
                if len(buf) < 2:
                    return b""
                size = self._size_field(buf[0], buf[1])
                buf.clear()
                if size < 0:
                    return b""
            size = self._size
            need = size - len(buf)
            if end - pos < need:
                buf += mv[pos:]
                return b""
            buf += mv[pos : pos + need]
            pos += need
            with memoryview(buf) as body:
                opos = self._open_into(body[: size - self._pad], omv, 0)
            buf.clear()
            self._size = -1
        if self._accel is not None:
            opos = self._open_accel(mv, pos, omv, opos)
            omv.release()
            if not opos:
                return b""
            del out[opos:]
            return out
        decrypt_into = self._aead.decrypt_into  # type: ignore[union-attr]
        nonce = bytearray(2) + self._iv_tail
        counter = self._counter
        mask = self._mask
        padding = self._padding
        words: tuple[int, ...] = ()
        wi = 0
        pad = 0
        try:
            while end - pos >= 2:
                size = (mv[pos] << 8) | mv[pos + 1]
                if mask is not None:
                    if wi + 2 > len(words):
                        mask.skip(wi)
                        words = mask.peek(_MASK_BATCH)
                        wi = 0
                    if padding:
                        pad = words[wi] % MAX_PADDING
                        size ^= words[wi + 1]
                        wi += 2
                    else:
                        size ^= words[wi]
                        wi += 1
                pos += 2
                if size <= AEAD_OVERHEAD + pad:
                    if size == AEAD_OVERHEAD + pad:
                        self._ended = True
                        break
                    raise VmessError("chunk size smaller than overhead and padding")
                if end - pos < size:
                    self._size = size
                    self._pad = pad
                    buf += mv[pos:]
                    pos = end
                    break
                plen = size - pad - AEAD_OVERHEAD
                _pack_u16(nonce, 0, counter & 0xFFFF)
                counter += 1
                try:
                    decrypt_into(nonce, mv[pos : pos + size - pad], None, omv[opos : opos + plen])
                except InvalidTag:
                    raise VmessError("body chunk authentication failed") from None
                opos += plen
                pos += size
            else:
                if pos < end:
                    buf += mv[pos:]
        finally:
            self._counter = counter
            if mask is not None:
                mask.skip(wi)
            if self._ended:
                buf.clear()
        omv.release()
        if not opos:
            return b""
        del out[opos:]
        return out

    def _open_accel(self, mv: memoryview, pos: int, omv: memoryview, opos: int) -> int:
        """The C accelerator's version of the loop in ``_feed_aead``; returns ``opos``."""
        accel = self._accel
        assert accel is not None
        mask = self._mask
        padding = self._padding
        per = 2 if padding else 1
        end = len(mv)
        masks = None
        batch = (end - pos) // CHUNK_BUFFER_SIZE + 2
        while True:
            if mask is not None:
                masks = mask.peek_raw(batch * per)
            status, pos, opos, self._counter, words, size, pad = accel.open(
                mv, pos, omv, opos, self._iv_tail, self._counter, masks, padding
            )
            if mask is not None:
                mask.skip(words)
            if status != 2:
                break
            batch *= 2
        if status == 0:
            if size >= 0:
                self._size = size
                self._pad = pad
            if pos < end:
                self._buf += mv[pos:]
        elif status == 1:
            self._ended = True
            self._buf.clear()
        elif status == -1:
            raise VmessError("body chunk authentication failed")
        else:
            raise VmessError("chunk size smaller than overhead and padding")
        return opos

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Consume stream-mode input; return all plaintext completed (maybe b"").

        The result is a new buffer the reader never touches again.
        """
        if self._fast:
            return self._feed_aead(data)
        chunks = self._chunks(data)
        if not chunks:
            return b""
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def feed_packets(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume packet-mode input; return the datagrams completed (spec 8.9)."""
        return self._chunks(data)
