"""Interop: v2py and the real V2Ray 4.34 side by side on the same command lines and logs.

* The same argv, working directory, environment and standard input given to both
  binaries: the same exit code and the same config files read (4.34's jsonem logs
  ``Reading config: FILE`` for each; v2py prints the same line).
* The access-log scenario of :mod:`tests.support.access_log` against a 4.34 server
  and a v2py server process: the same lines, field by field (times, ports and the
  drain size aside), and the fail2ban regex matches both.
* ``v2py link`` / ``v2py client -link`` against a 4.34 server: the client carries traffic.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import access_log
from tests.support.servers import run_v2py_process
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports, require_v2ray, run_v2ray

pytestmark = pytest.mark.interop
STEP_TIMEOUT_S = 30.0
_READING = re.compile(r"Reading config: (.+)$", re.M)
GOOD = {"inbounds": [{"port": 1080, "protocol": "socks"}], "outbounds": [{"protocol": "freedom"}]}


@dataclass(frozen=True)
class Outcome:
    """Exit code, the ``Reading config`` files (4.34 may lose these: its log is
    written by a goroutine that ``os.Exit`` does not wait for), the config whose
    ``log`` won (each test config names its own error-log file under ``marks/``,
    which ``-test`` creates in 4.34 and in v2py), and what was printed."""

    code: int
    files: tuple[str, ...]
    marks: tuple[str, ...]
    out: str
    err: str


def marked(config: dict[str, object], name: str) -> str:
    """``config`` as JSON text whose error log is ``marks/NAME`` (relative to the cwd)."""
    return json.dumps({**config, "log": {"error": f"marks/{name}"}})


async def _exec(
    argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes
) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("V2RAY")}
    full_env.update(env)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=full_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(STEP_TIMEOUT_S):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _both(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[Outcome, Outcome]:
    results = []
    marks = cwd / "marks"
    for binary in ([require_v2ray()], [sys.executable, "-m", "v2py"]):
        marks.mkdir(exist_ok=True)
        for old in marks.iterdir():
            old.unlink()
        code, out, err = await _exec([*binary, *args], cwd, env or {}, stdin)
        made = tuple(sorted(p.name for p in marks.iterdir()))
        results.append(Outcome(code, tuple(_READING.findall(out)), made, out, err))
    return results[0], results[1]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with good and bad configs and a config folder."""
    (tmp_path / "good.json").write_text(marked(GOOD, "good"))
    (tmp_path / "second.json").write_text(
        marked({"outbounds": [{"protocol": "freedom"}]}, "second")
    )
    (tmp_path / "plain").write_text(marked(GOOD, "plain"))  # no extension: -format decides
    (tmp_path / "badproto.json").write_text('{"inbounds": [{"port": 1, "protocol": "nope"}]}')
    (tmp_path / "baduuid.json").write_text(
        '{"inbounds": [{"port": 1, "protocol": "vmess", "settings": '
        '{"clients": [{"id": "not-a-uuid"}]}}]}'
    )
    (tmp_path / "badlog.json").write_text('{"log": {"access": "/nonexistent-dir/a.log"}}')
    (tmp_path / "badport.json").write_text('{"inbounds": [{"port": 70000, "protocol": "socks"}]}')
    confd = tmp_path / "confd"
    confd.mkdir()
    (confd / "10_out.json").write_text(marked({"outbounds": [{"protocol": "freedom"}]}, "10"))
    (confd / "00_in.json").write_text(marked({"inbounds": GOOD["inbounds"]}, "00"))
    (confd / "README.txt").write_text("not a config")
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["-test", "-config", "good.json"],
        ["-test", "-config=good.json"],
        ["-test", "-c", "good.json"],
        ["--test", "--config", "good.json"],
        ["-test", "-c=good.json", "-c", "second.json"],
        ["-test", "-confdir", "confd"],
        ["-test", "-config", "good.json", "-confdir", "confd"],
        ["-test", "-format", "json", "-config", "good.json"],
        ["-test", "-format=pb", "-config", "good.json"],
        ["-test", "-format=yaml", "-config", "plain"],
        ["-test", "-config", "good.json", "extra", "-config", "second.json"],
        ["-test", "-config", "badproto.json"],
        ["-test", "-config", "baduuid.json"],
        ["-test", "-config", "badlog.json"],
        ["-config", "badlog.json"],
        ["-version"],
        ["-version", "-config", "badproto.json"],
        ["-bogus"],
        ["-config"],
        ["-test=maybe"],
        ["-h"],
    ],
)
async def test_same_files_and_exit_code(workdir: Path, args: list[str]) -> None:
    v2ray, v2py = await _both(args, workdir)
    assert (v2py.code, v2py.marks) == (v2ray.code, v2ray.marks), (v2ray, v2py)
    # 4.34's log writes them in order but may not get them all out before it exits
    assert v2py.files[: len(v2ray.files)] == v2ray.files, (v2ray, v2py)
    if v2ray.code == 0 and "-version" in args:
        assert v2py.out.splitlines()[0].split()[:2] == v2ray.out.splitlines()[0].split()[:2]


