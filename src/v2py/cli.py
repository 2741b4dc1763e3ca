"""Command line: V2Ray 4.34's flags (``-config``, ``-test``, ...) and v2py's subcommands.

Argument parsing only; serving is :mod:`v2py.run`. Two forms:

* ``v2py [flags]`` is parsed as Go's ``flag`` package parses 4.34's ``main/main.go``
  flags: ``-config FILE`` / ``-config=FILE`` / ``--config FILE`` / ``-c FILE``
  (repeatable; ``stdin:`` and ``http(s)://`` URLs as 4.34), ``-confdir DIR``,
  ``-format json``, ``-test``, ``-version``; parsing stops at the first argument
  that is not a flag. v2py adds ``-workers N`` (``-w``) and ``-d`` (= ``-confdir``).
* ``v2py SUBCOMMAND ...``: ``run`` and ``test`` are the flag form (``test`` adds
  ``-test``), ``version`` is ``-version``, ``api`` is ``v2ctl api``
  (:mod:`v2py.api_cli`), ``stats`` shows its counters as a table; ``uuid``,
  ``link`` and ``client`` are v2py's own. :data:`SUBCOMMANDS` is the table;
  :func:`subcommand` adds an entry.

Which config is used, as 4.34 (``main/main.go`` ``getConfigFilePath``): the
``-config`` files, then the ``*.json`` files of ``-confdir`` (or of
``V2RAY_LOCATION_CONFDIR``); if there are none, ``./config.json``, then
``$V2RAY_LOCATION_CONFIG/config.json`` (default: the executable's directory),
then standard input. Where 4.34 would read a terminal, v2py serves its embedded
default (socks on 127.0.0.1:1080 -> freedom) instead, and says so.

Exit codes as 4.34: 0; 23 for a config problem (also a log file that cannot be
opened, as 4.34's ``-test`` opens them too); 255 when a listener cannot be
opened (``Failed to start: ...``); 2 for a usage error. 4.34 prints its version
banner, the config errors and ``Failed to start`` on standard output and its
"Using ..." notes on standard error, and so does v2py.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from v2py import V2RAY_COMPAT_VERSION, __version__
from v2py.errors import ConfigError

if TYPE_CHECKING:
    from v2py.config.model import Config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_USAGE",
    "SUBCOMMANDS",
    "ConfigChoice",
    "Flag",
    "Subcommand",
    "UsageError",
    "choose_config",
    "main",
    "parse_flags",
    "subcommand",
    "version_lines",
]

EXIT_CONFIG = 23
#: Go's flag package exits 2 on a bad command line.
EXIT_USAGE = 2
#: 4.34 ``common/platform`` names; each is also looked up as ``V2RAY_LOCATION_...``.
CONFIG_DIR_ENV = "v2ray.location.config"
CONFDIR_ENV = "v2ray.location.confdir"
#: 4.34 ``infra/conf/.../external`` gives up on a config URL after 30 s.
CONFIG_URL_TIMEOUT_S = 30.0
STDIN_SOURCE = "stdin:"
GO_LOG_TIME_FORMAT = "%Y/%m/%d %H:%M:%S"
EMBEDDED_DEFAULT_SUMMARY = (
    "socks (sniffing http,tls, udp) on 127.0.0.1:1080 -> freedom"  # load.DEFAULT_CONFIG_JSON
)


def _stamp() -> str:
    return time.strftime(GO_LOG_TIME_FORMAT)


def _note(text: str) -> None:
    """A line as 4.34's ``log.Println`` writes it: time stamp, standard error."""
    print(f"{_stamp()} {text}", file=sys.stderr, flush=True)


def _info(text: str, level: str = "Info") -> None:
    """A line as 4.34 logs before its log is configured: ``[Level]``, standard output."""
    print(f"{_stamp()} [{level}] {text}", flush=True)


# -- Go-style flags -----------------------------------------------------------------


class UsageError(Exception):
    """A command line Go's ``flag`` package refuses (exit 2, message and usage)."""


class _HelpRequested(Exception):
    """``-h`` / ``-help``: usage on standard error, exit 0 (as Go's flag package)."""


