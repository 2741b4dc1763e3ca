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

    def meet(self, outbound: Timeouts) -> Timeouts:
        """The timeouts of a connection that an inbound with these timeouts hands to an
        outbound with ``outbound``'s.

        In 4.34 each side runs its own inactivity timer at its own level (the inbound at
        its user's or ``userLevel``'s, the outbound at the picked server user's or
        ``userLevel``'s); both see the same traffic and either one firing ends the
        connection, so the shorter of each timeout wins. The handshake and the buffer
        stay the inbound's (the dispatcher sizes the link from the inbound's level).
        """
        if outbound is self:
            return self
        return Timeouts(
            handshake=self.handshake,
            conn_idle=min(self.conn_idle, outbound.conn_idle),
            uplink_only=min(self.uplink_only, outbound.uplink_only),
            downlink_only=min(self.downlink_only, outbound.downlink_only),
            buffer_size=self.buffer_size,
        )


class PolicyTable:
    """Maps a user level to its :class:`Timeouts`. A level the config does not list has
    4.34's built-in defaults (``policy.SessionDefault``), not level 0's values."""

    def __init__(self, levels: dict[int, Timeouts] | None = None) -> None:
        self._levels = dict(levels or {})
        self._default = Timeouts()
        self._met: dict[tuple[int, int], Timeouts] = {}

    def for_level(self, level: int) -> Timeouts:
        return self._levels.get(level, self._default)

    def for_levels(self, inbound: int, outbound: int) -> Timeouts:
        """:meth:`Timeouts.meet` of the two levels' timeouts (cached)."""
        if inbound == outbound:
            return self.for_level(inbound)
        met = self._met.get((inbound, outbound))
        if met is None:
            met = self.for_level(inbound).meet(self.for_level(outbound))
            self._met[(inbound, outbound)] = met
        return met
