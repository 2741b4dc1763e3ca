"""``v2py api``: the ``v2ctl api`` command of V2Ray 4.34 (``infra/control/api.go``).

``v2py api [--server=HOST:PORT] Service.Method 'REQUEST'`` calls StatsService
(GetStats, QueryStats, GetSysStats) or LoggerService (RestartLogger) and prints
the response in golang/protobuf 1.3 text format plus a newline, byte for byte as
v2ctl does (panels such as v2-ui parse it with regexes). Failures print v2ctl's
message and usage and exit 255. One 3-second deadline covers dial and call.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

__all__ = ["main"]

DEFAULT_SERVER = "127.0.0.1:8080"
TIMEOUT_S = 3.0
EXIT_FAILURE = 255  # v2ctl's os.Exit(-1)
_ERROR_PREFIX = "v2ray.com/core/infra/control: "

USAGE = (
    "v2ctl api [--server=127.0.0.1:8080] Service.Method Request",
    "Call an API in an V2Ray process.",
    "The following methods are currently supported:",
    "\tLoggerService.RestartLogger",
    "\tStatsService.GetStats",
    "\tStatsService.QueryStats",
    "API calls in this command have a timeout to the server of 3 seconds.",
    "Examples:",
    "v2ctl api --server=127.0.0.1:8080 LoggerService.RestartLogger '' ",
    "v2ctl api --server=127.0.0.1:8080 StatsService.QueryStats 'pattern: \"\" reset: false'",
    "v2ctl api --server=127.0.0.1:8080 StatsService.GetStats "
    "'name: \"inbound>>>statin>>>traffic>>>downlink\" reset: false'",
    "v2ctl api --server=127.0.0.1:8080 StatsService.GetSysStats ''",
)

#: grpc status names as grpc-go prints them (``codes.Code.String``).
_GO_CODE_NAMES = {
    "OK": "OK",
    "CANCELLED": "Canceled",
    "UNKNOWN": "Unknown",
    "INVALID_ARGUMENT": "InvalidArgument",
    "DEADLINE_EXCEEDED": "DeadlineExceeded",
    "NOT_FOUND": "NotFound",
    "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied",
    "RESOURCE_EXHAUSTED": "ResourceExhausted",
    "FAILED_PRECONDITION": "FailedPrecondition",
    "ABORTED": "Aborted",
    "OUT_OF_RANGE": "OutOfRange",
    "UNIMPLEMENTED": "Unimplemented",
    "INTERNAL": "Internal",
    "UNAVAILABLE": "Unavailable",
    "DATA_LOSS": "DataLoss",
    "UNAUTHENTICATED": "Unauthenticated",
}


class _Failure(Exception):
    """A v2ctl error: its message (without the package prefix)."""


@dataclass(frozen=True, slots=True)
class _Method:
    path: str
    request: str  # message class name in the module
    response: str
    module: str
    parse_request: bool = True


_STATS = "v2py.app.commander.proto.stats_command_pb2"
_LOG = "v2py.app.commander.proto.log_command_pb2"
_SERVICES: dict[str, dict[str, _Method]] = {
    "statsservice": {
        "getstats": _Method(
            "/v2ray.core.app.stats.command.StatsService/GetStats",
            "GetStatsRequest",
            "GetStatsResponse",
            _STATS,
        ),
        "querystats": _Method(
            "/v2ray.core.app.stats.command.StatsService/QueryStats",
            "QueryStatsRequest",
            "QueryStatsResponse",
            _STATS,
        ),
        # v2ctl ignores the request text of GetSysStats (an empty message).
        "getsysstats": _Method(
            "/v2ray.core.app.stats.command.StatsService/GetSysStats",
            "SysStatsRequest",
            "SysStatsResponse",
            _STATS,
            parse_request=False,
        ),
    },
    "loggerservice": {
        "restartlogger": _Method(
            "/v2ray.core.app.log.command.LoggerService/RestartLogger",
            "RestartLoggerRequest",
            "RestartLoggerResponse",
            _LOG,
        ),
    },
}


#: What Go's ``flag.FlagSet("api")`` prints for ``-h`` and before a flag error.
FLAG_USAGE = f'Usage of api:\n  -server string\n    \tServer address (default "{DEFAULT_SERVER}")\n'


class _FlagError(Exception):
    """A command line Go's ``flag`` package refuses: the message it prints."""


