"""``v2py cert``: TLS certificates as 4.34's ``v2ctl cert`` makes them.

Same flags (``-ca``, ``-domain`` repeatable, ``-name``, ``-org``, ``-json``, ``-file``,
``-expire`` as a Go duration, default 2160h) and the same certificate: a fresh ECDSA
P-256 key, a random 128-bit serial, valid from an hour ago until ``-expire`` from now,
key usage digital signature + key encipherment (+ certificate signing with ``-ca``),
extended key usage server authentication, basic constraints (CA or not), subject
``O=-org, CN=-name``, the ``-domain`` names as DNS names, self-signed with SHA-256.
The JSON (``{"certificate": [...], "key": [...]}``, two-space indent) goes straight
into ``tlsSettings.certificates``; ``-file P`` writes ``P_cert.pem`` and ``P_key.pem``.

Deliberate differences: the key is labelled ``PRIVATE KEY`` (it is PKCS #8; v2ctl labels
it ``RSA PRIVATE KEY``, which Go and v2py read but OpenSSL-based tools refuse), and the
``_key.pem`` file is created mode 0600.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from v2py.cli import Flag

__all__ = ["cert_flags", "generate", "main", "parse_go_duration"]

#: Go's time.ParseDuration units, in seconds.
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text: str) -> datetime.timedelta:
    """``text`` as Go's ``time.ParseDuration`` reads it; raises ValueError."""
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return datetime.timedelta(0)
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(rest):
        match = _PART.match(rest, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    # Go refuses a duration beyond int64 nanoseconds (about 292 years).
    if total > 9223372036.854775807:
        raise ValueError(f"time: invalid duration {text!r}")
    return datetime.timedelta(seconds=sign * total)


def cert_flags() -> tuple[Flag, ...]:
    """v2ctl cert's flags."""
    from v2py.cli import Flag

    return (
        Flag("ca", "bool", "Whether this certificate is a CA"),
        Flag("domain", "list", "Domain name for the certificate"),
        Flag("name", "string", "The common name of this certificate", default="V2Ray Inc"),
        Flag("org", "string", "Organization of the certificate", default="V2Ray Inc"),
        Flag("json", "bool", "Print certificate in JSON format", default="true"),
        Flag("file", "string", "Save certificate in file."),
        Flag(
            "expire",
            "string",
            "Time until the certificate expires. Default value 3 months.",
            default="2160h0m0s",
        ),
    )


def generate(
    *,
    ca: bool,
    domains: Sequence[str],
    name: str,
    org: str,
    expire: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """The certificate and key PEM of ``v2ctl cert`` with these options."""
    from v2py.transport.pem import generate_certificate

    now = now or datetime.datetime.now(datetime.UTC)
    return generate_certificate(
        common_name=name,
        organization=org,
        dns_names=domains,
        is_ca=ca,
        not_before=now - datetime.timedelta(hours=1),
        not_after=now + expire,
    )


def main(args: list[str]) -> int:
    from v2py.cli import _parse_subcommand

    values = _parse_subcommand("cert", args, cert_flags())
    if isinstance(values, int):
        return values
    listed = values["domain"]
    domains = [str(d) for d in listed] if isinstance(listed, list) else []
    if any(not d for d in domains):
        print('invalid value "" for flag -domain: empty value', file=sys.stderr)
        return 2
    try:
        expire = parse_go_duration(str(values["expire"]))
    except ValueError as exc:
        print(f"invalid value {values['expire']!r} for flag -expire: {exc}", file=sys.stderr)
        return 2
    try:
        cert_pem, key_pem = generate(
            ca=bool(values["ca"]),
            domains=domains,
            name=str(values["name"]),
            org=str(values["org"]),
            expire=expire,
        )
    except (ValueError, OverflowError) as exc:
        # e.g. an -expire that ends before the certificate begins (an hour ago): Go
        # writes such a certificate; no client would take it.
        print(f"v2py cert: cannot make this certificate: {exc}", file=sys.stderr)
        return 2
    if values["json"]:
        doc = {
            "certificate": cert_pem.decode().strip().split("\n"),
            "key": key_pem.decode().strip().split("\n"),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    prefix = str(values["file"] or "")
    if prefix:
        try:
            with open(prefix + "_cert.pem", "wb") as fh:
                fh.write(cert_pem)
            # The key is readable by its owner only (v2ctl leaves it to the umask).
            fd = os.open(prefix + "_key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "wb") as fh:
                fh.write(key_pem)
        except OSError as exc:
            print(f"v2py cert: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
            return 1
    return 0
