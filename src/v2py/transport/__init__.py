"""Transports: TCP and mKCP, behind one dial/listen pair (v2ray-core transport/internet)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from v2py.transport.stream import Stream


class Listener(Protocol):
    def close(self) -> None: ...

    def stop_accepting(self) -> None: ...

    async def wait_closed(self) -> None: ...


async def dial(
    network: str,
    host: str,
    port: int,
    *,
    kcp: Any = None,
    kcp_dialer: Any = None,
    timeout: float | None = None,
) -> Stream:
    """Open a stream to ``host:port`` over ``network`` ("tcp" or "kcp").

    ``kcp_dialer`` (a :class:`v2py.transport.mkcp.KcpDialer`) tracks mKCP streams so
    that their owner can close them all; without it the process-wide one is used.
    """
    if network == "kcp":
        from v2py.transport.mkcp import dial_kcp

        return await dial_kcp(host, port, kcp, dialer=kcp_dialer)
    from v2py.transport.tcp import dial_tcp

    return await dial_tcp(host, port, timeout=timeout)


async def listen(
    network: str,
    host: str,
    port: int,
    handler: Callable[[Any], Awaitable[None]],
    *,
    kcp: Any = None,
    reuse_port: bool = False,
) -> Listener:
    """Listen on ``host:port`` over ``network``; each connection runs ``handler(stream)``.

    ``reuse_port`` sets SO_REUSEPORT, so that sibling worker processes can bind the
    same port and the kernel spreads connections (and mKCP peers) among them.
    """
    if network == "kcp":
        from v2py.transport.mkcp import listen_kcp

        listener: Any = await listen_kcp(host, port, kcp, handler, reuse_port=reuse_port)
        return listener  # type: ignore[no-any-return]
    from v2py.transport.tcp import listen_tcp

    return await listen_tcp(host, port, handler, reuse_port=reuse_port)
