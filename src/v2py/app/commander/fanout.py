"""The gRPC API with ``v2py run --workers N``: every call reaches every worker.

Each worker serves the API as one process does (its dokodemo-door inbound binds with
SO_REUSEPORT like every other, so a panel's call lands on any worker). The worker that
receives a call runs it itself and on each sibling, over a private Unix socket per
worker (``peer-<index>.sock`` in a mode-0700 directory the parent makes before forking
and removes at the end), then answers with the combination:

* StatsService: ``GetStats`` sums the counter over the workers that have it (not
  found: 4.34's error, only when none has it); ``QueryStats`` sums by name (a reset
  resets each worker's counter, and the values before it are summed, so nothing is
  lost); ``GetSysStats`` sums the numbers, uptime is the longest.
* HandlerService and LoggerService: the change is made in every worker; the answer is
  the first error (this worker's first), else this worker's answer.

Concurrent calls that change the same thing through two workers may be applied in a
different order by different workers (one process applies them in arrival order).

Wire format between workers (one connection per call): a request is a 4-byte
big-endian length, then ``service`` NUL ``method`` NUL and the serialized request; an
answer is a 4-byte length, then a status byte (0: the serialized response; 1: the
error text of an ``ApiError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from v2py.app.commander.server import ServiceSpec
from v2py.app.commander.services import ApiError

log = logging.getLogger(__name__)

__all__ = ["PeerServer", "fan_out", "peer_socket"]

#: How long a sibling may take to answer (it may still be starting: connects are retried).
PEER_TIMEOUT_S = 10.0
CONNECT_RETRY_S = 0.05
MAX_MESSAGE_BYTES = 64 << 20
_LENGTH = struct.Struct(">I")
_OK, _ERROR = 0, 1

Handler = Callable[[Any], Awaitable[Any]]
Merge = Callable[[Any, list[Any]], Any]


def peer_socket(directory: str, index: int) -> str:
    return os.path.join(directory, f"peer-{index}.sock")


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    size = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {size} bytes")
    return await reader.readexactly(size)


class PeerServer:
    """This worker's end: runs the calls its siblings pass on, on the local services."""

    def __init__(self, path: str, services: Sequence[ServiceSpec]) -> None:
        self.path = path
        self._methods: dict[tuple[str, str], tuple[Handler, type[Any]]] = {
            (spec.name, method): (fn, request_type)
            for spec in services
            for method, (fn, request_type, _) in spec.methods.items()
        }
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT_S):
                message = await _read_frame(reader)
                service, _, rest = message.partition(b"\0")
                method, _, body = rest.partition(b"\0")
                found = self._methods.get((service.decode(), method.decode()))
                if found is None:
                    answer = bytes([_ERROR]) + b"unknown method"
                else:
                    fn, request_type = found
                    try:
                        response = await fn(request_type.FromString(body))
                        answer = bytes([_OK]) + response.SerializeToString()
                    except ApiError as exc:
                        answer = bytes([_ERROR]) + exc.details.encode()
                    except Exception as exc:  # a fault here must still answer the caller
                        log.warning("api: a sibling's call failed here: %r", exc)
                        answer = bytes([_ERROR]) + f"v2py: {exc}".encode()
                writer.write(_frame(answer))
                await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.info("api: a sibling's call failed: %s", exc)
        finally:
            writer.close()


async def _call_peer(path: str, service: str, method: str, body: bytes) -> bytes:
    """Run ``service.method`` on the sibling at ``path``: its serialized response;
    raises ApiError with its error text, ConnectionError when it cannot be reached."""
    async with asyncio.timeout(PEER_TIMEOUT_S):
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(CONNECT_RETRY_S)  # a sibling still starting
        try:
            writer.write(_frame(service.encode() + b"\0" + method.encode() + b"\0" + body))
            await writer.drain()
            answer = await _read_frame(reader)
        finally:
            writer.close()
    if not answer:
        raise ConnectionError("empty answer from a sibling worker")
    if answer[0] == _ERROR:
        raise ApiError(answer[1:].decode(errors="replace"))
    return answer[1:]


def _first_error(local: Any, others: list[Any]) -> Any:
    """Handler and Logger calls: this worker's answer unless some worker failed."""
    for result in (local, *others):
        if isinstance(result, BaseException):
            raise result
    return local


def _sum_get_stats(local: Any, others: list[Any]) -> Any:
    found = [r for r in (local, *others) if not isinstance(r, BaseException)]
    if not found:
        raise local
    failed = [r for r in (local, *others) if isinstance(r, BaseException) and not _not_found(r)]
    if failed:
        raise failed[0]
    response = found[0]
    response.stat.value = sum(r.stat.value for r in found)
    return response


def _not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.details.endswith(" not found.")


def _sum_query_stats(local: Any, others: list[Any]) -> Any:
    response = _first_error(local, others)
    totals: dict[str, int] = {}
    for result in (local, *others):
        for stat in result.stat:
            totals[stat.name] = totals.get(stat.name, 0) + stat.value
    del response.stat[:]
    for name, value in totals.items():
        response.stat.add(name=name, value=value)
    return response


_SYS_MAX = frozenset({"Uptime"})


def _sum_sys_stats(local: Any, others: list[Any]) -> Any:
    response = _first_error(local, others)
    for field in response.DESCRIPTOR.fields:
        values = [getattr(r, field.name) for r in (local, *others)]
        total = max(values) if field.name in _SYS_MAX else sum(values)
        if field.type == field.TYPE_UINT32:
            total &= 0xFFFF_FFFF
        setattr(response, field.name, total)
    return response


_MERGES: dict[tuple[str, str], Merge] = {
    ("app.stats.command.StatsService", "GetStats"): _sum_get_stats,
    ("app.stats.command.StatsService", "QueryStats"): _sum_query_stats,
    ("app.stats.command.StatsService", "GetSysStats"): _sum_sys_stats,
}


def fan_out(services: Sequence[ServiceSpec], siblings: Sequence[str]) -> list[ServiceSpec]:
    """``services`` with each method run here and on every sibling (their peer socket
    paths), the results combined as the module says."""
    out: list[ServiceSpec] = []
    for spec in services:
        methods = {}
        for method, (fn, request_type, response_type) in spec.methods.items():
            merge = _MERGES.get((spec.name, method), _first_error)
            methods[method] = (
                _fanned(spec.name, method, fn, response_type, merge, siblings),
                request_type,
                response_type,
            )
        out.append(ServiceSpec(spec.name, methods))
    return out


def _fanned(
    service: str,
    method: str,
    fn: Handler,
    response_type: type[Any],
    merge: Merge,
    siblings: Sequence[str],
) -> Handler:
    async def call(request: Any) -> Any:
        body = request.SerializeToString()

        async def local() -> Any:
            return await fn(request)

        async def remote(path: str) -> Any:
            return response_type.FromString(await _call_peer(path, service, method, body))

        results = await asyncio.gather(
            local(), *(remote(p) for p in siblings), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ApiError):
                log.warning("api: %s/%s on a sibling worker failed: %s", service, method, result)
                raise ApiError(f"v2py: a worker did not answer: {result}")
        return merge(results[0], list(results[1:]))

    return call
