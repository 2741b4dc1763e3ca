"""V2Ray-style configs shared by the VMess tests: a socks → vmess client, a vmess → freedom server.

The same dict runs on the real v2ray and on v2py.
"""

from __future__ import annotations

from typing import Any


def vmess_client_config(
    socks_port: int,
    server_port: int,
    uuid: str,
    alter_id: int,
    security: str,
    *,
    udp: bool = False,
) -> dict[str, Any]:
    """A socks inbound on 127.0.0.1:``socks_port`` going out by vmess to ``server_port``."""
    socks: dict[str, Any] = {"auth": "noauth"}
    if udp:
        socks.update({"udp": True, "ip": "127.0.0.1"})
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {"listen": "127.0.0.1", "port": socks_port, "protocol": "socks", "settings": socks}
        ],
        "outbounds": [
            {
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "127.0.0.1",
                            "port": server_port,
                            "users": [{"id": uuid, "alterId": alter_id, "security": security}],
                        }
                    ]
                },
            }
        ],
    }


def vmess_server_config(
    port: int,
    uuid: str,
    alter_id: int,
    *,
    email: str | None = None,
    handshake_s: int | None = None,
    loglevel: str = "warning",
) -> dict[str, Any]:
    """A vmess inbound on 127.0.0.1:``port`` with one client, going out by freedom."""
    client: dict[str, Any] = {"id": uuid, "alterId": alter_id}
    if email is not None:
        client["email"] = email
    config: dict[str, Any] = {"log": {"loglevel": loglevel}}
    if handshake_s is not None:
        config["policy"] = {"levels": {"0": {"handshake": handshake_s}}}
    config["inbounds"] = [
        {
            "listen": "127.0.0.1",
            "port": port,
            "protocol": "vmess",
            "settings": {"clients": [client]},
        }
    ]
    config["outbounds"] = [{"protocol": "freedom", "settings": {}}]
    return config
