"""Command line: ``v2py run|test|uuid|version`` and V2Ray-4 style ``-config``/``-test``.

Exit codes: 0 ok, 23 bad config (as v2ray), 1 other start-up failure, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

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
}

log = logging.getLogger("v2py.cli")


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


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(config: object) -> int:
    from v2py.instance import Instance

    instance = Instance.from_config(config)
    await instance.start()
    print(
        f"v2py {__version__} started (V2Ray {V2RAY_COMPAT_VERSION} compatible)",
        file=sys.stderr,
        flush=True,
    )
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


def _run(files: Sequence[str], confdir: str | None) -> int:
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
        return _run(ns.config, ns.confdir)
    if args and args[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    ns = _legacy_parser().parse_args([_V2RAY_FLAGS.get(a, a) for a in args])
    if ns.version:
        return _version()
    if ns.test:
        return _test(ns.config, ns.confdir)
    return _run(ns.config, ns.confdir)


if __name__ == "__main__":
    sys.exit(main())
