"""Micro-benchmark: what OpenSSL alone spends on one TLS handshake per side.

Usage: python -m bench.micro_tls_handshake [handshakes]

The client and server contexts are v2py's own (``TlsSecurity`` built from the very
``tlsSettings`` the ``vmess-tls`` bench chain gives both implementations: a
self-signed P-256 certificate inline on the server, ``allowInsecure`` on the
client). Both ends run in this process over memory BIOs, so nothing but
``do_handshake`` is timed: no sockets, no event loop, no Python glue of the
transport. Timed in process CPU seconds per side, median of 5 passes.

Compare the sum with what V2Ray 4.34 spends on TLS per connection in the chain
bench: its CPU per 1,000 connections on ``vmess-tls`` minus that on
``vmess-aead-gcm`` (client plus server). When OpenSSL's handshake alone costs more
than that, v2py's TLS chain needs more CPU per connection than V2Ray's whatever its
Python does, and on a machine the chain keeps busy its connection rate follows.

It also times the one step that sets OpenSSL 3.0's client apart from Go's:
``d2i_X509`` of the server's certificate, called through ``ctypes`` in the very
``libcrypto`` that ``ssl`` is linked to. OpenSSL 3.0 decodes the certificate's
public key through its provider decoder framework (``OSSL_DECODER_CTX_new_for_pkey``
for every certificate), which the client does once per handshake.
"""

from __future__ import annotations

import ctypes
import ssl
import statistics
import sys
import time
from pathlib import Path

from bench.chains import CHAINS, _self_signed, _stream
from v2py.config.stream import TlsConfig
from v2py.transport.tls import TlsSecurity

PASSES = 5


def _securities() -> tuple[TlsSecurity, TlsSecurity]:
    spec = CHAINS["vmess-tls"]
    client = TlsConfig.model_validate(_stream(spec)["tlsSettings"])
    server = TlsConfig.model_validate(_stream(spec, server=True)["tlsSettings"])
    return TlsSecurity(client, network="tcp"), TlsSecurity(server, network="tcp")


def _step(obj: ssl.SSLObject) -> tuple[bool, float]:
    """One ``do_handshake`` call: (done, CPU seconds it took)."""
    start = time.process_time()
    try:
        obj.do_handshake()
        done = True
    except ssl.SSLWantReadError:
        done = False
    return done, time.process_time() - start


def one_pass(client: TlsSecurity, server: TlsSecurity, count: int) -> tuple[float, float]:
    """CPU seconds per handshake (client, server) over ``count`` handshakes."""
    cctx, sctx = client.client_context(), server.server_context()
    name = client.client_server_name("127.0.0.1")  # the chain's serverName
    spent_c = spent_s = 0.0
    for _ in range(count):
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        c = cctx.wrap_bio(c_in, c_out, server_hostname=name)
        s = sctx.wrap_bio(s_in, s_out, server_side=True)
        c_done = s_done = False
        while not (c_done and s_done):
            if not c_done:
                c_done, spent = _step(c)
                spent_c += spent
            s_in.write(c_out.read())
            if not s_done:
                s_done, spent = _step(s)
                spent_s += spent
            c_in.write(s_out.read())
    return spent_c / count, spent_s / count


def _libcrypto() -> ctypes.CDLL | None:
    """The libcrypto this process's ``ssl`` uses (from /proc/self/maps), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.rsplit(" ", 1)[-1]
        if "/libcrypto.so" in path:
            lib = ctypes.CDLL(path)
            lib.d2i_X509.restype = ctypes.c_void_p
            lib.d2i_X509.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_void_p),
                ctypes.c_long,
            ]
            lib.X509_free.argtypes = [ctypes.c_void_p]
            return lib
    return None


def cert_decode_us(count: int) -> float | None:
    """CPU microseconds of one ``d2i_X509`` + ``X509_free`` of the chain's certificate."""
    lib = _libcrypto()
    if lib is None:
        return None
    cert_lines, _ = _self_signed()
    der = ssl.PEM_cert_to_DER_cert("\n".join(cert_lines))
    buf = ctypes.create_string_buffer(der, len(der))
    start = time.process_time()
    for _ in range(count):
        cursor = ctypes.c_void_p(ctypes.addressof(buf))
        cert = lib.d2i_X509(None, ctypes.byref(cursor), len(der))
        if not cert:
            return None
        lib.X509_free(cert)
    return (time.process_time() - start) / count * 1e6


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 2000
    client, server = _securities()
    one_pass(client, server, 100)  # warm up
    passes = [one_pass(client, server, count) for _ in range(PASSES)]
    c_us = statistics.median(p[0] for p in passes) * 1e6
    s_us = statistics.median(p[1] for p in passes) * 1e6
    print(f"{ssl.OPENSSL_VERSION}; {count} handshakes x {PASSES} passes (median)")
    print(f"client do_handshake  {c_us:7.0f} us CPU")
    print(f"server do_handshake  {s_us:7.0f} us CPU")
    print(f"both                 {c_us + s_us:7.0f} us CPU per connection")
    decode = cert_decode_us(count)
    if decode is not None:
        print(f"client's d2i_X509 of the server certificate  {decode:5.0f} us CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