class _HelpRequested(Exception):
    """``-h`` / ``-help`` (Go's ``flag.ErrHelp``)."""


def _parse_args(args: Sequence[str]) -> tuple[str, list[str]]:
    """Go ``flag.FlagSet.Parse`` with the one flag ``-server``: ``-server=X``,
    ``--server X``, ...; flags end at the first non-flag argument (``-`` is one)
    or after ``--``. Raises _FlagError or _HelpRequested."""
    server = DEFAULT_SERVER
    rest = list(args)
    while rest:
        arg = rest[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 2 if arg[1] == "-" else 1
        if arg == "--":
            rest.pop(0)
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise _FlagError(f"bad flag syntax: {arg}")
        rest.pop(0)
        name, eq, value = name.partition("=")
        if name != "server":
            if name in ("h", "help"):
                raise _HelpRequested
            raise _FlagError(f"flag provided but not defined: -{name}")
        if not eq:
            if not rest:
                raise _FlagError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        server = value
    return server, rest


def _target(server: str) -> str:
    host, sep, port = server.rpartition(":")
    if sep and not host:
        return f"127.0.0.1:{port}"  # Go dials ":port" on the local host
    return server


def call(server: str, service_method: str, request_text: str) -> str:
    """Do what ``v2ctl api`` does; returns the text to print (without the final
    newline ``fmt.Println`` adds). Raises :class:`_Failure`."""
    import importlib

    import grpc

    from v2py.app.commander.text import TextParseError, marshal_text, unmarshal_text

    service, _, method = service_method.partition(".")
    method = method.split(".", 1)[0]
    methods = _SERVICES.get(service.lower())
    if methods is None:
        raise _Failure(f"unknown service: {service}")
    deadline = time.monotonic() + TIMEOUT_S
    channel = grpc.insecure_channel(_target(server))
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        except grpc.FutureTimeoutError:
            raise _Failure(f"failed to dial {server} > context deadline exceeded") from None
        spec = methods.get(method.lower())
        if spec is None:
            raise _Failure(f"failed to call service {service_method} > Unknown method: {method}")
        module = importlib.import_module(spec.module)
        request = getattr(module, spec.request)()
        response_type = getattr(module, spec.response)
        if spec.parse_request:
            try:
                unmarshal_text(request_text, request)
            except TextParseError as exc:
                raise _Failure(f"failed to call service {service_method} > {exc}") from None
        stub: Callable[..., object] = channel.unary_unary(
            spec.path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            response = stub(request, timeout=max(0.0, deadline - time.monotonic()))
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            name = _GO_CODE_NAMES.get(code.name, code.name) if code is not None else "Unknown"
            raise _Failure(
                f"failed to call service {service_method} > "
                f"rpc error: code = {name} desc = {details or ''}"
            ) from None
        return marshal_text(response)  # type: ignore[arg-type]
    finally:
        channel.close()


def main(args: Sequence[str], *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``v2py api ARGS``; returns the exit code (0, or 255 as v2ctl)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        try:
            server, rest = _parse_args(args)
        except _HelpRequested:
            err.write(FLAG_USAGE)
            err.flush()
            out.write("".join(line + "\n" for line in USAGE))
            out.flush()
            return 0
        except _FlagError as exc:
            # Go's flag package prints the error and the flag set's usage, then v2ctl
            # prints the (unprefixed) error again.
            err.write(f"{exc}\n{FLAG_USAGE}{exc}\n\n")
            err.flush()
            out.write("".join(line + "\n" for line in USAGE))
            out.flush()
            return EXIT_FAILURE
        if len(rest) < 2:
            raise _Failure("service name or request not specified.")
        text = call(server, rest[0], rest[1])
    except _Failure as exc:
        err.write(f"{_ERROR_PREFIX}{exc}\n\n")
        err.flush()
        out.write("".join(line + "\n" for line in USAGE))
        out.flush()
        return EXIT_FAILURE
    out.write(text + "\n")
    out.flush()
    return 0
