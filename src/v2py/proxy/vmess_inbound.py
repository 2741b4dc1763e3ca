"""VMess inbound (server), as v2ray-core proxy/vmess/inbound/inbound.go.

On any failed handshake the server never writes a byte: it drains up to the
per-server budget (bounded by the handshake timeout) and closes, as 4.34's
``drainConnection`` does, so an active prober learns nothing from timing or
replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from v2py.app import entropy
from v2py.app.drain import drain_stream
from v2py.app.handler import Dispatch
from v2py.app.log import ACCESS_REJECTED, log_access
from v2py.app.packet import dispatch_datagram_stream
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, session_logger
from v2py.common.net import Destination, Network
from v2py.errors import ProtocolError, VmessError
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.commands import SwitchAccount
from v2py.protocol.vmess.constants import RequestCommand
from v2py.protocol.vmess.events import RequestReceived
from v2py.protocol.vmess.impl import DEFAULT_IMPL, VmessImpl
from v2py.protocol.vmess.server import VmessServerConnection
from v2py.protocol.vmess.validator import KeyStore, UserValidator
from v2py.proxy.vmess_stream import VmessStream
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

log = logging.getLogger(__name__)

#: How often the legacy auth table slides forward (vmess.md 4.2).
VALIDATOR_UPDATE_INTERVAL_S = 10.0
#: Seconds past the client band that a user added via the API (or a dynamic port) gets
#: at once: the update interval plus time for the warm-up that follows an update.
LEGACY_BAND_LEAD_S = int(VALIDATOR_UPDATE_INTERVAL_S) + 6
#: Legacy auth-table warm-up: HMACs per step (<= ~8 ms of CPU), then yield to the loop.
PREFILL_HASHES_PER_STEP = 8_192
PREFILL_STEP_S = 0.0
_ENCODING = "v2ray.com/core/proxy/vmess/encoding: "
_INSECURE = "insecure encryption disabled"  # the server core's message
#: v2py's header errors in 4.34's words (proxy/vmess/encoding/server.go), for the
#: access log's ``rejected`` lines that log watchers (fail2ban) match.
_VMESS_REASONS = (
    ("connection closed during request header", "failed to read request header > unexpected EOF"),
    (
        "connection ended before the request header",
        "failed to read request header > unexpected EOF",
    ),
    ("invalid user: tainted", "invalid user > v2ray.com/core/proxy/vmess: ErrTainted"),
    ("invalid user", "invalid user > v2ray.com/core/proxy/vmess: Not Found"),
    ("replayed AEAD AuthID", "invalid user > replayed request"),
    ("AEAD header", "AEAD read failed > cipher: message authentication failed"),
    (
        "duplicated session id",
        "duplicated session id, possibly under replay attack, userHash tainted",
    ),
    ("invalid request header checksum", "invalid auth, legacy userHash tainted"),
    ("unknown security type ", "unknown security type: "),
)


def vmess_rejection_reason(message: str, drained: bool | None, drain_size: int) -> str:
    """The reason of 4.34's ``rejected`` access line for a failed VMess header.

    ``drained`` is None when the connection was not drained, else whether the whole
    drain budget (``drain_size`` bytes in total; 4.34 prints its three parts) was read.
    """
    inner = message
    for ours, theirs in _VMESS_REASONS:
        if message.startswith(ours):
            inner = theirs + (message[len(ours) :] if theirs.endswith(" ") else "")
            break
    if drained is None:
        return _ENCODING + inner
    head = "connection drained" if drained else "failed to drain connection"
    return f"{_ENCODING}{head} DrainSize = {drain_size} > {_ENCODING}{inner}"


#: Cap of ValidMin in a SwitchAccount (one byte).
MAX_VALID_MIN = 255

#: ``detour(email) -> (port, user, minutes_left) | None``: asks the detour inbound.
DetourLookup = Callable[[str], "tuple[int, VmessUser, int] | None"]


class VmessInbound:
    """The ``vmess`` inbound handler: one user table for all its connections.

    ``shared_store`` (``v2py run --workers N``) holds the replay filter, session
    history and taint fuses of every worker process. ``user_ids(email)`` gives the
    16-byte id of an auto-created detour user (default: 16 random bytes); workers
    derive it from a shared seed so that they all know the user they announce.
    """

    def __init__(
        self,
        *,
        tag: str,
        users: Sequence[VmessUser],
        policy: PolicyTable,
        default_level: int = 0,
        default_alter_id: int = 0,
        disable_insecure: bool = False,
        detour: DetourLookup | None = None,
        rng: Callable[[int], bytes] = entropy.urandom,
        clock: Callable[[], float] = time.time,
        shared_store: KeyStore | None = None,
        user_ids: Callable[[str], bytes] | None = None,
        impl: VmessImpl = DEFAULT_IMPL,
    ) -> None:
        self._impl = impl
        self.tag = tag
        self.policy = policy
        self.default_level = default_level
        self.default_alter_id = default_alter_id
        self.disable_insecure = disable_insecure
        self.detour = detour
        self._rng = rng
        self._clock = clock
        self._user_ids = user_ids
        self._anon_derived: VmessUser | None = None  # the empty email's user, with user_ids
        self.validator = UserValidator(
            clock(),
            rng,
            # The validator's clock moves every update interval (after the warm-up):
            # users added in between get a band that reaches as far ahead.
            legacy_band_lead_s=LEGACY_BAND_LEAD_S,
            shared_store=shared_store,
            accelerated=impl.accelerated_auth,
        )
        self.validator.add_users(users)  # one legacy band build for all of them
        self._updater: asyncio.Task[None] | None = None

    # -- detour support: the dynamic-port users of this instance ----------
    def get_or_create_user(self, email: str) -> VmessUser:
        """The user for ``email``; auto-created from ``default`` (dynamic-port.md 3)."""
        email = email.lower()
        user: VmessUser | None = self.validator.get_user(email)
        if user is None and self._user_ids is not None and not email:
            # Derived ids are stable, so the empty email gets one user, not one per call.
            user = self._anon_derived
        if user is None:
            user = VmessUser(
                id=self._user_ids(email) if self._user_ids is not None else self._rng(16),
                alter_id=self.default_alter_id,
                level=self.default_level,
                email=email,
            )
            self.validator.add_user(user)
            if self._user_ids is not None and not email:
                self._anon_derived = user
        return user

    # -- lifecycle ----------------------------------------------------------
    async def start(self, dispatcher: Dispatch) -> None:
        if self._updater is None:
            self._updater = asyncio.get_running_loop().create_task(self._update_loop())

    async def _update_loop(self) -> None:
        next_update = asyncio.get_running_loop().time() + VALIDATOR_UPDATE_INTERVAL_S
        while True:
            # Warm the legacy auth table a few seconds at a time so that a cold
            # lookup never has to build the whole window inside one handshake.
            while self.validator.prefill_budget(PREFILL_HASHES_PER_STEP) > 0:
                await asyncio.sleep(PREFILL_STEP_S)
            await asyncio.sleep(max(0.0, next_update - asyncio.get_running_loop().time()))
            next_update += VALIDATOR_UPDATE_INTERVAL_S
            self.validator.update(self._clock())

    def close(self) -> None:
        if self._updater is not None:
            self._updater.cancel()
            self._updater = None

    # -- per connection -----------------------------------------------------
    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        slog = session_logger(log, session)
        loop = asyncio.get_running_loop()
        handshake_timeout = self.policy.for_level(0).handshake
        deadline = loop.time() + handshake_timeout
        core = VmessServerConnection(
            self.validator,
            now=self._clock(),
            rng=self._rng,
            disable_insecure=self.disable_insecure,
            impl=self._impl,
            hint=session.source[0] if session.source is not None else None,
        )
        request: RequestReceived | None = None
        received = 0
        try:
            async with asyncio.timeout_at(deadline):
                while request is None:
                    data = await stream.read(READ_CHUNK_BYTES)
                    received += len(data)
                    core.receive_data(data)
                    event = core.next_event()
                    if isinstance(event, RequestReceived):
                        request = event
                    elif not data:
                        raise VmessError("connection ended before the request header")
        except VmessError as exc:
            self._log_reject(slog, session, exc)
            drained = await self._drain(stream, core, deadline, received) if exc.drain else None
            if str(exc).startswith(_INSECURE):  # 4.34 names the user here
                user = core.user
                log_access(
                    session.source_text(),
                    ACCESS_REJECTED,
                    reason="Insecure encryption",
                    email=user.email if user is not None else "",
                )
            elif received or exc.drain:  # 4.34 logs no rejection for a bare EOF
                reason = vmess_rejection_reason(str(exc), drained, core.drain_budget)
                log_access(session.source_text(), ACCESS_REJECTED, reason=reason)
            return
        except TimeoutError:
            slog.info("vmess: handshake timed out from %s", session.source_text())
            reason = f"{_ENCODING}failed to read request header > i/o timeout"
            log_access(session.source_text(), ACCESS_REJECTED, reason=reason)
            return

        header = request.header
        user = request.user
        session.user_email = user.email
        session.level = user.level
        network = Network.UDP if header.command == RequestCommand.UDP else Network.TCP
        # Command 3 (Mux.Cool) arrives as v1.mux.cool:0; the dispatcher's mux server
        # takes it from there (app/mux_server.py), as in 4.34.
        session.destination = Destination(network, header.address, header.port)
        if self.detour is not None:
            found = self.detour(user.email)
            if found is not None:
                port, detour_user, minutes = found
                core.set_response_command(
                    SwitchAccount(
                        host="",
                        port=port,
                        id=detour_user.id,
                        alter_ids=detour_user.alter_id,
                        level=detour_user.level & 0xFF,
                        valid_min=min(minutes, MAX_VALID_MIN),
                    )
                )
        vstream = VmessStream(stream, core)  # picks up body bytes decoded with the header
        try:
            if network is Network.UDP:
                await dispatch_datagram_stream(session, vstream, dispatcher)
            else:
                await dispatcher.dispatch(session, vstream)
        except (OSError, ProtocolError) as exc:
            slog.info("vmess: connection ends: %s", exc)

    def _log_reject(
        self, slog: logging.LoggerAdapter[logging.Logger], session: Session, exc: VmessError
    ) -> None:
        reason = str(exc)
        if exc.tainted:
            reason = f"invalid user > {reason} > ErrTainted"
        slog.info("vmess: invalid request from %s: %s", session.source_text(), reason)

    async def _drain(
        self, stream: Stream, core: VmessServerConnection, deadline: float, received: int
    ) -> bool:
        """Read and discard until the drain budget is consumed or the handshake deadline;
        True if the whole budget was read. ``received``: bytes read so far."""
        return await drain_stream(stream, core.drain_budget - received, deadline)
