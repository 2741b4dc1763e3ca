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
"""

from __future__ import annotations

import ssl
import statistics
import sys
import time

from bench.chains import CHAINS, _stream
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
