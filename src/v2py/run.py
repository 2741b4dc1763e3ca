"""The process supervisor: serve one config in this process or in N workers.

:func:`serve` is what ``v2py run`` (and ``v2py -config FILE``) calls once the
command line is parsed, the config loaded and the logs opened (``cli.py``).
It returns the process exit code, as V2Ray 4.34's ``main/main.go`` chooses them:

* 0 after SIGTERM / SIGINT;
* 23 when building the runtime finds a config problem (``ConfigError``), one line;
* 255 when a listener cannot be opened (port in use, address not available,
  permission): ``Failed to start ...``, one line on standard output (4.34 exits
  with ``os.Exit(-1)``).

``workers > 1`` (Linux) forks N worker processes that each run the whole config
and bind every listener with SO_REUSEPORT, so the kernel spreads connections
across cores; Unix sockets (``network: "ds"``, a ``listen`` path), which bind once,
are bound (and locked) by the parent before forking, every worker accepts on the
inherited socket, and the parent unlinks them at the end. Theory of operation:

* the parent builds (and drops) one runtime so that wiring errors are reported
  once (exit 23), makes the shared VMess key table (:mod:`v2py.app.shared_state`),
  a 32-byte seed and a start instant, then forks before any event loop or thread
  exists;
* each worker asks the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG),
  installs uvloop / malloc tuning, starts its Instance and reports "ready" on a pipe;
  the parent logs the "started" line once every worker is listening;
* SIGTERM or SIGINT to the parent is forwarded (as SIGTERM) to every worker; the
  parent exits 0 once they have exited (SIGKILL after ``WORKER_STOP_TIMEOUT_S``);
* a worker that exits on its own (crash, OOM kill, failed bind) is fatal: the
  parent logs it, stops the others and exits with that worker's code (1 if it
  was killed by a signal). Fail-fast rather than restart: a service manager
  restarts the whole server, and no half-started state is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from v2py import V2RAY_COMPAT_VERSION, __version__
from v2py.errors import ConfigError

if TYPE_CHECKING:
    from v2py.app.shared_state import SharedKeyTable, WorkerContext
    from v2py.config.model import Config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_START_FAILED",
    "WORKER_STOP_TIMEOUT_S",
    "check_config",
    "pause_gc_for_startup",
    "resume_gc",
    "serve",
    "started_message",
]

#: Exit code for a config problem (4.34 main/main.go: "prevent systemd from restarting").
EXIT_CONFIG = 23
#: Exit code when the server cannot start, e.g. a port in use (4.34: os.Exit(-1)).
EXIT_START_FAILED = 255
#: How long stopping workers may take before the parent SIGKILLs them (each closes
#: its inbounds within a few seconds, instance.CLOSE_TIMEOUT_S each).
WORKER_STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1
_READY = b"R"

log = logging.getLogger(__name__)


def config_error_line(exc: ConfigError) -> str:
    """The one line a config problem is reported with (standard output, as 4.34)."""
    return f"v2py: config error: {exc}"


def _report(line: str) -> None:
    """Print one start-up line on standard output, where 4.34's main() prints them."""
    print(line, flush=True)


def started_message(extra: str = "") -> str:
    """The "started" line, logged at Warning as 4.34 logs ``V2Ray 4.34.0 started``."""
    return f"V2Ray {V2RAY_COMPAT_VERSION} started (v2py {__version__}{extra})"


# -- process tuning ------------------------------------------------------------

