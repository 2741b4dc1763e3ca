"""Drop-in operation: logs as 4.34 writes them, log files, service units, packaging files."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import access_log
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports
from v2py.app.log import access_line, configure_logging, log_access

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    for name in ("v2py", "v2py.access"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


# -- access lines ---------------------------------------------------------------------


def test_access_line_shape_is_4_34_access_message() -> None:
    assert access_line("1.2.3.4:5", "accepted", "tcp:x:80") == "1.2.3.4:5 accepted tcp:x:80"
    assert (
        access_line("1.2.3.4:5", "accepted", "tcp:x:80", detour="direct", email="a@b")
        == "1.2.3.4:5 accepted tcp:x:80 [direct] email: a@b"
    )
    assert access_line("tcp:1.2.3.4:5", "rejected", reason="why") == "tcp:1.2.3.4:5 rejected  why"


async def test_access_and_rejected_lines_as_4_34(echo_server: tuple[str, int]) -> None:
    """Accepted (VMess with email, socks, dokodemo) and rejected (VMess unknown user,
    VMess short read, socks without a usable method, socks wrong password) lines are
    those 4.34 writes, times and ports aside."""
    buf = io.StringIO()
    configure_logging("warning", "", "", console=buf)
    *ports, client_socks = free_ports(6)
    echo_port = echo_server[1]
    async with (
        run_v2py(access_log.server_config(ports, echo_port)),
        run_v2py(access_log.client_config(client_socks, ports[0])),
    ):
        # the client's own socks line ends in [to-server]; the server's are the 7
        await access_log.probe(ports, echo_port, client_socks)
        lines = await access_log.wait_for_lines(
            lambda: "\n".join(x for x in buf.getvalue().splitlines() if "[to-server]" not in x),
            len(access_log.EXPECTED),
        )
    assert sorted(access_log.normalize(line) for line in lines) == access_log.EXPECTED
    banned = [m["host"] for line in lines if (m := access_log.FAIL2BAN_REJECTED.match(line))]
    assert banned == ["127.0.0.1", "127.0.0.1"], lines  # the bad VMess id and socks password


async def test_insecure_encryption_rejection_names_the_user(
    echo_server: tuple[str, int],
) -> None:
    """disableInsecureEncryption: 4.34 logs ``FROM rejected  Insecure encryption email: E``."""
    buf = io.StringIO()
    configure_logging("warning", "", "", console=buf)
    server_port, socks_port = free_ports(2)
    server = vmess_server(server_port)
    server["inbounds"][0]["settings"]["disableInsecureEncryption"] = True  # type: ignore[index]
    client = access_log.client_config(socks_port, server_port)
    client["outbounds"][0]["settings"]["vnext"][0]["users"][0]["security"] = "none"
    async with run_v2py(server), run_v2py(client):
        reader, writer = await socks5_connect(socks_port, *echo_server)
        writer.write(b"x")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            async with asyncio.timeout(5):
                await reader.readexactly(1)
        writer.close()
        lines = await access_log.wait_for_lines(
            lambda: "\n".join(x for x in buf.getvalue().splitlines() if " rejected " in x), 1
        )
    assert access_log.normalize(lines[0]) == (
        "127.0.0.1:PORT rejected  Insecure encryption email: alice@example"
    )


# -- log files ------------------------------------------------------------------------------


def _flush() -> None:
    for name in ("v2py", "v2py.access"):
        for handler in logging.getLogger(name).handlers:
            handler.flush()


def test_log_files_0600_and_reopened_after_rotation(tmp_path: Path) -> None:
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    configure_logging("info", str(access), str(error))
    for path in (access, error):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    log_access("1.2.3.4:5", "accepted", "tcp:x:80")
    logging.getLogger("v2py.test").warning("one")
    _flush()
    # logrotate's default: move the file away; the next line goes to a new file
    access.rename(tmp_path / "access.log.1")
    error.rename(tmp_path / "error.log.1")
    log_access("1.2.3.4:6", "accepted", "tcp:y:80")
    logging.getLogger("v2py.test").warning("two")
    _flush()
    assert "tcp:x:80" in (tmp_path / "access.log.1").read_text()
    assert access.read_text().rstrip().endswith("1.2.3.4:6 accepted tcp:y:80")
    assert (
        "[Warning] two" in error.read_text() and "two" not in (tmp_path / "error.log.1").read_text()
    )
    assert stat.S_IMODE(access.stat().st_mode) == 0o600
    # copytruncate works too: the file is opened for appending
    access.write_text("")
    log_access("1.2.3.4:7", "accepted", "tcp:z:80")
    _flush()
    assert access.read_text().count("\n") == 1


def test_unwritable_reopened_log_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    access = tmp_path / "access.log"
    configure_logging("warning", str(access), "none")
    log_access("1.2.3.4:5", "accepted", "tcp:x:80")
    access.rename(tmp_path / "access.log.1")
    access.mkdir()  # the path can no longer be opened as a file
    log_access("1.2.3.4:6", "accepted", "tcp:y:80")
    log_access("1.2.3.4:7", "accepted", "tcp:z:80")
    err = capsys.readouterr().err
    assert err.count("cannot write log file") == 1 and "Traceback" not in err, err


def test_loglevel_none_opens_no_file(tmp_path: Path) -> None:
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    configure_logging("none", str(access), str(error))
    log_access("1.2.3.4:5", "accepted", "tcp:x:80")
    logging.getLogger("v2py.test").error("boom")
    assert list(tmp_path.iterdir()) == []


def test_access_log_off_without_a_log_object() -> None:
    """4.34: no "log" object keeps the access log off; "log": {} sends it to stdout."""
    from v2py.config.load import load_config

    absent = load_config([("c.json", "{}")], {}).config.log
    empty = load_config([("c.json", '{"log": {}}')], {}).config.log
    assert (absent.access, absent.error, absent.loglevel) == ("none", "", "warning")
    assert (empty.access, empty.error) == ("", "")


def test_console_is_stdout_for_both_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    log_access("1.2.3.4:5", "accepted", "tcp:x:80")
    logging.getLogger("v2py.test").info("hello")
    out, err = capsys.readouterr()
    assert "1.2.3.4:5 accepted tcp:x:80" in out and "[Info] hello" in out and err == ""


# -- share links ---------------------------------------------------------------------------


async def _v2py(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "v2py",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def vmess_server(port: int) -> dict[str, object]:
    """A VMess server on 127.0.0.1:``port`` with one user (email alice@example)."""
    return {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "vmess",
                "settings": {"clients": [{"id": access_log.UUID, "email": "alice@example"}]},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


async def test_link_then_client_carries_traffic(
    tmp_path: Path, echo_server: tuple[str, int]
) -> None:
    """`v2py link` on a server config, `v2py client -link` on its output: the client
    config carries traffic to that server."""
    server_port, socks_port = free_ports(2)
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps(vmess_server(server_port)))
    code, out, err = await _v2py("link", "-c", str(server_file))
    assert code == 0, err
    (link,) = out.split()
    assert link.startswith("vmess://")
    client_file = tmp_path / "client.json"
    code, _, err = await _v2py(
        "client", "-link", link, "-port", str(socks_port), "-o", str(client_file)
    )
    assert code == 0, err
    assert stat.S_IMODE(client_file.stat().st_mode) == 0o600
    async with run_v2py(vmess_server(server_port)), run_v2py(client_file.read_text()):
        reader, writer = await socks5_connect(socks_port, *echo_server)
        writer.write(b"through the link")
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.readexactly(16) == b"through the link"
        writer.close()


async def test_link_qr_and_errors(tmp_path: Path) -> None:
    server_file = tmp_path / "server.json"
    config = vmess_server(free_ports(1)[0])
    config["inbounds"][0]["listen"] = "0.0.0.0"  # type: ignore[index]
    server_file.write_text(json.dumps(config))
    code, _, err = await _v2py("link", "-c", str(server_file))
    assert code == 2 and "--address" in err and len(err.strip().splitlines()) == 1
    code, out, err = await _v2py("link", "-c", str(server_file), "--address", "vpn.example", "--qr")
    assert code == 0, err
    assert out.startswith("vmess://") and "\u2588" in out  # the QR code's blocks
    code, _, err = await _v2py("client", "-link", "vmess://bm90IGpzb24=")
    assert code == 23 and err.strip().count("\n") == 0 and "bad link" in err


# -- service units, license, packaging -------------------------------------------------------


def test_systemd_units_are_valid(tmp_path: Path) -> None:
    units = [ROOT / "packaging" / "systemd" / name for name in ("v2py.service", "v2py@.service")]
    for unit in units:
        text = unit.read_text()
        assert "RestartPreventExitStatus=23" in text and "ExecStart=/usr/bin/v2py" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify needs the ExecStart binary to exist: point a copy at this interpreter's v2py
    fake_bin = tmp_path / "v2py"
    fake_bin.write_text(f'#!/bin/sh\nexec {sys.executable} -m v2py "$@"\n')
    fake_bin.chmod(0o755)
    for unit in units:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/bin/v2py", str(fake_bin)))
        result = subprocess.run(
            [analyze, "verify", str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if str(copy) in line or unit.name in line
        ]
        assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_license_is_mit_as_pyproject_says() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()


def test_chinese_readme_has_the_same_setup_commands() -> None:
    english = (ROOT / "README.md").read_text()
    chinese = (ROOT / "README.zh-CN.md").read_text()
    for command in ("pip install", "v2py -config", "v2py -test -config"):
        assert command in english and command in chinese, command


@pytest.mark.slow
async def test_wheel_and_sdist_install_in_a_fresh_venv_and_serve(tmp_path: Path) -> None:
    """`python -m build` makes a wheel and an sdist that `twine check` passes; the wheel
    installs in a fresh venv (dependencies from the package index), whose `v2py -test`,
    started on a terminal with no config around, builds the embedded default server
    (serving it would need 127.0.0.1:1080, which a shared machine may have taken)."""
    import pty

    out = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    primary, secondary = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(venv / "bin" / "v2py"),
            "-test",
            stdin=secondary,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=empty,
            env={"PATH": os.environ.get("PATH", ""), "V2RAY_LOCATION_CONFIG": str(empty)},
        )
        async with asyncio.timeout(60):
            stdout, stderr = await proc.communicate()
    finally:
        os.close(primary)
        os.close(secondary)
    text = stdout.decode() + stderr.decode()
    assert proc.returncode == 0, text
    assert "embedded default" in text and "Configuration OK." in text