async def test_search_order_same_as_4_34(workdir: Path) -> None:
    empty = workdir / "empty"
    env_dir = workdir / "located"
    env_dir.mkdir()
    text = marked(GOOD, "stdin").encode()
    cases: list[tuple[Path, dict[str, str], bytes, list[str]]] = [
        (empty, {"V2RAY_LOCATION_CONFIG": str(env_dir)}, text, ["-test"]),  # stdin
        (empty, {}, text, ["-test", "-config", "stdin:"]),
        (empty, {"V2RAY_LOCATION_CONFDIR": str(workdir / "confd")}, b"", ["-test"]),
        # -confdir that is not a directory: the env one instead
        (
            empty,
            {"V2RAY_LOCATION_CONFDIR": str(workdir / "confd")},
            b"",
            ["-test", "-confdir", "nope"],
        ),
    ]
    (env_dir / "config.json").write_text(marked(GOOD, "located"))
    cases.append((empty, {"V2RAY_LOCATION_CONFIG": str(env_dir)}, b"", ["-test"]))
    cases.append((empty, {"v2ray.location.config": str(env_dir)}, b"", ["-test"]))
    (empty / "config.json").write_text(marked(GOOD, "cwd"))  # ./config.json comes first
    cases.append((empty, {"V2RAY_LOCATION_CONFIG": str(env_dir)}, b"", ["-test"]))
    for cwd, env, stdin, args in cases:
        v2ray, v2py = await _both(args, cwd, env, stdin)
        assert v2ray.code == 0 and len(v2ray.marks) == 1, (args, env, v2ray)
        assert (v2py.code, v2py.marks) == (v2ray.code, v2ray.marks), (args, env, v2ray, v2py)
        for note in ("Using default config:", "Using config from env:", "Using confdir from"):
            if note in v2ray.err:
                assert note in v2py.err, (args, env, v2ray.err, v2py.err)


async def test_documented_differences(workdir: Path) -> None:
    """4.34 (Debian's jsonem build) panics with exit 2 where v2py gives one line, exit 23."""
    for args in (["-test", "-config", "missing.json"], ["-test", "-config", "badport.json"]):
        v2ray, v2py = await _both(args, workdir)
        assert v2ray.code == 2 and "panic:" in v2ray.err, v2ray
        assert v2py.code == 23 and "Traceback" not in v2py.out + v2py.err, v2py


async def test_port_in_use_exits_255_as_4_34(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cfg = tmp_path / "busy.json"
        cfg.write_text(
            json.dumps(
                {
                    "inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks"}],
                    "outbounds": [{"protocol": "freedom"}],
                }
            )
        )
        v2ray, v2py = await _both(["-config", str(cfg)], tmp_path)
    assert v2ray.code == v2py.code == 255, (v2ray, v2py)
    assert any(line.startswith("Failed to start") for line in v2ray.out.splitlines())
    assert any(line.startswith("Failed to start") for line in v2py.out.splitlines())


