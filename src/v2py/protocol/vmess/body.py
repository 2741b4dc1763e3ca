"""VMess body framing: chunks, masking, padding, end marker (spec vmess.md section 8).

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

import hashlib
import sys
from collections.abc import Callable

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

Rng = Callable[[int], bytes]

try:
    from cryptography.hazmat.primitives.hashes import SHAKE128, XOFHash

    _HAVE_XOF = True
except ImportError:  # pragma: no cover - cryptography < 45
    _HAVE_XOF = False


class ShakeMask:
    """SHAKE128(seed) read as 16-bit big-endian words (spec 8.5).

    Squeezes the XOF in blocks (or, without an XOF API, recomputes hashlib's
    digest at doubling lengths) and keeps only the unread tail.
    """

    __slots__ = ("_buf", "_pos", "_xof", "_seed", "_made")

    def __init__(self, seed: bytes) -> None:
        self._seed = bytes(seed)
        self._buf = b""
        self._pos = 0
        self._made = 0
        if _HAVE_XOF:
            self._xof = XOFHash(SHAKE128(digest_size=sys.maxsize))
            self._xof.update(self._seed)

    def _refill(self) -> None:
        rest = self._buf[self._pos :]
        if _HAVE_XOF:
            self._buf = rest + self._xof.squeeze(_MASK_BLOCK)
        else:  # pragma: no cover
            n = max(_MASK_BLOCK, self._made * 2)
            self._buf = rest + hashlib.shake_128(self._seed).digest(n)[self._made :]
            self._made = n
        self._pos = 0

    def next(self) -> int:
        """Consume and return the next 16-bit word."""
        p = self._pos
        if p + 2 > len(self._buf):
            self._refill()
            p = 0
        self._pos = p + 2
        return (self._buf[p] << 8) | self._buf[p + 1]


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
    pad = MAX_PADDING if option & RequestOption.GLOBAL_PADDING else 0
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
    if option & RequestOption.GLOBAL_PADDING and not option & RequestOption.CHUNK_MASKING:
        # 4.34 would crash here (spec 8.2); refuse instead.
        raise ValueError("GlobalPadding (0x08) requires ChunkMasking (0x04)")
    chunked = bool(option & RequestOption.CHUNK_STREAM)
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


class BodyWriter:
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
    ) -> None:
        self._security, self._mode = _select(security, option, packet)
        self._option = option
        self._packet = packet
        self._iv_tail = bytes(iv[2:12])
        self._rng = rng
        self._aead = _make_aead(self._security, key)
        self._overhead = _overhead(self._security)
        self._counter = 0
        self._mask = ShakeMask(iv) if option & RequestOption.CHUNK_MASKING else None
        self._padding = bool(option & RequestOption.GLOBAL_PADDING)
        self._max_payload = max_chunk_payload(self._security, option)
        self._cfb: CipherContext | None = None
        if self._security == SecurityType.LEGACY:
            self._cfb = cfb_encryptor if cfb_encryptor is not None else new_cfb_encryptor(key, iv)
        self._ended = False

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

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """Seal stream data of any length into as many chunks as needed.

        Returns all chunks as one bytes object (empty input → b"").
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
        aead = self._aead
        mask = self._mask
        if aead is not None and mask is not None:
            # Hot path (GCM/ChaCha with masking): everything in locals, one
            # rng call for all the padding of this batch.
            encrypt = aead.encrypt
            tail = self._iv_tail
            counter = self._counter
            nxt = mask.next
            padding = self._padding
            nchunks = (n + step - 1) // step
            pad_pool = self._rng(MAX_PADDING * nchunks) if padding else b""
            pp = 0
            for off in range(0, n, step):
                pad = nxt() % MAX_PADDING if padding else 0
                sealed = encrypt(
                    (counter & 0xFFFF).to_bytes(2, "big") + tail, mv[off : off + step], None
                )
                counter += 1
                out += ((len(sealed) + pad) ^ nxt()).to_bytes(2, "big")
                out += sealed
                if pad:
                    out += pad_pool[pp : pp + pad]
                    pp += pad
            self._counter = counter
            return bytes(out)
        for off in range(0, n, step):
            self._append_chunk(out, mv[off : off + step])
        return self._finish(out)

    def seal_packet(self, datagram: bytes | bytearray | memoryview) -> bytes:
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
        if not self._option & RequestOption.CHUNK_STREAM or self._mode == _Mode.RAW:
            return b""
        out = bytearray()
        if self._mode == _Mode.NONE_STREAM:
            size = 0
            if self._mask is not None:
                size ^= self._mask.next()
            return size.to_bytes(2, "big")
        self._append_chunk(out, b"")
        return self._finish(out)


class BodyReader:
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
    ) -> None:
        self._security, self._mode = _select(security, option, packet)
        self._packet = packet
        self._iv_tail = bytes(iv[2:12])
        self._aead = _make_aead(self._security, key)
        self._overhead = _overhead(self._security)
        self._counter = 0
        self._mask = ShakeMask(iv) if option & RequestOption.CHUNK_MASKING else None
        self._padding = bool(option & RequestOption.GLOBAL_PADDING)
        self._cfb: CipherContext | None = None
        if self._security == SecurityType.LEGACY:
            self._cfb = cfb_decryptor if cfb_decryptor is not None else new_cfb_decryptor(key, iv)
        self._buf = bytearray()
        self._size = -1  # current chunk size (after unmasking), -1 = not read yet
        self._pad = 0
        self._ended = False

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

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Consume stream-mode input; return all plaintext completed (maybe b"")."""
        chunks = self._chunks(data)
        if not chunks:
            return b""
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def feed_packets(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume packet-mode input; return the datagrams completed (spec 8.9)."""
        return self._chunks(data)
