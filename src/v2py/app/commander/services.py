"""HandlerService, StatsService and LoggerService as 4.34 answers them
(v2ray-core ``app/proxyman/command/command.go``, ``app/stats/command/command.go``,
``app/log/command/command.go``).

Each method takes the request message and returns the response message, or raises
:class:`ApiError` whose ``details`` is 4.34's error chain text (``pkg/path: message
> cause``): panels match on these words (``already exists``, ``not found``,
``not enough information``, ``existing tag``). The gRPC plumbing is ``server.py``.

Where 4.34 panics and kills the whole process (AddInbound without receiver
settings, an account of the wrong type, AlterInbound without an operation) these
return an error instead. A duplicate tag in AddInbound/AddOutbound is refused
with Xray's ``existing tag found: TAG`` (4.34 silently replaced the handler and
leaked the old listener).
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import log_command_pb2 as lpb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import stats_command_pb2 as spb
from v2py.app.commander.proto import typed_message_pb2 as tpb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.stats import StatsManager
from v2py.config.model import InboundConfig, OutboundConfig
from v2py.protocol.vmess.account import VmessUser, parse_uuid

__all__ = [
    "ApiError",
    "HandlerHost",
    "HandlerServiceImpl",
    "LoggerServiceImpl",
    "StatsServiceImpl",
    "UserTable",
    "AccountTable",
    "canonical_type",
]

#: 4.34's ``common.ErrNoClue``: no package prefix.
ERR_NO_CLUE = "not enough information for making a decision"
_CMD = "v2ray.com/core/app/proxyman/command: "
_NO_ACCOUNT = f"{_CMD}failed to parse user > v2ray.com/core/common/protocol: Account missing"
_BAD_WIRE = "proto: cannot parse invalid wire-format data"
_VMESS_IN = "v2ray.com/core/proxy/vmess/inbound: "
_STATS = "v2ray.com/core/app/stats/command: "
_XRAY_PREFIX = "xray."
_V2RAY_PREFIX = "v2ray.core."
ADD_USER = "v2ray.core.app.proxyman.command.AddUserOperation"
REMOVE_USER = "v2ray.core.app.proxyman.command.RemoveUserOperation"
VMESS_ACCOUNT = "v2ray.core.proxy.vmess.Account"
#: Account types 4.34 knows (AddUser of one of these to a VMess inbound crashed 4.34).
_OTHER_ACCOUNTS = frozenset(
    {
        "v2ray.core.proxy.vless.Account",
        "v2ray.core.proxy.trojan.Account",
        "v2ray.core.proxy.shadowsocks.Account",
        "v2ray.core.proxy.socks.Account",
        "v2ray.core.proxy.http.Account",
        "v2ray.core.proxy.mtproto.Account",
    }
)
#: Operations 4.34 knows that are not inbound (or outbound) operations.
_OTHER_MESSAGES = frozenset(
    {
        "v2ray.core.app.proxyman.command.AddInboundRequest",
        "v2ray.core.app.proxyman.command.RemoveInboundRequest",
        "v2ray.core.app.proxyman.command.AlterInboundRequest",
        "v2ray.core.app.proxyman.command.AddOutboundRequest",
        "v2ray.core.app.proxyman.command.RemoveOutboundRequest",
        "v2ray.core.app.proxyman.command.AlterOutboundRequest",
        "v2ray.core.app.proxyman.command.Config",
        VMESS_ACCOUNT,
        *_OTHER_ACCOUNTS,
    }
)


class ApiError(Exception):
    """An RPC failure: gRPC status UNKNOWN with ``details`` (4.34's error text)."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


def canonical_type(name: str) -> str:
    """A TypedMessage type under 4.34's name: Xray's ``xray.X`` is ``v2ray.core.X``."""
    if name.startswith(_XRAY_PREFIX):
        return _V2RAY_PREFIX + name[len(_XRAY_PREFIX) :]
    return name


def _unknown_type(name: str) -> str:
    return f"Serial: Unknown type: {name}"


class UserTable(Protocol):
    """The VMess user table of an inbound (``UserValidator``) as the API uses it."""

    def add_user(self, user: VmessUser) -> None: ...

    def remove_user(self, email: str) -> VmessUser | None: ...

    def get_user(self, email: str) -> VmessUser | None: ...


@runtime_checkable
class AccountTable(Protocol):
    """A VLESS or Trojan inbound's users as AlterInbound changes them (4.34's
    ``Validator`` of those packages: users by their secret, an email unique
    case-insensitively when given, only users with one removable)."""

    #: The account TypedMessage it takes, e.g. ``v2ray.core.proxy.vless.Account``.
    account_type: str
    #: 4.34's package prefix of its validator's errors, e.g. ``v2ray.com/core/proxy/vless: ``.
    error_prefix: str

    def parse_account(self, account: bytes, level: int, email: str) -> object:
        """The user of an account message's bytes; raises ValueError with 4.34's reason
        (after ``failed to parse user > ``)."""
        ...

    def add(self, user: object) -> None:
        """Add a parsed user; raises ValueError with 4.34's text (after the prefix)."""
        ...

    def remove(self, email: str) -> None:
        """Remove the user with ``email``; raises ValueError with 4.34's text."""
        ...


class HandlerHost(Protocol):
    """The running instance as HandlerService changes it (``inbound.Manager`` and
    ``outbound.Manager`` plus the assembly that builds handlers from config)."""

    def inbound_users(self, tag: str) -> UserTable | AccountTable | None:
        """The user table of the always-on inbound ``tag`` (VMess's validator, or the
        VLESS / Trojan users); None if its proxy has no users (socks, dokodemo, ...).
        Raises KeyError (no such tag) or LookupError (a handler that exposes no proxy:
        ``allocate: random``)."""
        ...

    async def add_inbound(self, config: InboundConfig) -> None:
        """Build and start an inbound; raises ValueError (message = the error)."""
        ...

    async def remove_inbound(self, tag: str) -> bool:
        """Close and forget the inbound ``tag``; False if there is none."""
        ...

    async def add_outbound(self, config: OutboundConfig) -> None:
        """Build and add an outbound; raises ValueError (message = the error)."""
        ...

    async def remove_outbound(self, tag: str) -> bool:
        """Forget the outbound ``tag``; False if there is none."""
        ...


def _vmess_user(user: ppb.User) -> VmessUser:
    """4.34 ``protocol.User.ToMemoryUser`` for a VMess account; raises ApiError."""
    if not user.HasField("account"):
        raise ApiError(_NO_ACCOUNT)
    kind = canonical_type(user.account.type)
    if kind in _OTHER_ACCOUNTS:
        raise ApiError(f"{_VMESS_IN}{kind} is not a VMess account")
    if kind != VMESS_ACCOUNT:
        raise ApiError(f"{_CMD}failed to parse user > {_unknown_type(user.account.type)}")
    account = vpb.Account()
    try:
        account.ParseFromString(user.account.value)
    except Exception:  # noqa: BLE001 - any decode failure of peer bytes is an API error
        raise ApiError(f"{_CMD}failed to parse user > {_BAD_WIRE}") from None
    try:
        uid = parse_uuid(account.id)
    except ValueError:
        raise ApiError(
            f"{_CMD}failed to parse user > v2ray.com/core/proxy/vmess: failed to parse ID > "
            f"invalid UUID: {account.id}"
        ) from None
    if account.alter_id > 0xFFFF:
        raise ApiError(f"{_CMD}failed to parse user > alterId {account.alter_id} is above 65535")
    return VmessUser(id=uid, alter_id=account.alter_id, level=user.level, email=user.email)


class HandlerServiceImpl:
    """``v2ray.core.app.proxyman.command.HandlerService`` (and Xray's name).

    ``convert_inbound`` / ``convert_outbound`` turn the request's handler config into
    v2py's config model (raising ApiError for what v2py cannot do)."""

    def __init__(
        self,
        host: HandlerHost,
        *,
        convert_inbound: Callable[[object], InboundConfig],
        convert_outbound: Callable[[object], OutboundConfig],
    ) -> None:
        self._host = host
        self._convert_inbound = convert_inbound
        self._convert_outbound = convert_outbound

    async def AddInbound(self, request: hpb.AddInboundRequest) -> hpb.AddInboundResponse:  # noqa: N802
        config = self._convert_inbound(request.inbound)
        try:
            await self._host.add_inbound(config)
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        return hpb.AddInboundResponse()

    async def RemoveInbound(  # noqa: N802
        self, request: hpb.RemoveInboundRequest
    ) -> hpb.RemoveInboundResponse:
        if not request.tag or not await self._host.remove_inbound(request.tag):
            raise ApiError(ERR_NO_CLUE)
        return hpb.RemoveInboundResponse()

    async def AlterInbound(  # noqa: N802
        self, request: hpb.AlterInboundRequest
    ) -> hpb.AlterInboundResponse:
        op = request.operation
        kind = canonical_type(op.type)
        if kind not in (ADD_USER, REMOVE_USER):
            if kind in _OTHER_MESSAGES:
                raise ApiError(f"{_CMD}not an inbound operation")
            raise ApiError(f"{_CMD}unknown operation > {_unknown_type(op.type)}")
        message: hpb.AddUserOperation | hpb.RemoveUserOperation = (
            hpb.AddUserOperation() if kind == ADD_USER else hpb.RemoveUserOperation()
        )
        try:
            message.ParseFromString(op.value)
        except Exception:  # noqa: BLE001 - peer bytes
            raise ApiError(f"{_CMD}unknown operation > {_BAD_WIRE}") from None
        try:
            users = self._host.inbound_users(request.tag)
        except KeyError:
            raise ApiError(
                f"{_CMD}failed to get handler: {request.tag} > "
                f"v2ray.com/core/app/proxyman/inbound: handler not found: {request.tag}"
            ) from None
        except LookupError:
            raise ApiError(f"{_CMD}can't get inbound proxy from handler.") from None
        if users is None:
            raise ApiError(f"{_CMD}proxy is not a UserManager")
        if isinstance(users, AccountTable):
            self._alter_accounts(users, message)
            return hpb.AlterInboundResponse()
        if isinstance(message, hpb.AddUserOperation):
            self._add_user(users, message)
        else:
            self._remove_user(users, message.email)
        return hpb.AlterInboundResponse()

    @staticmethod
    def _add_user(users: UserTable, op: hpb.AddUserOperation) -> None:
        if not op.HasField("user"):
            raise ApiError(_NO_ACCOUNT)
        user = _vmess_user(op.user)
        if user.email and users.get_user(user.email) is not None:
            raise ApiError(f"{_VMESS_IN}User {user.email} already exists.")
        try:
            users.add_user(user)
        except ValueError as exc:
            raise ApiError(f"{_VMESS_IN}{exc}") from None

    @staticmethod
    def _alter_accounts(
        users: AccountTable, message: hpb.AddUserOperation | hpb.RemoveUserOperation
    ) -> None:
        prefix = users.error_prefix
        if isinstance(message, hpb.RemoveUserOperation):
            try:
                users.remove(message.email)
            except ValueError as exc:
                raise ApiError(f"{prefix}{exc}") from None
            return
        if not message.HasField("user") or not message.user.HasField("account"):
            raise ApiError(_NO_ACCOUNT)
        user = message.user
        kind = canonical_type(user.account.type)
        if kind != users.account_type:
            if kind in _OTHER_ACCOUNTS or kind == VMESS_ACCOUNT:
                # 4.34 panics here (its validator casts the account).
                raise ApiError(f"{prefix}{kind} is not a {users.account_type} account")
            raise ApiError(f"{_CMD}failed to parse user > {_unknown_type(user.account.type)}")
        try:
            parsed = users.parse_account(user.account.value, user.level, user.email)
        except ValueError as exc:
            raise ApiError(f"{_CMD}failed to parse user > {exc}") from None
        try:
            users.add(parsed)
        except ValueError as exc:
            raise ApiError(f"{prefix}{exc}") from None

    @staticmethod
    def _remove_user(users: UserTable, email: str) -> None:
        if not email:
            raise ApiError(f"{_VMESS_IN}Email must not be empty.")
        if users.remove_user(email) is None:
            raise ApiError(f"{_VMESS_IN}User {email} not found.")

    async def AddOutbound(  # noqa: N802
        self, request: hpb.AddOutboundRequest
    ) -> hpb.AddOutboundResponse:
        config = self._convert_outbound(request.outbound)
        try:
            await self._host.add_outbound(config)
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        return hpb.AddOutboundResponse()

    async def RemoveOutbound(  # noqa: N802
        self, request: hpb.RemoveOutboundRequest
    ) -> hpb.RemoveOutboundResponse:
        if not request.tag:
            raise ApiError(ERR_NO_CLUE)
        await self._host.remove_outbound(request.tag)  # an unknown tag is OK, as 4.34
        return hpb.RemoveOutboundResponse()

    async def AlterOutbound(  # noqa: N802
        self, request: hpb.AlterOutboundRequest
    ) -> hpb.AlterOutboundResponse:
        kind = canonical_type(request.operation.type)
        if kind in (ADD_USER, REMOVE_USER) or kind in _OTHER_MESSAGES:
            raise ApiError(f"{_CMD}not an outbound operation")
        raise ApiError(f"{_CMD}unknown operation > {_unknown_type(request.operation.type)}")


class StatsServiceImpl:
    """``v2ray.core.app.stats.command.StatsService``; ``manager`` None when the
    config has no ``stats`` object."""

    def __init__(
        self, manager: StatsManager | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._manager = manager
        self._clock = clock
        self._started = clock()

    async def GetStats(self, request: spb.GetStatsRequest) -> spb.GetStatsResponse:  # noqa: N802
        counter = self._manager.get(request.name) if self._manager is not None else None
        if counter is None:
            raise ApiError(f"{_STATS}{request.name} not found.")
        value = counter.set(0) if request.reset else counter.value
        return spb.GetStatsResponse(stat=spb.Stat(name=request.name, value=value))

    async def QueryStats(  # noqa: N802
        self, request: spb.QueryStatsRequest
    ) -> spb.QueryStatsResponse:
        if self._manager is None:
            raise ApiError(f"{_STATS}QueryStats only works its own stats.Manager.")
        found = self._manager.query(request.pattern, reset=request.reset)
        return spb.QueryStatsResponse(stat=[spb.Stat(name=n, value=v) for n, v in found])

    async def GetSysStats(  # noqa: N802
        self, request: spb.SysStatsRequest
    ) -> spb.SysStatsResponse:
        # Python analogues of Go's runtime numbers (panels only use this as a health check).
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:
            tasks = 0
        collections = sum(s["collections"] for s in gc.get_stats())
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss = _rss_bytes()
        blocks = sys.getallocatedblocks()
        return spb.SysStatsResponse(
            NumGoroutine=tasks + threading.active_count(),
            NumGC=collections & 0xFFFF_FFFF,
            Alloc=rss,
            TotalAlloc=usage.ru_maxrss * 1024,
            Sys=rss,
            Mallocs=blocks,
            LiveObjects=blocks,
            Uptime=int(self._clock() - self._started) & 0xFFFF_FFFF,
        )


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class LoggerServiceImpl:
    """``v2ray.core.app.log.command.LoggerService``: RestartLogger reopens the log
    files (log rotation)."""

    def __init__(self, restart: Callable[[], None]) -> None:
        self._restart = restart

    async def RestartLogger(  # noqa: N802
        self, request: lpb.RestartLoggerRequest
    ) -> lpb.RestartLoggerResponse:
        self._restart()
        return lpb.RestartLoggerResponse()


#: Used by tests and the Xray-name stubs: a TypedMessage for ``message``.
def typed(message: object, *, prefix: str = _V2RAY_PREFIX) -> tpb.TypedMessage:
    """``message`` as a TypedMessage, named with ``prefix`` (``v2ray.core.`` or ``xray.``)."""
    full = message.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    if prefix != _V2RAY_PREFIX and full.startswith(_V2RAY_PREFIX):
        full = prefix + full[len(_V2RAY_PREFIX) :]
    return tpb.TypedMessage(type=full, value=message.SerializeToString())  # type: ignore[attr-defined]
