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
  the first error (the first worker's first), else the first worker's answer.

Changes (HandlerService, LoggerService) are put in one order: the first worker queues
each change on every worker's lane at one moment, the other workers pass the changes
they receive to it, and each lane applies one change at a time (the next change does
not wait for the last to finish everywhere). So every worker applies the same changes
in the same order, as one process applies them in arrival order: two panels (or one
panel on two connections) removing and re-adding the same user at the same moment
cannot leave the workers serving different user lists. Stats calls only read (a reset
is exact in any order) and are fanned out directly.

Wire format between workers (one connection per call): a request is a 4-byte
big-endian length, then ``service`` NUL ``method`` NUL and the serialized request; an
answer is a 4-byte length, then a status byte (0: the serialized response; 1: the
error text of an ``ApiError``). A ``service`` starting with ``=`` asks the first worker
to order the change and apply it everywhere; without it, the call runs only on the
worker asked.
"""

from __future__ import annotations

import asyncio
import collections
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
#: How long the first worker may take to order and apply a change everywhere (it may
#: wait for the changes before it, each bounded by ``PEER_TIMEOUT_S``).
ORDER_TIMEOUT_S = 3 * PEER_TIMEOUT_S
#: Prefix of a service name asking the first worker to order a change.
_ORDER = "="
#: The services whose calls change state and are therefore put in one order.
ORDERED_SERVICES = frozenset(
    {"app.proxyman.command.HandlerService", "app.log.command.LoggerService"}
)
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

    def __init__(
        self,
        path: str,
        services: Sequence[ServiceSpec],
        *,
        ordering: Sequence[ServiceSpec] = (),
    ) -> None:
        """``services`` run here only; ``ordering`` (the first worker's fanned-out
        services) answers the other workers' changes to be ordered."""
        self.path = path
        self._methods: dict[tuple[str, str], tuple[Handler, type[Any]]] = {}
        for prefix, specs in (("", services), (_ORDER, ordering)):
            for spec in specs:
                if prefix and spec.name not in ORDERED_SERVICES:
                    continue
                for method, (fn, request_type, _) in spec.methods.items():
                    self._methods[(prefix + spec.name, method)] = (fn, request_type)
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
            async with asyncio.timeout(PEER_TIMEOUT_S) as deadline:
                message = await _read_frame(reader)
                service, _, rest = message.partition(b"\0")
                method, _, body = rest.partition(b"\0")
                if service.startswith(_ORDER.encode()):
                    deadline.reschedule(asyncio.get_running_loop().time() + ORDER_TIMEOUT_S)
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


async def _call_peer(
    path: str, service: str, method: str, body: bytes, *, timeout: float | None = None
) -> bytes:
    """Run ``service.method`` on the sibling at ``path``: its serialized response;
    raises ApiError with its error text, ConnectionError when it cannot be reached."""
    async with asyncio.timeout(PEER_TIMEOUT_S if timeout is None else timeout):
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


def fan_out(
    services: Sequence[ServiceSpec], siblings: Sequence[str], *, first: str | None = None
) -> list[ServiceSpec]:
    """``services`` with each method run here and on every sibling (their peer socket
    paths), the results combined as the module says.

    ``first`` is the first worker's peer socket when this worker is not the first: a
    change is then passed to it to be ordered. The first worker (``first`` None) orders
    changes itself: each is queued on every worker's :class:`_Lane` (this one's first)
    at one moment, with no await in between, so every worker applies the changes in the
    same order; pass its result to :class:`PeerServer` as ``ordering``.
    """
    lanes = [_Lane() for _ in range(len(siblings) + 1)]
    out: list[ServiceSpec] = []
    for spec in services:
        methods = {}
        for method, (fn, request_type, response_type) in spec.methods.items():
            merge = _MERGES.get((spec.name, method), _first_error)
            if spec.name not in ORDERED_SERVICES:
                call = _fanned(spec.name, method, fn, response_type, merge, siblings)
            elif first is None:
                call = _fanned(spec.name, method, fn, response_type, merge, siblings, lanes)
            else:
                call = _ordered_by(first, spec.name, method, response_type)
            methods[method] = (call, request_type, response_type)
        out.append(ServiceSpec(spec.name, methods))
    return out


Job = Callable[[], Awaitable[Any]]


class _Lane:
    """One worker's changes (this one's, or a sibling's over its peer socket), applied
    one at a time in the order they were queued; a task runs only while some wait."""

    def __init__(self) -> None:
        self._jobs: collections.deque[tuple[Job, asyncio.Future[Any]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    def push(self, job: Job) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._jobs.append((job, done))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        try:
            while self._jobs:
                job, done = self._jobs.popleft()
                # A caller that went away (cancelled ``done``) is applied all the same:
                # every worker must see every change.
                try:
                    result = await job()
                except Exception as exc:
                    if not done.done():
                        done.set_exception(exc)
                else:
                    if not done.done():
                        done.set_result(result)
        finally:
            self._task = None


def _ordered_by(first: str, service: str, method: str, response_type: type[Any]) -> Handler:
    async def ordered(request: Any) -> Any:
        try:
            answer = await _call_peer(
                first,
                _ORDER + service,
                method,
                request.SerializeToString(),
                timeout=ORDER_TIMEOUT_S + PEER_TIMEOUT_S,
            )
        except ApiError:
            raise
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.warning("api: %s/%s: the first worker failed: %s", service, method, exc)
            raise ApiError(f"v2py: a worker did not answer: {exc}") from None
        return response_type.FromString(answer)

    return ordered


def _fanned(
    service: str,
    method: str,
    fn: Handler,
    response_type: type[Any],
    merge: Merge,
    siblings: Sequence[str],
    lanes: Sequence[_Lane] | None = None,
) -> Handler:
    """Run here and on every sibling at once, or, with ``lanes`` (this worker's, then
    each sibling's), queued on them in one go."""

    async def call(request: Any) -> Any:
        body = request.SerializeToString()
        jobs = [
            lambda: fn(request),
            *(_remote(p, service, method, body, response_type) for p in siblings),
        ]
        if lanes is None:
            pending: list[Awaitable[Any]] = [job() for job in jobs]
        else:
            pending = [lane.push(job) for lane, job in zip(lanes, jobs, strict=True)]
        results = await asyncio.gather(*pending, return_exceptions=True)
        return _combine(service, method, merge, results)

    return call


def _remote(path: str, service: str, method: str, body: bytes, response_type: type[Any]) -> Job:
    """``service.method`` with ``body`` on the sibling at ``path``, its answer decoded."""

    async def run() -> Any:
        return response_type.FromString(await _call_peer(path, service, method, body))

    return run


def _combine(service: str, method: str, merge: Merge, results: list[Any]) -> Any:
    """This worker's result (first) and the siblings', merged; a sibling that failed
    other than with an ``ApiError`` fails the call."""
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ApiError):
            log.warning("api: %s/%s on a sibling worker failed: %s", service, method, result)
            raise ApiError(f"v2py: a worker did not answer: {result}")
    return merge(results[0], list(results[1:]))
