"""/etc/hosts answered in-process as Go's resolver answers it (transport/hosts.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.forward import echo_server
from v2py.transport import hosts, tcp
from v2py.transport.hosts import (
    CACHE_S,
    MAX_HOSTS_BYTES,
    HostsFile,
    files_first,
    parse_hosts,
)
from v2py.transport.sockopt import SocketOptions


def test_parse_as_go_reads_hosts() -> None:
    text = (
        "# comment\n127.0.0.1 localhost Local.Test. # trailing comment\n"
        "::1 localhost ip6-localhost\nnot-an-ip foo\n10.0.0.1\nfe80::1%eth0 linklocal\n"
        "10.0.0.2 local.test\n"
    )
    table = parse_hosts(text)
    assert table["localhost"] == ("127.0.0.1", "::1")
    assert table["local.test"] == ("127.0.0.1", "10.0.0.2")
    assert table["linklocal"] == ("fe80::1%eth0",)
    assert "foo" not in table


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("hosts: files dns\n", True),
        ("passwd: files\nhosts:          files mdns4_minimal [NOTFOUND=return] dns\n", True),
        ("hosts: dns files\n", False),
        ("# hosts: files\n", False),
        (None, False),  # glibc's default without the file: dns first
    ],
)
def test_files_first(text: str | None, first: bool) -> None:
    assert files_first(text) is first


def test_cached_for_five_seconds_then_reread_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a.test\n")
    now = [100.0]
    table = HostsFile(str(path), clock=lambda: now[0])
    assert table.lookup("A.TEST.") == ("10.0.0.1",)
    path.write_text("10.0.0.2 a.test b.test\n")
    assert table.lookup("a.test") == ("10.0.0.1",)  # still cached
    now[0] += CACHE_S
    assert table.lookup("a.test") == ("10.0.0.2",)
    path.write_text("10.0.0.3 a.test\n" + "# padding\n" * (MAX_HOSTS_BYTES // 10))
    now[0] += CACHE_S
    assert table.lookup("a.test") == ()  # too large to keep: getaddrinfo answers
    path.unlink()
    now[0] += CACHE_S
    assert table.lookup("a.test") == ()
    assert HostsFile(str(path), enabled=False).lookup("a.test") == ()


async def test_dial_uses_hosts_without_the_resolver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 echo.hosts.test\n")
    monkeypatch.setattr(hosts, "_SYSTEM", HostsFile(str(path)))
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def no_names(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert host == "127.0.0.1", host  # only the address, never the name
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", no_names)
    async with echo_server() as port, asyncio.timeout(10):
        for options in (None, SocketOptions()):
            stream = await tcp.dial_tcp("echo.hosts.test", port, options=options)
            stream.write(b"hi")
            assert await stream.read() == b"hi"
            stream.close()


async def test_system_resolver_and_freedom_use_ip_read_hosts_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from v2py.app.dns.nameserver import LocalNameServer
    from v2py.app.policy import PolicyTable
    from v2py.proxy.freedom import DomainStrategy, FreedomOutbound

    path = tmp_path / "hosts"
    path.write_text("10.9.8.7 both.hosts.test\n2001:db8::7 both.hosts.test\n")
    monkeypatch.setattr(hosts, "_SYSTEM", HostsFile(str(path)))
    loop = asyncio.get_running_loop()

    async def no_resolver(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("getaddrinfo asked for a name in /etc/hosts")

    monkeypatch.setattr(loop, "getaddrinfo", no_resolver)
    found = await LocalNameServer().query("both.hosts.test", ipv4=True, ipv6=False)
    assert found == (bytes([10, 9, 8, 7]),)
    for strategy, expected in (("UseIPv4", "10.9.8.7"), ("UseIPv6", "2001:db8::7")):
        out = FreedomOutbound(
            tag="d", domain_strategy=DomainStrategy(strategy), policy=PolicyTable()
        )
        assert await out._resolve("both.hosts.test", 80, 1) == expected