#: glibc malloc thresholds (bytes): keep freed relay buffers in the heap instead of
#: returning them to the OS after every 256 KiB read (measured: page faults per MB
#: 140 -> 2.4, CPU per GB moved about -9%); at most this much freed heap is retained.
MALLOC_THRESHOLD_BYTES = 8 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _tune_malloc() -> None:
    """Raise glibc's mmap/trim thresholds; a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MALLOC_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, MALLOC_THRESHOLD_BYTES)


def _raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one, as Go >= 1.19 does
    for v2ray (each relayed connection holds two descriptors)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- start-up garbage collection ---------------------------------------------------

#: Whether :func:`pause_gc_for_startup` turned the cyclic collector off.
_gc_paused = False
#: Youngest-generation threshold while serving (CPython's default: 700). Each proxied
#: connection allocates a few hundred container objects that refcounting frees within
#: milliseconds; at 700 the collector ran every few connections, scanned the live ones
#: (and the connections a relay keeps for downlinkOnly after its client closed) and
#: promoted them. Bench, 5 alternating runs against 700: conn/s +8% (VMess), +16%
#: (VMess + Mux), +10% (socks -> freedom), p99 latency halved, RSS within 3%.
SERVING_GC_GEN0 = 20_000


def pause_gc_for_startup() -> None:
    """Turn the cyclic garbage collector off while the config is loaded and the server
    built: it runs ~90 times then (imports, model classes, validators), ~11 ms of a
    minimal config's ~200 ms start, and frees a few hundred objects. :func:`resume_gc`
    turns it back on."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def resume_gc(*, freeze: bool) -> None:
    """Undo :func:`pause_gc_for_startup` (a no-op otherwise). ``freeze`` (serving):
    what start-up made is kept out of later collections (``gc.freeze``), so the first
    collections do not scan it all on the first connections; its garbage cycles are
    collected first (~10 ms, ~0.5-1 MiB that freezing would keep for good)."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        if freeze:
            gc.collect()
            gc.freeze()
            _, gen1, gen2 = gc.get_threshold()
            gc.set_threshold(SERVING_GC_GEN0, gen1, gen2)
        gc.enable()


# -- one process -----------------------------------------------------------------


def check_config(config: Config) -> None:
    """Build (and drop) the runtime, so that wiring errors surface as ConfigError
    before anything listens (``v2py -test`` builds the server too, as 4.34 does)."""
    from v2py.instance import Instance

    Instance.from_config(config)


async def _serve(
    config: Config, worker: WorkerContext | None = None, ready_fd: int | None = None
) -> int:
    from v2py.instance import Instance

    instance = Instance.from_config(config, worker=worker)
    await instance.start()
    resume_gc(freeze=True)
    if ready_fd is None:
        log.warning("%s", started_message())
    else:
        os.write(ready_fd, _READY)
        os.close(ready_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await instance.close()
    return 0


def _start_failure(exc: BaseException, where: str = "") -> int:
    """One line for a server that could not start (4.34: "Failed to start", exit -1)."""
    if isinstance(exc, OSError):
        _report(f"Failed to start: {where}{exc}")
    else:
        # Not a traceback on the console: the details go to the error log at Debug.
        log.debug("start-up failed", exc_info=exc)
        _report(f"Failed to start: {where}{type(exc).__name__}: {exc}")
    return EXIT_START_FAILED


def serve(config: Config, workers: int = 1) -> int:
    """Run ``config`` until SIGTERM/SIGINT; return the exit code (module docstring)."""
    if workers > 1:
        if sys.platform.startswith("linux"):
            return _run_workers(config, workers)
        log.warning("--workers needs Linux; running one process")
    _install_uvloop()
    _tune_malloc()
    _raise_fd_limit()
    try:
        return asyncio.run(_serve(config))
    except ConfigError as exc:
        _report(config_error_line(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        return _start_failure(exc)


# -- multi-process run (Linux) ----------------------------------------------------


def _run_workers(config: Config, count: int) -> int:

    try:
        check_config(config)
        from v2py.build import check_single_process_switches

        check_single_process_switches(config, os.environ)
    except ConfigError as exc:
        _report(config_error_line(exc))
        return EXIT_CONFIG
    try:
        # Unix sockets (ds, a listen path) bind once: here, for every worker to inherit.
        release_unix = _prebind_unix(config)
    except OSError as exc:
        return _start_failure(exc)
    try:
        return _fork_workers(config, count)
    finally:
        release_unix()


def _prebind_unix(config: Config) -> Callable[[], None]:
    """Bind the Unix sockets of ``config``'s inbounds (``network: "ds"`` or a ``listen``
    path) before forking; returns their release. Raises OSError."""
    from v2py.transport.ds import inbound_unix_socket, prebind_unix

    configs = [c for c in map(inbound_unix_socket, config.inbounds) if c is not None]
    return prebind_unix(configs) if configs else lambda: None


def _fork_workers(config: Config, count: int) -> int:
    from v2py.app.shared_state import SharedKeyTable

    _raise_fd_limit()
    store = SharedKeyTable()
    seed = os.urandom(32)
    start = time.monotonic()
    # The gRPC API and reverse portals: each worker passes calls (fanout.py) or
    # connections (reverse_relay.py) on to its siblings through Unix sockets in this
    # private directory (mkdtemp makes it mode 0700).
    portals = config.reverse is not None and bool(config.reverse.portals)
    peer_dir = tempfile.mkdtemp(prefix="v2py-workers-") if config.api is not None or portals else ""
    try:
        return _fork_and_supervise(config, count, store, seed, start, peer_dir)
    finally:
        if peer_dir:
            shutil.rmtree(peer_dir, ignore_errors=True)


def _fork_and_supervise(
    config: Config, count: int, store: SharedKeyTable, seed: bytes, start: float, peer_dir: str
) -> int:
    from v2py.app.shared_state import WorkerContext

    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    for index in range(count):
        context = WorkerContext(
            index=index,
            count=count,
            store=store,
            seed=seed,
            start_monotonic=start,
            peer_dir=peer_dir,
        )
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                os.close(ready_r)
                code = _worker_main(config, context, ready_w, parent)
            finally:
                os._exit(code)
        pids.append(pid)
    resume_gc(freeze=False)  # the supervisor; each worker resumes in _serve
    os.close(ready_w)
    return _supervise(pids, ready_r)


def _die_with_parent(parent: int) -> bool:
    """Ask for SIGTERM when the parent dies; False if it is already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent


