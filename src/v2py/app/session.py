"""Per-connection metadata (v2ray-core common/session), passed explicitly."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from v2py.app.log import AccessMessage
from v2py.common.net import Destination

_ids = itertools.count(1)


@dataclass(slots=True, kw_only=True)
class SniffingSettings:
    """Sniffing switches of an inbound."""

    enabled: bool = False
    dest_override: tuple[str, ...] = ()


@dataclass(slots=True, kw_only=True)
class Session:
    """What one proxied connection is: where it came from and where it goes.

    ``destination`` may be replaced by sniffing before an outbound sees it.
    """

    inbound_tag: str
    source: tuple[str, int] | None
    destination: Destination | None = None
    user_email: str = ""
    level: int = 0
    sniffing: SniffingSettings = field(default_factory=SniffingSettings)
    sniffed_protocol: str = ""
    #: Set by inbounds whose 4.34 access line differs from the default
    #: (source_text(), the destination before sniffing, user_email).
    access: AccessMessage | None = None
    #: Made by the core itself (DNS queries, a reverse bridge's links), not accepted by
    #: an inbound: 4.34 writes no access line for it.
    internal: bool = False
    #: Goes through Mux.Cool whenever the outbound has a ``mux`` object, even one with
    #: ``enabled: false`` (4.34 ``session.ContextWithMuxPrefered``: dispatched DoH).
    mux_preferred: bool = False
    #: A plain HTTP request's attributes (HTTP inbound) for ``attrs`` rules, else None.
    attributes: dict[str, str] | None = None
    #: The connection type and datacenter an MTProto inbound read, for the MTProto
    #: outbound (4.34 ``mtproto.SessionContext``); None from other inbounds.
    mtproto: tuple[bytes, int] | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def source_text(self) -> str:
        if self.source is None:
            return "unknown"
        host, port = self.source
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SessionLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with the session id, as v2ray does (``[1234] ...``)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra.get('session_id', '-')}] {msg}", kwargs


def session_logger(logger: logging.Logger, session: Session) -> SessionLogger:
    return SessionLogger(logger, {"session_id": session.id})
