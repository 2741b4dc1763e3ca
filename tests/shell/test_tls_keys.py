"""Private keys read by Go's rules (transport/pem.py): the label does not decide."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from v2py.transport.pem import go_private_key, go_private_key_pem

P = serialization.PrivateFormat
NONE = serialization.NoEncryption()


def _pem(label: str, der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (
        label.encode(),
        b"\n".join(lines),
        label.encode(),
    )


def _der(key: object, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, fmt, NONE)  # type: ignore[attr-defined, no-any-return]


EC = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.mark.parametrize(
    ("label", "key", "fmt"),
    [
        ("RSA PRIVATE KEY", EC, P.PKCS8),  # what v2ctl cert writes
        ("RSA PRIVATE KEY", RSA, P.TraditionalOpenSSL),  # PKCS #1
        ("EC PRIVATE KEY", EC, P.TraditionalOpenSSL),  # SEC 1
        ("PRIVATE KEY", RSA, P.PKCS8),
        ("EC PRIVATE KEY", RSA, P.PKCS8),
        ("PRIVATE KEY", ed25519.Ed25519PrivateKey.generate(), P.PKCS8),
    ],
)
def test_any_private_key_label_holds_any_of_gos_three_encodings(
    label: str, key: object, fmt: serialization.PrivateFormat
) -> None:
    pem = b"junk\n" + _pem("CERTIFICATE", b"\x30\x00") + _pem(label, _der(key, fmt))
    found = go_private_key(pem)
    assert found is not None
    assert _der(found, P.PKCS8) == _der(key, P.PKCS8)
    again = go_private_key_pem(pem)
    assert again is not None and again.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_what_go_refuses_is_refused() -> None:
    ed448_key = _der(ed448.Ed448PrivateKey.generate(), P.PKCS8)
    assert go_private_key(_pem("PRIVATE KEY", ed448_key)) is None  # not a type Go takes
    assert go_private_key(_pem("PUBLIC KEY", _der(EC, P.PKCS8))) is None  # not a key label
    assert go_private_key(_pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00")) is None
    assert go_private_key(b"no pem at all") is None
    # Go takes the first key block only.
    first_bad = _pem("PRIVATE KEY", b"\x30\x00") + _pem("PRIVATE KEY", _der(EC, P.PKCS8))
    assert go_private_key(first_bad) is None
