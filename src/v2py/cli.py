"""Command line: ``v2py run|test|uuid|version`` and V2Ray-4 style ``-config``/``-test``.

Exit codes: 0 ok, 23 bad config (as v2ray), 1 other start-up failure, 2 usage.

``run --workers N`` (Linux; N >= 2) forks N worker processes that each run the
whole config and bind every listener with SO_REUSEPORT, so the kernel spreads
connections across cores. Theory of operation:

* the parent loads and checks the config (errors reported once, exit 23), makes
  the shared VMess key table (:mod:`v2py.app.shared_state`), a 32-byte seed and a
  start instant, then forks before any event loop or thread exists;
* each worker asks the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG),
  installs uvloop / malloc tuning, starts its Instance and reports "ready" on a pipe;
  the parent prints the "started" line once every worker is listening;
* SIGTERM or SIGINT to the parent is forwarded (as SIGTERM) to every worker; the
  parent exits 0 once they have exited (SIGKILL after ``WORKER_STOP_TIMEOUT_S``);
* a worker that exits on its own (crash, OOM kill, failed bind) is fatal: the
  parent logs it, stops the others and exits with that worker's code (1 if it
  was killed by a signal). Fail-fast rather than restart: a service manager
  restarts the whole server, and no half-started state is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from v2py import V2RAY_COMPAT_VERSION, __version__
from v2py.errors import ConfigError

EXIT_CONFIG = 23
SUBCOMMANDS = ("run", "test", "uuid", "version")
_V2RAY_FLAGS = {
    "-config": "--config",
    "-test": "--test",
    "-version": "--version",
    "-confdir": "--confdir",
    "-format": "--format",
    "-workers": "--workers",
}
#: How long stopping workers may take before the parent SIGKILLs them (each closes
#: its inbounds within a few seconds, instance.CLOSE_TIMEOUT_S each).
WORKER_STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1
_READY = b"R"

log = logging.getLogger("v2py.cli")


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w",
        "--workers",
        type=_worker_count,
        default=1,
        metavar="N",
        help="worker processes sharing the listeners with SO_REUSEPORT (Linux; default 1)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="v2py", description="A V2Ray 4.34-compatible proxy (VMess, mKCP, socks, dynamic port)."
    )
    sub = parser.add_subparsers(dest="command")
    for name, helptext in (
        ("run", "run with the given config (default: embedded socks→freedom)"),
        ("test", "validate the config and exit"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument(
            "-c",
            "--config",
            "-config",
            action="append",
            default=[],
            metavar="FILE",
            help="config file (repeatable; '-' or 'stdin:' reads standard input)",
        )
        p.add_argument("-d", "--confdir", metavar="DIR", help="also load every *.json in DIR")
        p.add_argument("--format", default="json", help="config format (only json)")
        if name == "run":
            _add_workers(p)
    sub.add_parser("uuid", help="print a random UUID for a VMess user id")
    sub.add_parser("version", help="print the version")
    return parser


def _legacy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="v2py", description="V2Ray-style invocation")
    parser.add_argument("-c", "--config", action="append", default=[], metavar="FILE")
    parser.add_argument("-d", "--confdir", metavar="DIR")
    parser.add_argument("--test", action="store_true")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--format", default="json")
    _add_workers(parser)
    return parser


def _read_sources(files: Sequence[str], confdir: str | None) -> list[tuple[str, str]]:
    sources: list[tuple[str, str]] = []
    for name in files:
        if name in ("-", "stdin:"):
            sources.append(("stdin", sys.stdin.read()))
            continue
        try:
            sources.append((name, Path(name).read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {name}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("", f"config file {name} is not UTF-8 text") from exc
    if confdir:
        try:
            names = sorted(p for p in Path(confdir).iterdir() if p.suffix.lower() == ".json")
        except OSError as exc:
            raise ConfigError(
                "", f"cannot read config folder {confdir}: {exc.strerror or exc}"
            ) from exc
        for path in names:
            sources.append((str(path), path.read_text(encoding="utf-8")))
    return sources


def _load(files: Sequence[str], confdir: str | None, *, say_default: bool) -> object:
    from v2py.config.load import DEFAULT_CONFIG_JSON, load_config

    sources = _read_sources(files, confdir)
    if not sources:
        if say_default:
            print(
                "v2py: no config given; serving the embedded default: socks (sniffing http,tls, "
                "udp) on 127.0.0.1:1080 -> freedom",
                file=sys.stderr,
            )
        sources = [("<embedded default>", DEFAULT_CONFIG_JSON)]
    loaded = load_config(sources, os.environ)
    for warning in loaded.warnings:
        print(f"v2py: warning: {warning}", file=sys.stderr)
    return loaded.config


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


def _apply_pure_python_switch() -> None:
    """``V2PY_PURE_PYTHON=1``: run without the optional C accelerator (to compare)."""
    if os.environ.get("V2PY_PURE_PYTHON", "") not in ("", "0"):
        import importlib

        for name in ("v2py.protocol.vmess.body", "v2py.protocol.vmess.kdf"):
            importlib.import_module(name).use_accelerator(False)


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _started_line(extra: str = "") -> str:
    return f"v2py {__version__} started (V2Ray {V2RAY_COMPAT_VERSION} compatible{extra})"


async def _serve(config: object, worker: Any = None, ready_fd: int | None = None) -> int:
    from v2py.instance import Instance

    instance = Instance.from_config(config, worker=worker)
    await instance.start()
    if ready_fd is None:
        print(_started_line(), file=sys.stderr, flush=True)
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


def _run(files: Sequence[str], confdir: str | None, workers: int = 1) -> int:
    try:
        config = _load(files, confdir, say_default=True)
    except ConfigError as exc:
        print(f"v2py: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from v2py.app.log import configure_logging

    log_cfg = getattr(config, "log", None)
    configure_logging(
        getattr(log_cfg, "loglevel", "warning") or "warning",
        getattr(log_cfg, "access", "") or "",
        getattr(log_cfg, "error", "") or "",
    )
    _apply_pure_python_switch()
    if workers > 1:
        if sys.platform.startswith("linux"):
            return _run_workers(config, workers)
        print("v2py: warning: --workers needs Linux; running one process", file=sys.stderr)
    _install_uvloop()
    _tune_malloc()
    _raise_fd_limit()
    try:
        return asyncio.run(_serve(config))
    except ConfigError as exc:
        print(f"v2py: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"v2py: failed to start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


# -- multi-process run (Linux) ----------------------------------------------------


def _check_instance(config: object) -> None:
    """Build (and drop) an Instance so that wiring errors surface once, before fork."""
    from v2py.instance import Instance

    Instance.from_config(config)


def _run_workers(config: object, count: int) -> int:
    from v2py.app.shared_state import SharedKeyTable, WorkerContext

    try:
        _check_instance(config)
    except ConfigError as exc:
        print(f"v2py: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _raise_fd_limit()
    store = SharedKeyTable()
    seed = os.urandom(32)
    start = time.monotonic()
    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    for index in range(count):
        context = WorkerContext(
            index=index, count=count, store=store, seed=seed, start_monotonic=start
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
    os.close(ready_w)
    return _supervise(pids, ready_r)


def _die_with_parent(parent: int) -> bool:
    """Ask for SIGTERM when the parent dies; False if it is already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent


