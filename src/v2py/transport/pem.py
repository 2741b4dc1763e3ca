"""Private keys read as Go's ``tls.X509KeyPair`` reads them (4.34 tls/config.go), and
certificates made as 4.34's ``common/protocol/tls/cert.Generate`` makes them.

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
import datetime
import re
import secrets
from collections.abc import Sequence
from typing import Any

__all__ = ["generate_certificate", "go_private_key", "go_private_key_pem", "read_private_key"]

_BLOCK = re.compile(rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


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


def read_private_key(pem: bytes) -> Any | None:
    """The private key of ``pem`` (a ``cryptography`` key): as OpenSSL reads it by its
    label, else by Go's rules (:func:`go_private_key`); None when neither reads it."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return go_private_key(pem)


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


def generate_certificate(
    *,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    organization: str | None = None,
    dns_names: Sequence[str] = (),
    is_ca: bool = False,
    parent: tuple[Any, Any] | None = None,
) -> tuple[bytes, bytes]:
    """4.34's ``cert.Generate``: a fresh ECDSA P-256 key, a random serial below 2**128,
    key usage digital signature + key encipherment (+ certificate signing for a CA),
    extended key usage server authentication, basic constraints, subject ``O``, ``CN``,
    the DNS names; self-signed, or signed by ``parent`` (its certificate and key, whose
    subject key id becomes the authority key id). Returns the certificate and PKCS #8
    key PEM."""
    import contextlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(names)
    issuer_cert: x509.Certificate | None = parent[0] if parent is not None else None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbelow(1 << 128) or 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:  # Go (1.15+) gives a CA a subject key id
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if issuer_cert is not None:
        with contextlib.suppress(x509.ExtensionNotFound):
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
    signer = parent[1] if parent is not None else key
    cert = builder.sign(signer, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
