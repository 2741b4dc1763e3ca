"""Protocol sniffers (HTTP Host, TLS SNI). Placeholder API; filled in by the sniffing work."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SniffStatus(enum.Enum):
    FOUND = "found"
    NEED_MORE = "need_more"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SniffResult:
    status: SniffStatus
    protocol: str = ""
    domain: str = ""


def sniff(data: bytes) -> SniffResult:
    """Classify the first bytes of a TCP stream (spec socks-sniffing-freedom.md section 2)."""
    return SniffResult(SniffStatus.UNKNOWN)
