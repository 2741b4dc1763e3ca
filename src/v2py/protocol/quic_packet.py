"""The UDP wrapping of 4.34's QUIC transport (v2ray-core ``transport/internet/quic/conn.go``
``sysConn``, ``config.go`` ``getAuth``; docs/spec/transports.md section 5.2). Pure module.

A datagram on the wire is::

    header (H bytes, an mKCP obfuscator) || nonce (12 random bytes) || AEAD(QUIC packet)

* The AEAD key is SHA-256(``key`` || ``"v2ray-quic-salt"``): AES-128-GCM takes its first
  16 bytes, ChaCha20-Poly1305 all 32. There is no associated data. Security ``none``
  has neither nonce nor tag.
* The header comes from the mKCP obfuscators (``protocol/mkcp/packet.py``); a receiver
  only skips its size, as 4.34 does.
* A datagram not longer than the header (or than the header plus nonce), or one that
  fails to decrypt, is dropped: :meth:`QuicPacketCodec.open` returns None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from v2py.protocol.mkcp.packet import PacketHeader, make_header

__all__ = ["NONCE_BYTES", "QUIC_SALT", "QuicPacketCodec", "quic_key"]

#: Salt appended to ``quicSettings.key`` before hashing (4.34 ``getAuth``).
QUIC_SALT = b"v2ray-quic-salt"
#: Nonce size of both AEADs.
NONCE_BYTES = 12
_AES_128_KEY_BYTES = 16

Rng = Callable[[int], bytes]


def quic_key(key: str) -> bytes:
    """SHA-256(key || salt): the 32-byte AEAD key material."""
    return hashlib.sha256(key.encode() + QUIC_SALT).digest()


class QuicPacketCodec:
    """Seals QUIC packets into datagrams and opens them again.

    One codec belongs to one UDP socket (a listener or one dialed connection): the
    header counters advance per datagram sent. ``security`` is ``"none"``,
    ``"aes-128-gcm"`` or ``"chacha20-poly1305"``; ``header`` an mKCP header type.

    Raises:
        ValueError: an unknown security or header name.
    """

    def __init__(self, *, security: str, key: str, header: str, rng: Rng) -> None:
        self._rng = rng
        self.header: PacketHeader = make_header(header, rng)
        material = quic_key(key)
        self._aead: AESGCM | ChaCha20Poly1305 | None
        if security == "none":
            self._aead = None
        elif security == "aes-128-gcm":
            self._aead = AESGCM(material[:_AES_128_KEY_BYTES])
        elif security == "chacha20-poly1305":
            self._aead = ChaCha20Poly1305(material)
        else:
            raise ValueError(f"unknown QUIC security {security!r}")

    @property
    def transparent(self) -> bool:
        """True when datagrams pass unchanged (no header, no security)."""
        return self._aead is None and self.header.size == 0

    def seal(self, packet: bytes) -> bytes:
        """The datagram carrying ``packet`` (advances the header counters)."""
        head = self.header.next_header()
        if self._aead is None:
            return head + packet
        nonce = self._rng(NONCE_BYTES)
        return head + nonce + self._aead.encrypt(nonce, packet, None)

    def open(self, datagram: bytes) -> bytes | None:
        """The QUIC packet inside ``datagram``, or None to drop it."""
        skip = self.header.size
        if skip and len(datagram) <= skip:
            return None
        payload = datagram[skip:] if skip else datagram
        if self._aead is None:
            return payload
        if len(payload) <= NONCE_BYTES:
            return None
        try:
            return self._aead.decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:], None)
        except InvalidTag:
            return None
