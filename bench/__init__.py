"""Benchmark harness: the same load through v2py's and v2ray's chains (``python -m bench``)."""
