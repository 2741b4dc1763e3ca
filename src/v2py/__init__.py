"""v2py: a V2Ray-compatible proxy platform (VMess, mKCP, dynamic port, socks) in Python."""

from __future__ import annotations

__version__ = "0.1.0"
V2RAY_COMPAT_VERSION = "4.34.0"

__all__ = ["V2RAY_COMPAT_VERSION", "__version__"]
