"""The ``v2py`` command line as a user runs it (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from tests.support.socks import socks5_connect
from tests.support.v2ray import free_port, wait_tcp_port

V2PY = [sys.executable, "-m", "v2py"]


async def _run(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *V2PY, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_version_and_uuid() -> None:
    code, out, _ = await _run("version")
    assert code == 0 and "v2py" in out and "4.34" in out
    code, out, _ = await _run("-version")
    assert code == 0 and "v2py" in out
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
    ],
)
async def test_bad_config_is_one_line_and_exit_23(tmp_path: Path, text: str, path: str) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(text)
    for args in (("test", "-c", str(cfg)), ("-test", "-config", str(cfg)), ("run", "-c", str(cfg))):
        code, out, err = await _run(*args)
        assert code == 23, (args, out, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert path in lines[0] and "Traceback" not in err


async def test_missing_file_is_one_line(tmp_path: Path) -> None:
    code, _, err = await _run("test", "-c", str(tmp_path / "missing.json"))
    assert code == 23 and len(err.strip().splitlines()) == 1


async def test_test_accepts_good_config(tmp_path: Path) -> None:
    cfg = tmp_path / "good.json"
    cfg.write_text(
        '// comment\n{"inbounds": [{"port": 1080, "protocol": "socks"}], '
        '"outbounds": [{"protocol": "freedom"}]}'
    )
    code, out, _ = await _run("test", "-c", str(cfg))
    assert code == 0 and "OK" in out


async def _serve_and_stop(args: list[str], port: int, echo: tuple[str, int]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *V2PY, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
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
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_run_v2ray_style_and_sigterm(tmp_path: Path, echo_server: tuple[str, int]) -> None:
    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks"}],
                "outbounds": [{"protocol": "freedom"}],
            }
        )
    )
    code, err = await _serve_and_stop(["-config", str(cfg)], port, echo_server)
    assert code == 0, err
    assert "Traceback" not in err


async def test_run_config_dir(tmp_path: Path, echo_server: tuple[str, int]) -> None:
    port = free_port()
    (tmp_path / "00_in.json").write_text(
        json.dumps({"inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks"}]})
    )
    (tmp_path / "10_out.json").write_text(json.dumps({"outbounds": [{"protocol": "freedom"}]}))
    code, err = await _serve_and_stop(["run", "-d", str(tmp_path)], port, echo_server)
    assert code == 0, err


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def test_run_without_config_serves_embedded_default(echo_server: tuple[str, int]) -> None:
    if _port_busy(1080):
        pytest.skip("127.0.0.1:1080 is taken on this machine")
    code, err = await _serve_and_stop(["run"], 1080, echo_server)
    assert code == 0, err
    assert "embedded default" in err and "127.0.0.1:1080" in err


def test_pure_python_switch_turns_the_accelerator_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from v2py import cli

    body = importlib.import_module("v2py.protocol.vmess.body")
    kdf = importlib.import_module("v2py.protocol.vmess.kdf")
    before = (body._accel_enabled, kdf._use_c)
    monkeypatch.setenv("V2PY_PURE_PYTHON", "1")
    try:
        cli._apply_pure_python_switch()
        assert body._accel_enabled is False and kdf._use_c is False
    finally:
        body.use_accelerator(before[0])
        kdf.use_accelerator(before[1])