def _worker_main(config: object, context: Any, ready_fd: int, parent: int) -> int:
    try:
        if not _die_with_parent(parent):
            return 1
        _install_uvloop()
        _tune_malloc()
        return asyncio.run(_serve(config, worker=context, ready_fd=ready_fd))
    except ConfigError as exc:
        print(f"v2py: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"v2py: worker {context.index} failed to start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BaseException:
        log.exception("worker %d failed", context.index)
        return 1
    finally:
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()


def _signal_noop(signum: int, frame: object) -> None:
    """Handlers only wake the supervisor's select() through the wakeup fd."""


def _supervise(pids: list[int], ready_r: int) -> int:
    """Wait for the workers: print "started", forward stop signals, fail fast."""
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
                print(
                    f"v2py: worker pid {pid} exited unexpectedly ({how}); stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                code = exit_code if exit_code > 0 else 1
                stop("a worker died")
        if not alive:
            break
        if not started and not stopping and ready >= count:
            started = True
            pid_list = ", ".join(str(p) for p in pids)
            print(_started_line(f", {count} workers: pids {pid_list}"), file=sys.stderr, flush=True)
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


def _test(files: Sequence[str], confdir: str | None) -> int:
    try:
        _load(files, confdir, say_default=False)
    except ConfigError as exc:
        print(f"v2py: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print("Configuration OK.")
    return 0


def _version() -> int:
    python = sys.version.split()[0]
    print(f"v2py {__version__} (V2Ray {V2RAY_COMPAT_VERSION} compatible) Python {python}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``v2py`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        ns = _parser().parse_args(args)
        if ns.command == "uuid":
            print(uuid.uuid4())
            return 0
        if ns.command == "version":
            return _version()
        if ns.command == "test":
            return _test(ns.config, ns.confdir)
        return _run(ns.config, ns.confdir, ns.workers)
    if args and args[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    ns = _legacy_parser().parse_args([_V2RAY_FLAGS.get(a, a) for a in args])
    if ns.version:
        return _version()
    if ns.test:
        return _test(ns.config, ns.confdir)
    return _run(ns.config, ns.confdir, ns.workers)


if __name__ == "__main__":
    sys.exit(main())