def _worker_main(config: Config, context: WorkerContext, ready_fd: int, parent: int) -> int:
    try:
        if not _die_with_parent(parent):
            return 1
        _install_uvloop()
        _tune_malloc()
        return asyncio.run(_serve(config, worker=context, ready_fd=ready_fd))
    except ConfigError as exc:
        _report(config_error_line(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        return _start_failure(exc, f"worker {context.index}: ")
    finally:
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()


def _signal_noop(signum: int, frame: object) -> None:
    """Handlers only wake the supervisor's select() through the wakeup fd."""


def _supervise(pids: list[int], ready_r: int) -> int:
    """Wait for the workers: log "started", forward stop signals, fail fast."""
    count = len(pids)
    alive = set(pids)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, _signal_noop)
    ready = 0
    started = False
    stopping = False
    code = 0
    kill_at: float | None = None
    watched = [wake_r, ready_r]

    def stop(reason: str) -> None:
        nonlocal stopping, kill_at
        stopping = True
        kill_at = time.monotonic() + WORKER_STOP_TIMEOUT_S
        log.info("stopping %d worker(s): %s", len(alive), reason)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    while alive:
        while alive:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                alive.clear()
                break
            if pid == 0:
                break
            alive.discard(pid)
            if not stopping:
                exit_code = os.waitstatus_to_exitcode(status)
                how = f"signal {-exit_code}" if exit_code < 0 else f"code {exit_code}"
                log.error("worker pid %d exited unexpectedly (%s); stopping the others", pid, how)
                code = exit_code if exit_code > 0 else 1
                stop("a worker died")
        if not alive:
            break
        if not started and not stopping and ready >= count:
            started = True
            pid_list = ", ".join(str(p) for p in pids)
            log.warning("%s", started_message(f", {count} workers: pids {pid_list}"))
        timeout = None if kill_at is None else max(0.0, kill_at - time.monotonic())
        readable, _, _ = select.select(watched, [], [], timeout)
        if ready_r in readable:
            data = os.read(ready_r, 64)
            if data:
                ready += len(data)
            else:  # every worker closed its end (ready, or dead)
                watched.remove(ready_r)
        if wake_r in readable:
            signals = os.read(wake_r, 64)
            if not stopping and ({signal.SIGINT, signal.SIGTERM} & set(signals)):
                stop("stop requested")
        if kill_at is not None and time.monotonic() >= kill_at:
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            kill_at = None
    return code
