"""mKCP settings: V2Ray's ``kcpSettings`` JSON object and its derived parameters.

Spec: mkcp.md section 6 (v2ray-core ``transport/internet/kcp/config.go`` and
``infra/conf/transport_internet.go``). Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_MTU_BYTES",
    "DEFAULT_TTI_MS",
    "HEADER_SIZES",
    "KcpSettings",
    "MAX_MTU_BYTES",
    "MAX_TTI_MS",
    "MIN_MTU_BYTES",
    "MIN_TTI_MS",
]

DEFAULT_MTU_BYTES = 1350
DEFAULT_TTI_MS = 50
MIN_MTU_BYTES = 576
MAX_MTU_BYTES = 1460
MIN_TTI_MS = 10
MAX_TTI_MS = 100
MIN_WINDOW_SEGMENTS = 8
MEGABYTE = 1024 * 1024
#: ``readBufferSize``/``writeBufferSize`` of 0 means this many bytes (config.go).
ZERO_BUFFER_BYTES = 512 * 1024
DATA_HEADER_BYTES = 18
SIMPLE_AUTH_OVERHEAD_BYTES = 6
GCM_TAG_BYTES = 16

#: Obfuscation header type -> bytes prepended to every datagram (docs/spec/mkcp.md section 2).
HEADER_SIZES: dict[str, int] = {
    "none": 0,
    "srtp": 4,
    "utp": 4,
    "wechat-video": 13,
    "dtls": 13,
    "wireguard": 4,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KcpSettings:
    """One ``kcpSettings`` object with V2Ray 4.34's defaults (docs/spec/mkcp.md section 6).

    Capacities are in MB/s and buffer sizes in MB, as in the JSON. ``header_type``
    is matched case-insensitively. ``seed`` switches the security layer from the
    simple authenticator to AES-128-GCM (section 3).
    """

    mtu: int = DEFAULT_MTU_BYTES
    tti: int = DEFAULT_TTI_MS
    uplink_capacity: int = 5
    downlink_capacity: int = 20
    congestion: bool = False
    read_buffer_size: int = 2
    write_buffer_size: int = 2
    header_type: str = "none"
    seed: str | None = None

    def validate(self) -> None:
        """Check the ranges V2Ray's config loader enforces.

        Raises ``ValueError`` naming the JSON key and its allowed range.
        """
        if not MIN_MTU_BYTES <= self.mtu <= MAX_MTU_BYTES:
            raise ValueError(f"mtu: {self.mtu} out of range {MIN_MTU_BYTES}-{MAX_MTU_BYTES}")
        if not MIN_TTI_MS <= self.tti <= MAX_TTI_MS:
            raise ValueError(f"tti: {self.tti} out of range {MIN_TTI_MS}-{MAX_TTI_MS}")
        if self.uplink_capacity < 0:
            raise ValueError(f"uplinkCapacity: {self.uplink_capacity} must be >= 0")
        if self.downlink_capacity < 0:
            raise ValueError(f"downlinkCapacity: {self.downlink_capacity} must be >= 0")
        if self.read_buffer_size < 0:
            raise ValueError(f"readBufferSize: {self.read_buffer_size} must be >= 0")
        if self.write_buffer_size < 0:
            raise ValueError(f"writeBufferSize: {self.write_buffer_size} must be >= 0")
        if self.header_type.lower() not in HEADER_SIZES:
            allowed = ", ".join(HEADER_SIZES)
            raise ValueError(f"header.type: unknown {self.header_type!r} (allowed: {allowed})")

    @property
    def header_name(self) -> str:
        """The normalised (lower-case) header type."""
        return self.header_type.lower()

    @property
    def header_size(self) -> int:
        """Bytes of obfuscation header per datagram (H)."""
        return HEADER_SIZES[self.header_name]

    @property
    def security_overhead(self) -> int:
        """Bytes the security layer adds as V2Ray counts them (GCM nonce not counted)."""
        return GCM_TAG_BYTES if self.seed is not None else SIMPLE_AUTH_OVERHEAD_BYTES

    @property
    def mss(self) -> int:
        """Largest DATA payload: ``mtu - H - security overhead - 18``."""
        return self.mtu - self.header_size - self.security_overhead - DATA_HEADER_BYTES

    def _per_tti(self, capacity_mb: int) -> int:
        ticks_per_second = 1000 // self.tti
        return max(MIN_WINDOW_SEGMENTS, capacity_mb * MEGABYTE // self.mtu // ticks_per_second)

    @property
    def sending_in_flight(self) -> int:
        """Segments per TTI from ``uplinkCapacity`` (default 194)."""
        return self._per_tti(self.uplink_capacity)

    @property
    def receiving_window(self) -> int:
        """Receive window in segments from ``downlinkCapacity`` (default 776)."""
        return self._per_tti(self.downlink_capacity)

    @property
    def write_buffer_bytes(self) -> int:
        """``writeBufferSize`` in bytes (0 means 512 KiB)."""
        return self.write_buffer_size * MEGABYTE if self.write_buffer_size else ZERO_BUFFER_BYTES

    @property
    def sending_buffer_segments(self) -> int:
        """Most segments the send window holds (default 1553)."""
        return max(1, self.write_buffer_bytes // self.mtu)