FlagKind = Literal["bool", "string", "list", "int"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag: its name, what it takes and its help text (``dest`` defaults to name)."""

    name: str
    kind: FlagKind
    usage: str
    dest: str = ""
    default: str = ""

    @property
    def key(self) -> str:
        return self.dest or self.name


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _flag_value(flag: Flag, text: str) -> object:
    if flag.kind == "bool":
        if text in _GO_TRUE:
            return True
        if text in _GO_FALSE:
            return False
        raise UsageError(f"invalid boolean value {text!r} for -{flag.name}: parse error")
    if flag.kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise UsageError(f"invalid value {text!r} for flag -{flag.name}: parse error") from None
    return text


def parse_flags(args: Sequence[str], flags: Sequence[Flag]) -> tuple[dict[str, object], list[str]]:
    """Parse ``args`` as Go's ``flag.Parse`` does; return the values and what is left.

    ``-name``, ``--name``, ``-name=value``, ``-name value`` (not for bool flags),
    repeated ``list`` flags accumulate; parsing stops at ``--`` or at the first
    argument that is not a flag. Raises UsageError (or _HelpRequested for ``-h``).
    """
    by_name = {f.name: f for f in flags}
    values: dict[str, object] = {}
    for each in flags:
        if each.kind == "list":
            values.setdefault(each.key, [])
        elif each.kind == "bool":
            values.setdefault(each.key, each.default in _GO_TRUE)
        else:
            values.setdefault(each.key, each.default if each.kind == "string" else None)
    rest = list(args)
    while rest:
        arg = rest[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 2 if arg[1] == "-" else 1
        if dashes == 2 and len(arg) == 2:  # "--" ends the flags
            rest.pop(0)
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        rest.pop(0)
        has_value = "=" in name
        value = ""
        if has_value:
            name, value = name.split("=", 1)
        flag = by_name.get(name)
        if flag is None:
            if name in ("h", "help"):
                raise _HelpRequested
            raise UsageError(f"flag provided but not defined: -{name}")
        if flag.kind == "bool" and not has_value:
            value, has_value = "true", True
        if not has_value:
            if not rest:
                raise UsageError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        parsed = _flag_value(flag, value)
        if flag.kind == "list":
            current = values[flag.key]
            assert isinstance(current, list)
            current.append(parsed)
        else:
            values[flag.key] = parsed
    return values, rest


def _usage(flags: Sequence[Flag]) -> str:
    lines = ["Usage of v2py:"]
    for flag in sorted(flags, key=lambda f: f.name):
        kind = {"bool": "", "string": " string", "list": " value", "int": " int"}[flag.kind]
        lines.append(f"  -{flag.name}{kind}")
        default = ""
        if flag.default:
            shown = flag.default if flag.kind == "bool" else f'"{flag.default}"'
            default = f" (default {shown})"
        lines.append(f"    \t{flag.usage}{default}")
    lines.append("")
    lines.append("Subcommands (v2py SUBCOMMAND -h for their help):")
    for entry in SUBCOMMANDS.values():
        lines.append(f"  {entry.name:<8} {entry.summary}")
    return "\n".join(lines)


#: 4.34's flags (texts from main/main.go) and v2py's additions.
V2RAY_FLAGS: tuple[Flag, ...] = (
    Flag(
        "config",
        "list",
        "Config file for V2Ray. Multiple assign is accepted (only json). "
        "Latter ones overrides the former ones.",
    ),
    Flag("c", "list", "Short alias of -config", dest="config"),
    Flag("confdir", "string", "A dir with multiple json config"),
    Flag("d", "string", "Short alias of -confdir (v2py)", dest="confdir"),
    Flag("format", "string", "Format of input file.", default="json"),
    Flag("test", "bool", "Test config file only, without launching V2Ray server."),
    Flag("version", "bool", "Show current version of V2Ray."),
    Flag(
        "workers",
        "int",
        "Worker processes sharing the listeners with SO_REUSEPORT (v2py, Linux; default 1)",
    ),
    Flag("w", "int", "Short alias of -workers (v2py)", dest="workers"),
)


# -- version -----------------------------------------------------------------------


def version_lines() -> tuple[str, str]:
    """The banner 4.34 prints first on every start, in its shape.

    The first line starts ``V2Ray 4.34.0 (`` because that is what scripts and
    v2rayN's core check parse (its regex is ``V2Ray ([0-9.]+) \\(``); the rest
    says what actually runs.
    """
    import platform

    python = f"{platform.python_implementation()} {platform.python_version()}"
    where = f"{sys.platform}/{platform.machine()}"
    return (
        f"V2Ray {V2RAY_COMPAT_VERSION} (v2py {__version__}) {python} ({where})",
        f"v2py: a V2Ray {V2RAY_COMPAT_VERSION}-compatible proxy in Python, not V2Ray itself.",
    )


# -- which config ---------------------------------------------------------------------


def _env_flag(env: Mapping[str, str], name: str) -> str | None:
    """4.34 ``common/platform`` ``EnvFlag``: the dotted name, then ``V2RAY_...``."""
    if name in env:
        return env[name]
    return env.get(name.strip().upper().replace(".", "_"))


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    """The config sources to read, the "Using ..." notes to print, and whether
    nothing was found and the embedded default is served."""

    files: tuple[str, ...]
    notes: tuple[str, ...]
    embedded: bool = False


def _conf_dir_files(directory: str) -> list[str]:
    """``*.json`` entries of ``directory`` by name (4.34 ``readConfDir``: suffix is
    case-sensitive, sorted as ``ioutil.ReadDir`` sorts, joined with ``/``)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError("", f"cannot read config folder {directory}: {exc.strerror}") from exc
    return [os.path.normpath(os.path.join(directory, n)) for n in names if n.endswith(".json")]


def choose_config(
    explicit: Sequence[str],
    confdir: str,
    *,
    env: Mapping[str, str],
    cwd: str,
    executable_dir: str,
    stdin_is_tty: bool,
) -> ConfigChoice:
    """Decide which config sources to read, in 4.34's order (module docstring).

    Raises ConfigError when a config folder cannot be listed.
    """
    files = list(explicit)
    notes: list[str] = []
    env_dir = _env_flag(env, CONFDIR_ENV) or ""
    if confdir and os.path.isdir(confdir):
        notes.append(f"Using confdir from arg: {confdir}")
        files.extend(_conf_dir_files(confdir))
    else:
        if confdir:
            notes.append(f"Not using confdir {confdir}: not a directory (ignored, as V2Ray 4.34)")
        if env_dir and os.path.isdir(env_dir):
            notes.append(f"Using confdir from env: {env_dir}")
            files.extend(_conf_dir_files(env_dir))
    if files:
        return ConfigChoice(tuple(files), tuple(notes))
    local = os.path.join(cwd, "config.json")
    if os.path.isfile(local):
        notes.append(f"Using default config:  {local}")
        return ConfigChoice((local,), tuple(notes))
    env_config = _env_flag(env, CONFIG_DIR_ENV)
    located = os.path.join(env_config if env_config is not None else executable_dir, "config.json")
    if os.path.isfile(located):
        notes.append(f"Using config from env:  {located}")
        return ConfigChoice((located,), tuple(notes))
    if stdin_is_tty:
        notes.append(
            "Using the embedded default config: "
            f"{EMBEDDED_DEFAULT_SUMMARY} (no config file found, and standard input is a "
            "terminal, which V2Ray 4.34 would read)"
        )
        return ConfigChoice((), tuple(notes), embedded=True)
    notes.append("Using config from STDIN")
    return ConfigChoice((STDIN_SOURCE,), tuple(notes))


def _executable_dir() -> str:
    """Where the ``v2py`` command lives (4.34 uses its own binary's directory)."""
    return os.path.dirname(os.path.realpath(sys.argv[0] or "."))


def _is_protobuf(first: str, format_name: str) -> bool:
    """4.34 ``core.LoadConfig``: the first file's extension picks the loader; if it is
    not a known one, ``-format`` does ("pb"/"protobuf", anything else is JSON)."""
    dot = first.rfind(".")
    ext = first[dot + 1 :] if dot >= 0 else ""
    if ext in ("json", "pb"):
        return ext == "pb"
    return format_name.lower() in ("pb", "protobuf")


def _fetch(url: str) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=CONFIG_URL_TIMEOUT_S) as response:
            if response.status != 200:
                raise ConfigError("", f"{url}: unexpected HTTP status code: {response.status}")
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise ConfigError("", f"{url}: unexpected HTTP status code: {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError("", f"failed to dial to {url}: {reason}") from None


def read_source_bytes(name: str, stdin: TextIO) -> bytes:
    """The bytes of one config source: a file, ``stdin:`` (or ``-``), or an
    ``http(s)://`` URL (as 4.34 ``main/confloader/external``). Raises ConfigError."""
    if name in (STDIN_SOURCE, "-"):
        return stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    if name.startswith(("http://", "https://")):
        return _fetch(name)
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {name}: {exc.strerror or exc}") from exc


def read_source(name: str, stdin: TextIO) -> str:
    """The text of one config source (see :func:`read_source_bytes`). Raises ConfigError."""
    data = read_source_bytes(name, stdin)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("", f"config file {name} is not UTF-8 text") from None


def _protobuf_source(files: Sequence[str], *, quiet: bool) -> tuple[str, str]:
    """The one protobuf config 4.34 reads (``config.go``: the first file only), as the
    ``(name, JSON text)`` the loader takes. Raises ConfigError."""
    import json

    from v2py.config.protobuf import config_json

    name = files[0]
    if len(files) > 1:
        _note(
            "Reading only the first config file: a protobuf config is one file "
            f"(as V2Ray 4.34); ignored: {' '.join(files[1:])}"
        )
    if not quiet:
        _info(f"Reading config: {name} (protobuf)")
    data = read_source_bytes(name, sys.stdin)
    try:
        converted = config_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc.path}" if exc.path else name, exc.message) from None
    return name, json.dumps(converted)


# -- the V2Ray-style entry ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    config: tuple[str, ...]
    confdir: str
    format: str
    test: bool
    version: bool
    workers: int


def _options(values: Mapping[str, object]) -> _Options:
    config = values["config"]
    workers = values["workers"]
    assert isinstance(config, list)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise UsageError(f"invalid value {str(workers)!r} for flag -workers: must be at least 1")
    return _Options(
        config=tuple(str(c) for c in config),
        confdir=str(values["confdir"] or ""),
        format=str(values["format"] or "json"),
        test=bool(values["test"]),
        version=bool(values["version"]),
        workers=workers if isinstance(workers, int) else 1,
    )


def _read_bytes(name: str) -> bytes:
    """Read a file the config names (TLS certificates), as 4.34 does while loading, so
    that ``-test`` reports a missing one. Raises OSError."""
    with open(name, "rb") as fh:
        return fh.read()


def _load(options: _Options, *, quiet: bool = False) -> Config:
    """Choose, read and parse the config; print 4.34's notes (``quiet``: only those
    on standard error). Raises ConfigError."""
    from v2py.config.load import DEFAULT_CONFIG_JSON, load_config

    choice = choose_config(
        options.config,
        options.confdir,
        env=os.environ,
        cwd=os.getcwd(),
        executable_dir=_executable_dir(),
        stdin_is_tty=sys.stdin is not None and sys.stdin.isatty(),
    )
    for note in choice.notes:
        _note(note)
    protobuf = False
    if choice.embedded:
        sources = [("<embedded default>", DEFAULT_CONFIG_JSON)]
    else:
        protobuf = _is_protobuf(choice.files[0], options.format)
        if protobuf:
            sources = [_protobuf_source(choice.files, quiet=quiet)]
        else:
            sources = []
            for name in choice.files:
                if not quiet:
                    _info(f"Reading config: {name}")
                sources.append((name, read_source(name, sys.stdin)))
    try:
        loaded = load_config(sources, os.environ, read_file=_read_bytes)
    except ConfigError as exc:
        if not protobuf:
            raise
        # The paths are those of the JSON form the protobuf config was read as.
        raise ConfigError(
            exc.path, f"{exc.message} (in the JSON form of {sources[0][0]})"
        ) from None
    for warning in loaded.warnings:
        if quiet:
            _note(f"[Warning] {warning}")
        else:
            _info(warning, "Warning")
    return loaded.config


def _v2ray_main(args: Sequence[str]) -> int:
    try:
        values, rest = parse_flags(args, V2RAY_FLAGS)
        options = _options(values)
    except _HelpRequested:
        print(_usage(V2RAY_FLAGS), file=sys.stderr)
        return 0
    except UsageError as exc:
        print(exc, file=sys.stderr)
        print(_usage(V2RAY_FLAGS), file=sys.stderr)
        return EXIT_USAGE
    for line in version_lines():
        print(line)
    sys.stdout.flush()
    if options.version:
        return 0
    if rest:
        _note(f"Ignoring arguments after the flags (as V2Ray 4.34): {' '.join(rest)}")
    from v2py.run import EXIT_CONFIG as RUN_EXIT_CONFIG
    from v2py.run import check_config, config_error_line, pause_gc_for_startup, resume_gc, serve

    pause_gc_for_startup()  # serve() resumes it once listening
    try:
        try:
            config = _load(options)
            from v2py.app.log import configure_logging

            # Opens (creates) the log files now, in -test too, as 4.34's core.New does.
            configure_logging(config.log.loglevel, config.log.access, config.log.error)
            if options.test:
                check_config(config)
        except ConfigError as exc:
            print(config_error_line(exc), flush=True)
            return RUN_EXIT_CONFIG
        if options.test:
            print("Configuration OK.", flush=True)
            return 0
        return serve(config, options.workers)
    finally:
        resume_gc(freeze=False)


# -- subcommands -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subcommand:
    """``v2py NAME ARGS``: ``main`` gets ARGS and returns the exit code."""

    name: str
    summary: str
    main: Callable[[list[str]], int]


#: Subcommands by name; add one with :func:`subcommand`.
SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str, summary: str
) -> Callable[[Callable[[list[str]], int]], Callable[[list[str]], int]]:
    """Register ``v2py NAME``: the decorated function gets the remaining arguments."""

    def register(func: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        SUBCOMMANDS[name] = Subcommand(name, summary, func)
        return func

    return register


@subcommand("run", "run with a config: the V2Ray flags (-config, -confdir, -workers ...)")
def _run_command(args: list[str]) -> int:
    return _v2ray_main(args)


@subcommand("test", "check a config and exit (as -test)")
def _test_command(args: list[str]) -> int:
    return _v2ray_main(["-test", *args])


@subcommand("version", "print the version (as -version)")
def _version_command(args: list[str]) -> int:
    return _v2ray_main(["-version", *args])


@subcommand("api", "call a running server's gRPC API, as v2ctl api (v2py api -h)")
def _api_command(args: list[str]) -> int:
    from v2py.api_cli import main as api_main

    return api_main(args)


@subcommand("stats", "a running server's traffic counters as a table (v2py stats -h)")
def _stats_command(args: list[str]) -> int:
    from v2py.stats_cli import main as stats_main

    return stats_main(args)


@subcommand("cert", "generate a TLS certificate, as v2ctl cert (v2py cert -h)")
def _cert_command(args: list[str]) -> int:
    from v2py.cert_cli import main as cert_main

    return cert_main(args)


@subcommand("tlsping", "TLS handshakes with a domain's port 443, as v2ctl tlsping")
def _tlsping_command(args: list[str]) -> int:
    from v2py.tlsping_cli import main as tlsping_main

    return tlsping_main(args)


@subcommand("uuid", "print a random UUID for a VMess user id")
def _uuid_command(args: list[str]) -> int:
    import uuid

    print(uuid.uuid4())
    return 0


def _parse_subcommand(
    name: str, args: Sequence[str], flags: Sequence[Flag]
) -> dict[str, object] | int:
    """Parse a subcommand's flags (Go style, as the rest); an int is the exit code."""
    try:
        values, rest = parse_flags(args, flags)
    except _HelpRequested:
        print(_usage(flags).replace("Usage of v2py:", f"Usage of v2py {name}:"), file=sys.stderr)
        return 0
    except UsageError as exc:
        print(exc, file=sys.stderr)
        print(_usage(flags).replace("Usage of v2py:", f"Usage of v2py {name}:"), file=sys.stderr)
        return EXIT_USAGE
    if rest:
        print(f"v2py {name}: unexpected arguments: {' '.join(rest)}", file=sys.stderr)
        return EXIT_USAGE
    return values


LINK_FLAGS: tuple[Flag, ...] = (
    Flag("config", "list", "Server config file (repeatable; as for running it)"),
    Flag("c", "list", "Short alias of -config", dest="config"),
    Flag("confdir", "string", "A dir with multiple json config"),
    Flag("d", "string", "Short alias of -confdir", dest="confdir"),
    Flag("format", "string", "Format of input file.", default="json"),
    Flag("address", "string", "Server address the links carry (default: the listen address)"),
    Flag("qr", "bool", "Also print each link as a QR code (needs the segno package)"),
)

CLIENT_FLAGS: tuple[Flag, ...] = (
    Flag("link", "string", "A share link: vmess:// (v2rayN format), vless://, trojan://, ss://"),
    Flag("port", "int", "Local socks port of the client config (default 1080)"),
    Flag("o", "string", "Write the config to this file (mode 0600) instead of stdout"),
)


@subcommand("link", "print share links (vmess://, vless://, trojan://, ss://) of a config's users")
def _link_command(args: list[str]) -> int:
    from v2py.config.share import ShareLinkError, encode_vmess_link, server_links
    from v2py.config.share_url import encode_url_link, url_server_links

    values = _parse_subcommand("link", args, LINK_FLAGS)
    if isinstance(values, int):
        return values
    options = _options({**values, "test": False, "version": False, "workers": None})
    try:
        config = _load(options, quiet=True)
        address = str(values["address"] or "") or None
        links = [encode_vmess_link(link) for link in server_links(config, address)]
        links += [encode_url_link(link) for link in url_server_links(config, address)]
    except ConfigError as exc:
        print(f"v2py: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ShareLinkError as exc:
        print(f"v2py link: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not links:
        print(
            "v2py link: the config has no VMess, VLESS, Trojan or (plain TCP) Shadowsocks"
            " users to share",
            file=sys.stderr,
        )
        return 1
    qr = bool(values["qr"])
    make_qr = None
    if qr:
        try:
            import segno
        except ImportError:
            print(
                "v2py link: -qr needs the segno package (pip install 'v2py[qr]')", file=sys.stderr
            )
            return 1
        make_qr = segno.make
    for text in links:
        print(text)
        if make_qr is not None:
            make_qr(text, error="l").terminal(compact=True)
    return 0


@subcommand("client", "write a client config (socks 127.0.0.1:1080 -> a share link's server)")
def _client_command(args: list[str]) -> int:
    import json

    from v2py.config.load import load_config
    from v2py.config.share import (
        SCHEME,
        ShareLinkError,
        client_config,
        decode_vmess_link,
        socks_client_config,
    )
    from v2py.config.share_url import decode_url_link, url_client_outbound

    values = _parse_subcommand("client", args, CLIENT_FLAGS)
    if isinstance(values, int):
        return values
    text = str(values["link"] or "")
    if not text:
        print(
            "v2py client: give the server's link with -link 'vmess://...'"
            " (or vless://, trojan://, ss://)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    port = values["port"]
    try:
        socks_port = port if isinstance(port, int) else 1080
        if text.strip().lower().startswith(SCHEME):
            config = client_config(decode_vmess_link(text), socks_port)
        else:
            config = socks_client_config(url_client_outbound(decode_url_link(text)), socks_port)
        rendered = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        load_config([("client.json", rendered)], {})  # v2py must be able to run it
    except ShareLinkError as exc:
        print(f"v2py client: bad link: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"v2py client: the link gives a config v2py cannot run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    out = str(values["o"] or "")
    if not out:
        sys.stdout.write(rendered)
        return 0
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(rendered)
    except OSError as exc:
        print(f"v2py client: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"v2py client: wrote {out}; run it with: v2py -config {out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``v2py`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in SUBCOMMANDS:
            return SUBCOMMANDS[args[0]].main(args[1:])
        return _v2ray_main(args)
    except BrokenPipeError:  # e.g. `v2py link ... | head -1`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
