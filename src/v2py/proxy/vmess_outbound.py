"""VMess outbound (client), as v2ray-core proxy/vmess/outbound/{outbound,command}.go.

Header format: AEAD when the account's alterId is 0 (4.34), unless
``V2RAY_VMESS_AEAD_DISABLED=true``; the older switches documented in the user's
guide (``testsEnabled: "VMessAEAD"``, ``VMESSAEADEXPERIMENT=y|n``) force it on or
off. SwitchAccount commands append dynamic-port servers (dynamic-port.md 5).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from v2py.app import entropy
from v2py.app.dial_guard import dial_watching
from v2py.app.packet import PacketLink, relay_datagrams
from v2py.app.policy import PolicyTable
from v2py.app.relay import relay
from v2py.app.session import Session, session_logger
from v2py.common.net import Network
from v2py.errors import LocalProtocolError, ProtocolError
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.client import VmessClientConnection
from v2py.protocol.vmess.commands import SwitchAccount
from v2py.protocol.vmess.constants import RequestCommand, SecurityType, resolve_auto_security
from v2py.protocol.vmess.header import MUX_COOL_HOST
from v2py.protocol.vmess.impl import DEFAULT_IMPL, VmessImpl
from v2py.proxy.vmess_stream import VmessStream
from v2py.transport import TcpTransport, Transport
from v2py.transport.stream import Stream

log = logging.getLogger(__name__)

#: Dial attempts and the delay before each (4.34's "exponential" backoff is linear).
DIAL_DELAYS_S = (0.0, 0.2, 0.4, 0.6, 0.8)
DIAL_TIMEOUT_S = 16.0
SECONDS_PER_MINUTE = 60.0
#: ``testsEnabled`` value (lower-cased) that turns the AEAD header on.
TESTS_ENABLED_AEAD = "vmessaead"
AEAD_EXPERIMENT_BANNER = "=======VMESSAEADEXPERIMENT ENABLED========"
#: How long the request header waits for the first payload (4.34 CopyOnceTimeout).
FIRST_PAYLOAD_WAIT_S = 0.1


@dataclass(slots=True, kw_only=True)
class VmessAccount:
    """A configured user of a vnext server (with its body security)."""

    user: VmessUser
    security: SecurityType
    tests_enabled: str = ""


@dataclass(slots=True, kw_only=True)
class ServerEntry:
    """A vnext server, or a dynamic-port entry appended by SwitchAccount."""

    address: str
    port: int
    accounts: list[VmessAccount]
    valid_until: float | None = None  # None: configured, never expires
    _rr: int = field(default=0)

    def valid(self, now: float) -> bool:
        return self.valid_until is None or now < self.valid_until


class ServerList:
    """Round-robin picker over configured servers and appended detour entries.

    Mirrors 4.34's ``RoundRobinServerPicker`` over a ``ServerList`` whose
    ``GetServer`` drops expired entries by moving the last one into the hole.
    """

    def __init__(self, servers: Sequence[ServerEntry]) -> None:
        self.entries: list[ServerEntry] = list(servers)
        self._index = 0

    def _get(self, i: int, now: float) -> ServerEntry | None:
        while i < len(self.entries):
            entry = self.entries[i]
            if entry.valid(now):
                return entry
            last = self.entries.pop()
            if i < len(self.entries):
                self.entries[i] = last
        return None

    def pick(self, now: float) -> ServerEntry:
        entry = self._get(self._index, now)
        if entry is None:
            self._index = 0
            entry = self._get(0, now)
        if entry is None:  # configured servers never expire, so only a misuse gets here
            raise LocalProtocolError("vmess outbound has no server")
        # The wrap uses the size after expired entries were dropped (4.34 ServerPicker).
        self._index += 1
        if self._index >= len(self.entries):
            self._index = 0
        return entry

    def add(self, entry: ServerEntry) -> None:
        self.entries.append(entry)


class VmessOutbound:
    """The ``vmess`` outbound handler."""

    def __init__(
        self,
        *,
        tag: str,
        servers: Sequence[ServerEntry],
        policy: PolicyTable,
        transport: Transport | None = None,
        aead_forced: bool | None = None,
        padding: bool = False,
        rng: Callable[[int], bytes] = entropy.urandom,
        clock: Callable[[], float] = time.time,
        machine: str | None = None,
        impl: VmessImpl = DEFAULT_IMPL,
    ) -> None:
        self._impl = impl
        self.tag = tag
        self.servers = ServerList(servers)
        self.policy = policy
        self.transport: Transport = transport or TcpTransport()
        self._rng = rng
        self._clock = clock
        self._machine = machine or platform.machine()
        self._aead_forced = aead_forced
        self._padding = padding
        if self._aead_forced is True or any(
            account.tests_enabled.lower() == TESTS_ENABLED_AEAD
            for entry in self.servers.entries
            for account in entry.accounts
        ):
            # The user's guide (4.24-4.27 experiment) says an AEAD-experiment client prints this.
            log.warning(AEAD_EXPERIMENT_BANNER)

    # -- helpers ----------------------------------------------------------
    def _use_aead(self, account: VmessAccount) -> bool:
        if self._aead_forced is not None:
            return self._aead_forced
        if account.tests_enabled.lower() == TESTS_ENABLED_AEAD:
            return True
        return account.user.alter_id == 0

    def _security(self, account: VmessAccount) -> SecurityType:
        if account.security == SecurityType.AUTO:
            return resolve_auto_security(self._machine)
        return account.security

    def _pick_account(self, entry: ServerEntry) -> VmessAccount:
        if len(entry.accounts) == 1:
            return entry.accounts[0]
        return entry.accounts[self._rng(1)[0] % len(entry.accounts)]

    def _on_command(self, entry: ServerEntry, cmd: SwitchAccount) -> None:
        host = cmd.host or entry.address
        user = VmessUser(id=cmd.id, alter_id=cmd.alter_ids, level=cmd.level)
        self.servers.add(
            ServerEntry(
                address=host,
                port=cmd.port,
                accounts=[VmessAccount(user=user, security=SecurityType.LEGACY)],
                valid_until=self._clock() + cmd.valid_min * SECONDS_PER_MINUTE,
            )
        )
        log.info("vmess: switching account to %s:%d for %d min", host, cmd.port, cmd.valid_min)

    async def _dial(self, session: Session) -> tuple[Stream, ServerEntry]:
        last_error: Exception | None = None
        for delay in DIAL_DELAYS_S:
            if delay:
                await asyncio.sleep(delay)
            entry = self.servers.pick(self._clock())
            try:
                stream = await self.transport.dial(
                    entry.address, entry.port, timeout=DIAL_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                last_error = exc
                session_logger(log, session).info(
                    "vmess: failed to dial %s:%d: %s", entry.address, entry.port, exc
                )
                continue
            return stream, entry
        raise ConnectionError(f"vmess: failed to find an available destination: {last_error}")

    async def _open(
        self, session: Session, command: RequestCommand
    ) -> tuple[VmessStream, Stream, int]:
        """The VMess stream, the transport under it and the picked user's level."""
        dest = session.destination
        assert dest is not None
        transport, entry = await self._dial(session)
        account = self._pick_account(entry)
        core = VmessClientConnection(
            account.user,
            self._security(account),
            command=command,
            address=dest.address,
            port=dest.port,
            now=self._clock(),
            rng=self._rng,
            use_aead=self._use_aead(account),
            padding_env=self._padding,
            impl=self._impl,
        )
        vstream = VmessStream(
            transport,
            core,
            on_command=lambda cmd: self._on_command(entry, cmd),
            is_client=True,
        )
        # The header leaves with the first payload (or after FIRST_PAYLOAD_WAIT_S).
        vstream.hold_output(FIRST_PAYLOAD_WAIT_S)
        if log.isEnabledFor(logging.INFO):
            session_logger(log, session).info(
                "vmess: tunneling request to %s via %s:%d", dest, entry.address, entry.port
            )
        return vstream, transport, account.user.level

    # -- Outbound ---------------------------------------------------------
    async def handle(self, session: Session, stream: Stream) -> None:
        dest = session.destination
        # A mux connection (destination v1.mux.cool) is command 3, with no address in
        # the header (4.34 proxy/vmess/outbound/outbound.go).
        command = (
            RequestCommand.MUX
            if dest is not None and dest.address == MUX_COOL_HOST
            else RequestCommand.TCP
        )
        # The client is watched while dialing, as 4.34's inbound keeps copying and timing
        # it (app/dial_guard.py): a client that leaves ends the dial.
        (vstream, transport, level), stream = await dial_watching(
            stream,
            lambda: self._open(session, command),
            self.policy.for_level(session.level),
            discard=lambda opened: opened[1].close(),
        )
        try:
            # 4.34 times the outbound at the picked user's level, the inbound at its own.
            await relay(stream, vstream, self.policy.for_levels(session.level, level))
        finally:
            transport.close()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        dest = session.destination
        assert dest is not None and dest.network is Network.UDP
        vstream, transport, level = await self._open(session, RequestCommand.UDP)
        timeouts = self.policy.for_levels(session.level, level)
        try:
            # UDP sessions end when the inbound closes the link (idle timeout there).
            # One chunk per datagram; the core drops what 4.34 drops (a chunk over its
            # 2048-byte buffer: up to 1,967..2,030 bytes of payload with GCM).
            await relay_datagrams(link, vstream, timeouts.downlink_only)
        except* (OSError, ProtocolError) as errors:
            session_logger(log, session).info("vmess: udp relay ended: %s", errors.exceptions[0])
        finally:
            transport.close()
