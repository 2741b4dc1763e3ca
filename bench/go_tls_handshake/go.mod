module v2py/bench/go_tls_handshake

go 1.19
