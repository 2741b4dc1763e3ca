"""``v2py tlsping``: 4.34's ``v2ctl tlsping <domain> [-ip IP]``.

Two TLS 1.2 handshakes with port 443 of ``-ip`` (else the domain's first IPv4 address,
else its first address), both offering ALPN ``http/1.1``: the first without SNI and
without verifying the certificate, the second with the domain as SNI, verified against
the system roots (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured, as by Go). After a
handshake that succeeds, every certificate the server sent that has DNS names is printed
as ``Allowed domains:  [a b]``. The lines on standard output are 4.34's, including its
two spellings of ``Handshake``.

As with 4.34, flags go before the domain: Go's flag parsing stops at the first argument
that is not a flag, so ``v2ctl tlsping example.com -ip 1.2.3.4`` (the form its usage
line shows) ignores ``-ip`` and resolves the name. An error (no domain, an invalid IP, a
name that does not resolve, a refused connection) is one line on standard error, then
the usage line, exit status 255.

Deliberate differences: the handshake failure texts are OpenSSL's, not Go's; a connection
or handshake that makes no progress for 30 s fails (Go waits as long as the kernel does).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import sys

__all__ = ["certificates_in_flight", "main"]

USAGE = "v2ctl tlsping <domain> --ip <ip>"
EXIT_ERROR = 255
PORT = 443
TIMEOUT_S = 30.0
#: TLS record content type handshake, handshake type certificate.
_HANDSHAKE = 22
_CERTIFICATE = 11


class _PingError(Exception):
    pass


def certificates_in_flight(data: bytes) -> list[bytes]:
    """The DER certificates of the first Certificate message in ``data``, the server's
    bytes of a TLS 1.2 handshake (sent in the clear there); [] when there is none."""
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(data):
        kind = data[pos]
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if kind != _HANDSHAKE:
            break  # ChangeCipherSpec: what follows is encrypted
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    at = 0
    while at + 4 <= len(handshake):
        kind = handshake[at]
        length = int.from_bytes(handshake[at + 1 : at + 4], "big")
        body = bytes(handshake[at + 4 : at + 4 + length])
        if len(body) < length:
            return []
        if kind == _CERTIFICATE:
            certs: list[bytes] = []
            end = 3 + int.from_bytes(body[:3], "big")
            cur = 3
            while cur + 3 <= min(end, len(body)):
                size = int.from_bytes(body[cur : cur + 3], "big")
                certs.append(body[cur + 3 : cur + 3 + size])
                cur += 3 + size
            return certs
        at += 4 + length
    return []


def _dns_names(der: bytes) -> list[str]:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return []
    return [str(name) for name in sans.value.get_values_for_type(x509.DNSName)]


def _resolve(domain: str) -> str:
    try:
        infos = socket.getaddrinfo(domain, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        missing = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
        reason = "no such host" if missing else exc.strerror
        raise _PingError(f"resolve IP > lookup {domain}: {reason}") from None
    except (OSError, UnicodeError) as exc:
        raise _PingError(f"resolve IP > lookup {domain}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise _PingError(f"resolve IP > lookup {domain}: no such host")
    return next((a for a in addresses if ":" not in a), addresses[0])


def _go_errno_text(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def _dial(ip: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    try:
        sock.connect((ip, PORT))
    except OSError as exc:
        sock.close()
        where = f"[{ip}]:{PORT}" if ":" in ip else f"{ip}:{PORT}"
        reason = "i/o timeout" if isinstance(exc, TimeoutError) else _go_errno_text(exc)
        raise _PingError(f"dial tcp > dial tcp {where}: connect: {reason}") from None
    return sock


def _handshake(ip: str, server_name: str | None) -> tuple[str | None, list[bytes]]:
    """(None, the server's certificates) after a handshake that succeeded, or (the
    failure, [])."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    if server_name is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_default_certs()
    sock = _dial(ip)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    received = bytearray()
    try:
        tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
        while True:
            try:
                tls.do_handshake()
                sock.sendall(outgoing.read())
                return None, certificates_in_flight(bytes(received))
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                if not data:
                    incoming.write_eof()
                else:
                    received += data
                    incoming.write(data)
            except ssl.SSLCertVerificationError as exc:
                sock.sendall(outgoing.read())
                return f"certificate verify failed: {exc.verify_message}", []
            except ssl.SSLError as exc:
                pending = outgoing.read()  # the alert, as Go sends one
                if pending:
                    with contextlib.suppress(OSError):
                        sock.sendall(pending)
                return exc.reason or str(exc), []
            except (OSError, ValueError) as exc:
                if isinstance(exc, TimeoutError):
                    return "i/o timeout", []
                return str(exc) or type(exc).__name__, []
    finally:
        sock.close()


def _print_certificates(certs: list[bytes]) -> None:
    for der in certs:
        names = _dns_names(der)
        if names:
            print("Allowed domains: ", "[" + " ".join(names) + "]")


def _ping(domain: str, ip_text: str) -> None:
    print("Tls ping: ", domain)
    if ip_text:
        try:
            ip = str(ipaddress.ip_address(ip_text))
        except ValueError:
            raise _PingError(f"invalid IP: {ip_text}") from None
    else:
        ip = _resolve(domain)
    print("Using IP: ", ip)
    # 4.34 spells the second section's results in lower case.
    for label, server_name, said in (
        ("without", None, "Handshake"),
        ("with", domain, "handshake"),
    ):
        print("-------------------")
        print(f"Pinging {label} SNI", flush=True)
        failure, certs = _handshake(ip, server_name)
        if failure is not None:
            print(f"{said} failure: ", failure)
        else:
            print(f"{said} succeeded")
            _print_certificates(certs)
    print("Tls ping finished")


def main(args: list[str]) -> int:
    from v2py.cli import Flag, UsageError, _HelpRequested, parse_flags

    flags = (Flag("ip", "string", "IP address of the domain"),)
    try:
        values, rest = parse_flags(args, flags)
    except _HelpRequested:
        print("Usage of tlsping:\n  -ip string\n    \tIP address of the domain", file=sys.stderr)
        print(USAGE)
        return 0
    except UsageError as exc:
        print(f"v2py tlsping: flag parsing > {exc}", file=sys.stderr)
        print(file=sys.stderr)
        print(USAGE)
        return EXIT_ERROR
    try:
        if not rest:
            raise _PingError("domain not specified")
        _ping(rest[0], str(values["ip"] or ""))
    except _PingError as exc:
        sys.stdout.flush()
        print(f"v2py tlsping: {exc}", file=sys.stderr)
        print(file=sys.stderr)
        print(USAGE)
        return EXIT_ERROR
    return 0
