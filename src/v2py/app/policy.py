"""Per-level policy values used at run time (v2ray-core features/policy)."""

from __future__ import annotations

from dataclasses import dataclass

#: V2Ray 4.34 built-in defaults (seconds) for policy level 0.
DEFAULT_HANDSHAKE_S = 60.0
DEFAULT_CONN_IDLE_S = 300.0
DEFAULT_UPLINK_ONLY_S = 1.0
DEFAULT_DOWNLINK_ONLY_S = 1.0
DEFAULT_BUFFER_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Timeouts of one user level, in seconds."""

    handshake: float = DEFAULT_HANDSHAKE_S
    conn_idle: float = DEFAULT_CONN_IDLE_S
    uplink_only: float = DEFAULT_UPLINK_ONLY_S
    downlink_only: float = DEFAULT_DOWNLINK_ONLY_S
    buffer_size: int = DEFAULT_BUFFER_BYTES


class PolicyTable:
    """Maps a user level to its :class:`Timeouts`; unknown levels use level 0's values."""

    def __init__(self, levels: dict[int, Timeouts] | None = None) -> None:
        self._levels = dict(levels or {})
        self._default = self._levels.get(0, Timeouts())

    def for_level(self, level: int) -> Timeouts:
        return self._levels.get(level, self._default)
