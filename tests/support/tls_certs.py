"""Certificates made in the test with ``cryptography``: a CA, server leaves (good, expired,
wrong name), written as PEM files and as V2Ray's inline line lists."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, PEM text."""

    cert_pem: str
    key_pem: str

    def write(self, directory: Path, name: str) -> tuple[str, str]:
        """Write ``name.crt`` / ``name.key`` under ``directory``; return both paths."""
        cert = directory / f"{name}.crt"
        key = directory / f"{name}.key"
        cert.write_text(self.cert_pem)
        key.write_text(self.key_pem)
        return str(cert), str(key)

    def inline(self, usage: str | None = None) -> dict[str, object]:
        """A ``tlsSettings.certificates`` entry with the PEM as a list of lines."""
        entry: dict[str, object] = {
            "certificate": self.cert_pem.strip().splitlines(),
            "key": self.key_pem.strip().splitlines(),
        }
        if usage is not None:
            entry["usage"] = usage
        return entry


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TestCA:
    """A self-signed CA that issues server certificates."""

    __test__ = False  # not a pytest class

    def __init__(self, common_name: str = "v2py test CA") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "v2py tests"),
            ]
        )
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pair = KeyPair(_cert_pem(self.cert), _key_pem(self.key))

    def issue(
        self,
        *names: str,
        expired: bool = False,
        common_name: str | None = None,
    ) -> KeyPair:
        """A server leaf for DNS names / IPs ``names``; ``expired`` ended yesterday."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        if expired:
            not_before, not_after = now - 10 * _ONE_DAY, now - _ONE_DAY
        else:
            not_before, not_after = now - _ONE_DAY, now + 10 * _ONE_DAY
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0] or "leaf")]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(_cert_pem(cert), _key_pem(key))