@pytest.mark.parametrize("server", ["v2ray", "v2py"])
async def test_access_log_lines_match_4_34(server: str, echo_server: tuple[str, int]) -> None:
    *ports, client_socks = free_ports(6)
    echo_port = echo_server[1]
    config = access_log.server_config(ports, echo_port)
    async with run_v2py(access_log.client_config(client_socks, ports[0])):
        # wait on the VMess port only: a connection closed without a byte is the one
        # probe both servers leave out of the access log
        if server == "v2ray":
            async with run_v2ray(config, wait_tcp=ports[:1], settle=0.2) as proc:
                await access_log.probe(ports, echo_port, client_socks)
                lines = await access_log.wait_for_lines(proc.log, len(access_log.EXPECTED))
        else:
            async with run_v2py_process(config, wait_tcp=ports[0]) as proc:
                async with asyncio.timeout(STEP_TIMEOUT_S):
                    while "started" not in proc.log():  # every inbound listens
                        await asyncio.sleep(0.05)
                await access_log.probe(ports, echo_port, client_socks)
                lines = await access_log.wait_for_lines(proc.log, len(access_log.EXPECTED))
    assert sorted(access_log.normalize(line) for line in lines) == access_log.EXPECTED, lines
    hosts = [m["host"] for line in lines if (m := access_log.FAIL2BAN_REJECTED.match(line))]
    assert hosts == ["127.0.0.1", "127.0.0.1"], lines


async def test_link_client_reaches_a_4_34_server(
    tmp_path: Path, echo_server: tuple[str, int]
) -> None:
    server_port, socks_port = free_ports(2)
    server = {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": server_port,
                "protocol": "vmess",
                "settings": {"clients": [{"id": access_log.UUID, "alterId": 4}]},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps(server))
    code, out, err = await _exec(
        [sys.executable, "-m", "v2py", "link", "-c", str(server_file)], tmp_path, {}, b""
    )
    assert code == 0, err
    code, client_text, err = await _exec(
        [sys.executable, "-m", "v2py", "client", "-link", out.strip(), "-port", str(socks_port)],
        tmp_path,
        {},
        b"",
    )
    assert code == 0, err
    async with run_v2ray(server, wait_tcp=[server_port]), run_v2py(client_text):
        reader, writer = await socks5_connect(socks_port, *echo_server)
        writer.write(b"to 4.34 by link")
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.readexactly(15) == b"to 4.34 by link"
        writer.close()


@pytest.mark.parametrize("server", ["v2ray", "v2py"])
async def test_mux_access_line_matches_4_34(server: str, echo_server: tuple[str, int]) -> None:
    """A Mux.Cool sub-connection is logged with the inbound's source as ``tcp:IP:PORT``
    and the user's email (4.34 common/mux/server.go)."""
    vmess_port, socks_port = free_ports(2)
    config = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": vmess_port,
                "protocol": "vmess",
                "settings": {"clients": [{"id": access_log.UUID, "email": access_log.EMAIL}]},
            }
        ],
        "outbounds": [{"protocol": "freedom", "tag": "direct"}],
    }
    client = access_log.client_config(socks_port, vmess_port)
    client["outbounds"][0]["mux"] = {"enabled": True, "concurrency": 8}
    async with run_v2ray(client, wait_tcp=[socks_port]):
        if server == "v2ray":
            async with run_v2ray(config, wait_tcp=[vmess_port]) as proc:
                await access_log.echo_once(
                    *await socks5_connect(socks_port, "127.0.0.1", echo_server[1])
                )
                lines = await access_log.wait_for_lines(proc.log, 1)
        else:
            async with run_v2py_process(config, wait_tcp=vmess_port) as proc:
                await access_log.echo_once(
                    *await socks5_connect(socks_port, "127.0.0.1", echo_server[1])
                )
                lines = await access_log.wait_for_lines(proc.log, 1)
    assert [access_log.normalize(line) for line in lines] == [
        f"tcp:127.0.0.1:PORT accepted tcp:127.0.0.1:PORT [direct] email: {access_log.EMAIL}"
    ], lines
