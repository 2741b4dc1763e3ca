"""Private keys read as Go's ``tls.X509KeyPair`` reads them (4.34 tls/config.go).

Go takes the first PEM block whose type is ``PRIVATE KEY`` or ends in
`` PRIVATE KEY`` and decodes its bytes as PKCS #1, then PKCS #8 (RSA, ECDSA or
Ed25519 inside), then SEC 1, whatever the label says. OpenSSL trusts the label, so a
key it cannot read may still be one 4.34 serves: ``v2ctl cert`` (4.34's own
certificate generator, used by V2Ray's guides) labels its PKCS #8 ECDSA keys
``RSA PRIVATE KEY``. :func:`go_private_key` re-reads such a key; callers first let
OpenSSL try, so ``cryptography`` is imported only for those.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

__all__ = ["go_private_key", "go_private_key_pem"]

_BLOCK = re.compile(
    rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


def _key_der(pem: bytes) -> bytes | None:
    """The bytes of the first private-key block (Go ``pem.Decode`` in a loop)."""
    for match in _BLOCK.finditer(pem):
        kind = match.group(1)
        if kind != b"PRIVATE KEY" and not kind.endswith(b" PRIVATE KEY"):
            continue
        # Header lines ("Proc-Type: ...") are not part of the body.
        body = b"".join(line for line in match.group(2).splitlines() if b":" not in line)
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            return None
    return None


def go_private_key(pem: bytes) -> Any | None:
    """The private key of ``pem`` by Go's rules (a ``cryptography`` key), or None."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    der = _key_der(pem)
    if der is None:
        return None
    try:
        # PKCS #8, else the traditional forms (PKCS #1 RSA, SEC 1 EC): Go's three.
        key = load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        return None
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    return None  # Go: "found unknown private key type in PKCS#8 wrapping"


def go_private_key_pem(pem: bytes) -> bytes | None:
    """:func:`go_private_key` as PKCS #8 PEM, which OpenSSL reads; None if Go would
    not read it either."""
    from cryptography.hazmat.primitives import serialization

    key = go_private_key(pem)
    if key is None:
        return None
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data
