"""The ``v2py`` command line as a user runs it (subprocesses), and its pure parts."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import signal
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.socks import socks5_connect
from tests.support.v2ray import free_port, wait_tcp_port
from v2py.cli import (
    V2RAY_FLAGS,
    ConfigChoice,
    UsageError,
    choose_config,
    parse_flags,
    version_lines,
)

V2PY = [sys.executable, "-m", "v2py"]
#: v2rayN's core-version check (v2rayN CoreInfoHandler / UpdateService) on the banner.
V2RAYN_VERSION_RE = re.compile(r"V2Ray ([0-9.]+) \(")
GOOD = {"inbounds": [{"port": 1080, "protocol": "socks"}], "outbounds": [{"protocol": "freedom"}]}


async def _run(
    *args: str,
    timeout: float = 30,
    stdin: bytes = b"",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Exit code, stdout, stderr of ``python -m v2py ARGS`` (stdin: a pipe with ``stdin``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("V2RAY")}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        *V2PY,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=full_env,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _result_lines(out: str) -> list[str]:
    """stdout without the two-line banner and the "Reading config" notes."""
    return [
        line for line in out.splitlines()[2:] if line.strip() and "] Reading config: " not in line
    ]


# -- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "config", "test", "rest"),
    [
        (["-config", "a.json"], ["a.json"], False, []),
        (["-config=a.json"], ["a.json"], False, []),
        (["--config", "a.json"], ["a.json"], False, []),
        (
            ["--config=a.json", "-c", "b.json", "-c=c.json"],
            ["a.json", "b.json", "c.json"],
            False,
            [],
        ),
        (["-test", "-config", "a.json"], ["a.json"], True, []),
        (["-test=false", "-c", "a"], ["a"], False, []),
        (["-test=1"], [], True, []),
        (["-c", "-weird-name.json"], ["-weird-name.json"], False, []),
        (["-c", "a", "extra", "-test"], ["a"], False, ["extra", "-test"]),
        (["-c", "a", "--", "-test"], ["a"], False, ["-test"]),
        (["-", "-test"], [], False, ["-", "-test"]),
    ],
)
def test_flags_parse_as_go_flag_package(
    argv: list[str], config: list[str], test: bool, rest: list[str]
) -> None:
    values, left = parse_flags(argv, V2RAY_FLAGS)
    assert values["config"] == config and values["test"] is test and left == rest


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-bogus"], "flag provided but not defined: -bogus"),
        (["-config"], "flag needs an argument: -config"),
        (["-test=maybe"], "invalid boolean value 'maybe' for -test"),
        (["---x"], "bad flag syntax: ---x"),
        (["-=x"], "bad flag syntax: -=x"),
        (["-workers", "two"], "invalid value 'two' for flag -workers"),
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_flags(argv, V2RAY_FLAGS)


def test_format_defaults_to_json() -> None:
    values, _ = parse_flags(["-format=pb"], V2RAY_FLAGS)
    assert values["format"] == "pb"
    values, _ = parse_flags([], V2RAY_FLAGS)
    assert values["format"] == "json"


def _choose(tmp_path: Path, *explicit: str, confdir: str = "", **kw: object) -> ConfigChoice:
    env = kw.pop("env", {})
    assert isinstance(env, dict)
    return choose_config(
        explicit,
        confdir,
        env=env,
        cwd=str(kw.pop("cwd", tmp_path)),
        executable_dir=str(kw.pop("exe", tmp_path / "bin")),
        stdin_is_tty=bool(kw.pop("tty", False)),
    )


def test_config_search_order(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    envdir, confdir, envconfdir = tmp_path / "env", tmp_path / "d", tmp_path / "envd"
    for d in (envdir, confdir, envconfdir):
        d.mkdir()
    (confdir / "10_b.json").write_text("{}")
    (confdir / "00_a.json").write_text("{}")
    (confdir / "notes.JSON").write_text("{}")  # suffix is case-sensitive in 4.34
    (envconfdir / "x.json").write_text("{}")
    # nothing anywhere: stdin (or the embedded default on a terminal)
    assert _choose(tmp_path).files == ("stdin:",)
    assert _choose(tmp_path).notes == ("Using config from STDIN",)
    assert _choose(tmp_path, tty=True).embedded
    # the executable's directory, then V2RAY_LOCATION_CONFIG, then ./config.json
    (tmp_path / "bin" / "config.json").write_text("{}")
    assert _choose(tmp_path).files == (str(tmp_path / "bin" / "config.json"),)
    env = {"V2RAY_LOCATION_CONFIG": str(envdir)}
    assert _choose(tmp_path, env=env).files == ("stdin:",)  # env replaces the exe dir
    (envdir / "config.json").write_text("{}")
    choice = _choose(tmp_path, env=env)
    assert choice.files == (str(envdir / "config.json"),)
    assert choice.notes == (f"Using config from env:  {envdir / 'config.json'}",)
    assert _choose(tmp_path, env={"v2ray.location.config": str(envdir)}).files == choice.files
    (tmp_path / "config.json").write_text("{}")
    assert _choose(tmp_path, env=env).files == (str(tmp_path / "config.json"),)
    # explicit files, then the confdir's *.json by name; these win over everything
    choice = _choose(tmp_path, "x.json", confdir=str(confdir), env=env)
    assert choice.files == ("x.json", str(confdir / "00_a.json"), str(confdir / "10_b.json"))
    assert choice.notes == (f"Using confdir from arg: {confdir}",)
    # -confdir that is not a directory: V2RAY_LOCATION_CONFDIR instead, as 4.34
    env2 = {"V2RAY_LOCATION_CONFDIR": str(envconfdir)}
    choice = _choose(tmp_path, confdir=str(tmp_path / "nope"), env=env2)
    assert choice.files == (str(envconfdir / "x.json"),)
    assert choice.notes[-1] == f"Using confdir from env: {envconfdir}"


def test_version_banner_matches_what_v2rayn_parses() -> None:
    first, second = version_lines()
    match = V2RAYN_VERSION_RE.search(first)
    assert match is not None and match.group(1) == "4.34.0"
    assert first.split()[1] == "4.34.0"  # `v2ray -version | awk '{print $2}'`
    assert "v2py" in first and "v2py" in second


# -- subprocesses ---------------------------------------------------------------------------


async def test_version_and_uuid() -> None:
    for args in (("version",), ("-version",), ("--version",), ("-version", "-c", "missing.json")):
        code, out, err = await _run(*args)
        assert code == 0, err
        assert V2RAYN_VERSION_RE.match(out.splitlines()[0]) and len(out.splitlines()) == 2
    code, out, _ = await _run("uuid")
    assert code == 0 and len(out.strip()) == 36


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"inbounds": [{"port": 70000, "protocol": "socks"}]}', "inbounds[0].port"),
        ('{"inbounds": [{"port": 1, "protocol": "nope"}]}', "inbounds[0].protocol"),
        ('{"inbounds": [ /* open', "1:"),
        (
            '{"inbounds": [{"port": 1, "protocol": "vmess", "settings": '
            '{"clients": [{"id": "not-a-uuid"}]}}]}',
            "inbounds[0].settings.clients[0].id",
        ),
        ('{"log": {"access": "/nonexistent-dir/a.log"}}', "log.access"),
        ('{"log": {"error": "/nonexistent-dir/e.log"}}', "log.error"),
        (
            '{"inbounds": [{"port": 12345, "protocol": "dokodemo-door", "settings": '
            '{"network": "tcp,udp", "followRedirect": true}, '
            '"streamSettings": {"sockopt": {"tproxy": "on"}}}]}',
            "inbounds[0].streamSettings.sockopt.tproxy",
        ),
    ],
)
async def test_bad_config_is_one_line_and_exit_23(tmp_path: Path, text: str, path: str) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(text)
    for args in (("test", "-c", str(cfg)), ("-test", "-config", str(cfg)), ("run", "-c", str(cfg))):
        code, out, err = await _run(*args)
        assert code == 23, (args, out, err)
        lines = _result_lines(out)
        assert len(lines) == 1, out  # on stdout, as 4.34 prints it
        assert path in lines[0] and "Traceback" not in out + err


async def test_missing_file_is_one_line(tmp_path: Path) -> None:
    code, out, _ = await _run("test", "-c", str(tmp_path / "missing.json"))
    assert code == 23 and len(_result_lines(out)) == 1


async def test_test_accepts_good_config(tmp_path: Path) -> None:
    cfg = tmp_path / "good.json"
    cfg.write_text("// comment\n" + json.dumps(GOOD))
    for args in (("test", "-c", str(cfg)), ("-test", f"-config={cfg}"), ("-test", "-c", str(cfg))):
        code, out, _ = await _run(*args)
        assert code == 0 and out.splitlines()[-1] == "Configuration OK."
        assert f"[Info] Reading config: {cfg}" in out


async def test_usage_errors_exit_2_and_help_exits_0() -> None:
    code, out, err = await _run("-bogus")
    assert code == 2 and out == "" and err.startswith("flag provided but not defined: -bogus")
    code, _, err = await _run("-config")
    assert code == 2 and "flag needs an argument: -config" in err
    code, _, err = await _run("-h")
    assert code == 0 and "-config" in err and "Usage of v2py" in err


async def test_config_from_stdin(tmp_path: Path) -> None:
    text = json.dumps(GOOD).encode()
    code, out, _ = await _run("-test", "-config", "stdin:", stdin=text)
    assert code == 0 and "Configuration OK." in out and "Reading config: stdin:" in out
    # nothing found anywhere and stdin is not a terminal: stdin, as 4.34
    code, out, err = await _run(
        "-test", stdin=text, cwd=tmp_path, env={"V2RAY_LOCATION_CONFIG": str(tmp_path)}
    )
    assert code == 0 and "Using config from STDIN" in err, (out, err)
    code, out, err = await _run(
        "-test", stdin=b"", cwd=tmp_path, env={"V2RAY_LOCATION_CONFIG": str(tmp_path)}
    )
    assert code == 23 and len(_result_lines(out)) == 1, (out, err)


async def test_config_json_in_working_dir_and_env_locations(tmp_path: Path) -> None:
    work, located, confdir = tmp_path / "work", tmp_path / "etc", tmp_path / "conf.d"
    for d in (work, located, confdir):
        d.mkdir()
    (located / "config.json").write_text(json.dumps(GOOD))
    env = {"V2RAY_LOCATION_CONFIG": str(located)}
    code, out, err = await _run("-test", cwd=work, env=env)
    assert code == 0, out
    assert f"Using config from env:  {located / 'config.json'}" in err
    (work / "config.json").write_text('{"inbounds": [{"port": 70000, "protocol": "socks"}]}')
    code, out, err = await _run("test", cwd=work, env=env)  # ./config.json first, and broken
    assert code == 23 and "Using default config:  " in err, (out, err)
    (confdir / "in.json").write_text(json.dumps(GOOD))
    env["V2RAY_LOCATION_CONFDIR"] = str(confdir)
    code, out, err = await _run("-test", cwd=work, env=env)
    assert code == 0 and f"Using confdir from env: {confdir}" in err, (out, err)


async def test_format_pb_is_refused_only_where_4_34_would_read_protobuf(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(GOOD))
    code, out, _ = await _run("-test", "-format", "pb", "-config", str(cfg))
    assert code == 0, out  # a .json file is read as JSON whatever -format says
    pb = tmp_path / "c.pb"
    pb.write_bytes(b"\x0a\x00")
    code, out, _ = await _run("-test", "-config", str(pb))
    assert code == 23 and "protobuf" in out
    noext = tmp_path / "config"
    noext.write_text(json.dumps(GOOD))
    code, out, _ = await _run("-test", "-format=protobuf", "-c", str(noext))
    assert code == 23 and "protobuf" in out
    code, out, _ = await _run("-test", "-format=yaml", "-c", str(noext))
    assert code == 0, out  # any other format name means JSON in 4.34


@contextlib.contextmanager
def _http_config_server(body: bytes) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path == "/config.json":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_config_from_http_url() -> None:
    with _http_config_server(json.dumps(GOOD).encode()) as port:
        code, out, _ = await _run("-test", "-config", f"http://127.0.0.1:{port}/config.json")
        assert code == 0, out
        code, out, _ = await _run("-test", "-config", f"http://127.0.0.1:{port}/missing")
        assert code == 23 and "404" in out


async def _serve_and_stop(
    args: list[str], port: int, echo: tuple[str, int], *, stdin: int | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *V2PY,
        *args,
        stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_tcp_port(port, timeout=15)
        reader, writer = await socks5_connect(port, *echo)
        writer.write(b"hello")
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.readexactly(5) == b"hello"
        writer.close()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _socks_config(port: int, **extra: object) -> dict[str, object]:
    return {
        **extra,
        "inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks"}],
        "outbounds": [{"protocol": "freedom"}],
    }


async def test_run_v2ray_style_and_sigterm(tmp_path: Path, echo_server: tuple[str, int]) -> None:
    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(_socks_config(port)))
    code, out, err = await _serve_and_stop(["-config", str(cfg)], port, echo_server)
    assert code == 0, err
    assert "Traceback" not in out + err, out + err
    # the started line is a [Warning] on stdout, as 4.34's "V2Ray 4.34.0 started"
    assert re.search(
        r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[Warning\] V2Ray 4\.34\.0 started", out, re.M
    )


async def test_run_config_dir(tmp_path: Path, echo_server: tuple[str, int]) -> None:
    port = free_port()
    (tmp_path / "00_in.json").write_text(
        json.dumps({"inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks"}]})
    )
    (tmp_path / "10_out.json").write_text(json.dumps({"outbounds": [{"protocol": "freedom"}]}))
    code, _, err = await _serve_and_stop(["run", "-d", str(tmp_path)], port, echo_server)
    assert code == 0, err
    code, _, err = await _serve_and_stop(["-confdir", str(tmp_path)], port, echo_server)
    assert code == 0, err


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def test_run_without_config_on_a_terminal_serves_embedded_default(
    tmp_path: Path, echo_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if _port_busy(1080):
        pytest.skip("127.0.0.1:1080 is taken on this machine")
    import pty

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("V2RAY_LOCATION_CONFIG", str(tmp_path))
    primary, secondary = pty.openpty()
    try:
        code, _, err = await _serve_and_stop(["run"], 1080, echo_server, stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert code == 0, err
    assert "embedded default" in err and "127.0.0.1:1080" in err


async def test_port_in_use_exits_255_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps(_socks_config(port)))
        for args in (("-config", str(cfg)), ("run", "-c", str(cfg), "-workers", "2")):
            code, out, err = await _run(*args)
            assert code == 255, (out, err)
            failed = [line for line in out.splitlines() if line.startswith("Failed to start")]
            # one line per process that failed (each worker binds its own listeners)
            assert failed and all("in use" in line for line in failed), out
            assert len(failed) == 1 or args[-2:] == ("-workers", "2")
            assert "Traceback" not in out + err


async def test_log_files_are_created_0600_by_test_and_run(tmp_path: Path) -> None:
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(_socks_config(free_port(), log={"access": str(access), "error": str(error)}))
    )
    code, out, _ = await _run("-test", "-c", str(cfg))
    assert code == 0, out
    for path in (access, error):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pure_python_switch_turns_the_accelerator_off() -> None:
    from v2py.build import PURE_PYTHON_ENV
    from v2py.config.load import load_config
    from v2py.instance import Instance
    from v2py.protocol.vmess.body import BodyImpl
    from v2py.protocol.vmess.kdf import KdfImpl

    text = (
        '{"outbounds": [{"protocol": "vmess", "settings": {"vnext": [{"address": "127.0.0.1",'
        ' "port": 1, "users": [{"id": "d17a1af7-efa5-42ca-b7e9-6a35282d737f"}]}]}}]}'
    )
    config = load_config([("c.json", text)], {}).config
    pure = Instance(config, env={PURE_PYTHON_ENV: "1"}).builder.vmess_impl
    assert pure.body is not BodyImpl.C_BATCH and pure.kdf is KdfImpl.PYTHON
    default = Instance(config, env={}).builder.vmess_impl
    assert default == default.best()
