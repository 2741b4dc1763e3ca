"""vmess:// share links in the v2rayN format: reading, writing, server -> links -> client."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.config.load import load_config
from v2py.config.share import (
    ShareLinkError,
    VmessLink,
    client_config,
    decode_vmess_link,
    encode_vmess_link,
    server_links,
)

UUID = "c9087962-37fd-4fbb-a1de-55afcb4edcad"

#: Links as v2rayN writes them (its wiki "share link format, version 2": every value
#: a string) and as other clients write them (numbers, URL-safe base64, no padding).
V2RAYN_TCP = {
    "v": "2",
    "ps": "tokyo",
    "add": "example.com",
    "port": "10086",
    "id": UUID,
    "aid": "0",
    "scy": "auto",
    "net": "tcp",
    "type": "none",
    "host": "",
    "path": "",
    "tls": "",
    "sni": "",
    "alpn": "",
}
V2RAYN_WS_TLS = {
    **V2RAYN_TCP,
    "ps": "香港 ws",
    "port": "443",
    "net": "ws",
    "host": "cdn.example.com",
    "path": "/ray?ed=0",
    "tls": "tls",
    "sni": "sni.example.com",
    "alpn": "h2,http/1.1",
}
OLD_CLIENT_KCP = {
    "v": 2,
    "ps": "kcp",
    "add": "10.0.0.1",
    "port": 2053,
    "id": UUID.upper(),
    "aid": 64,
    "net": "kcp",
    "type": "wechat-video",
    "path": "seed-x",
}


def _b64(obj: dict[str, Any], *, urlsafe: bool = False, pad: bool = True) -> str:
    raw = json.dumps(obj, ensure_ascii=False).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return "vmess://" + (text if pad else text.rstrip("="))


def test_reads_v2rayn_links() -> None:
    link = decode_vmess_link(_b64(V2RAYN_TCP))
    assert link == VmessLink(ps="tokyo", add="example.com", port=10086, id=UUID)
    ws = decode_vmess_link(_b64(V2RAYN_WS_TLS))
    assert (ws.ps, ws.net, ws.host, ws.path, ws.tls, ws.sni, ws.alpn) == (
        "香港 ws",
        "ws",
        "cdn.example.com",
        "/ray?ed=0",
        "tls",
        "sni.example.com",
        "h2,http/1.1",
    )


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("pad", [False, True])
def test_tolerant_forms(urlsafe: bool, pad: bool) -> None:
    link = decode_vmess_link(_b64(OLD_CLIENT_KCP, urlsafe=urlsafe, pad=pad))
    assert (link.port, link.aid, link.id, link.net, link.type, link.path) == (
        2053,
        64,
        UUID,
        "kcp",
        "wechat-video",
        "seed-x",
    )
    text = _b64(OLD_CLIENT_KCP, urlsafe=urlsafe, pad=pad)
    wrapped = "  " + text[:30] + "\n" + text[30:] + "\r\n"
    assert decode_vmess_link(wrapped) == link


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ss://abc", "not a vmess:// link"),
        ("vmess://%%%%", "not base64"),
        ("vmess://" + base64.b64encode(b"hello").decode(), "does not hold JSON"),
        ("vmess://" + base64.b64encode(b"[1]").decode(), "not an object"),
        (_b64({**V2RAYN_TCP, "add": ""}), '"add"'),
        (_b64({**V2RAYN_TCP, "port": "70000"}), "out of range"),
        (_b64({**V2RAYN_TCP, "port": "http"}), '"port" is not a number'),
        (_b64({**V2RAYN_TCP, "id": "nope"}), "not a UUID"),
        (_b64({**V2RAYN_TCP, "aid": "-1"}), '"aid"'),
        (_b64({**V2RAYN_TCP, "v": "3"}), "version"),
        (f"vmess://{UUID}@example.com:443?type=tcp#x", "vmess://UUID@HOST:PORT form"),
    ],
)
def test_broken_links_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ShareLinkError, match=message.replace("?", r"\?")) as info:
        decode_vmess_link(text)
    assert "\n" not in str(info.value)


_fields = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=","), max_size=20
).map(str.strip)


@given(
    ps=_fields,
    add=_fields.filter(bool),
    port=st.integers(1, 65535),
    aid=st.integers(0, 65535),
    host=_fields,
    path=_fields,
)
def test_round_trip(ps: str, add: str, port: int, aid: int, host: str, path: str) -> None:
    link = VmessLink(ps=ps, add=add, port=port, id=UUID, aid=aid, host=host, path=path)
    text = encode_vmess_link(link)
    assert decode_vmess_link(text) == link
    body = json.loads(base64.b64decode(text[len("vmess://") :]))
    assert all(isinstance(v, str) for v in body.values())  # as v2rayN writes them
    assert list(body)[:6] == ["v", "ps", "add", "port", "id", "aid"]


def _server(inbounds: list[dict[str, Any]]) -> Any:
    return load_config([("server.json", json.dumps({"inbounds": inbounds}))], {}).config


def test_server_links_one_per_user_with_stream_fields() -> None:
    clients = [{"id": UUID, "email": "alice@x", "alterId": 4}, {"id": UUID.replace("c", "d")}]
    config = _server(
        [
            {"tag": "plain", "port": 10086, "protocol": "vmess", "settings": {"clients": clients}},
            {
                "port": 2053,
                "listen": "192.0.2.7",
                "protocol": "vmess",
                "settings": {"clients": [{"id": UUID}]},
                "streamSettings": {
                    "network": "kcp",
                    "kcpSettings": {"header": {"type": "srtp"}, "seed": "s3cr3t"},
                },
            },
            {"port": 1080, "protocol": "socks"},
        ]
    )
    links = server_links(config, "vpn.example.com")
    assert [(x.ps, x.add, x.port, x.aid) for x in links] == [
        ("alice@x", "vpn.example.com", 10086, 4),
        ("plain-1", "vpn.example.com", 10086, 0),
        ("inbound1-0", "vpn.example.com", 2053, 0),
    ]
    assert (links[2].net, links[2].type, links[2].path) == ("kcp", "srtp", "s3cr3t")
    # without --address, the listen address when it is a specific one
    assert server_links(config.model_copy(update={"inbounds": config.inbounds[1:]}))[0].add == (
        "192.0.2.7"
    )
    with pytest.raises(ShareLinkError, match="--address"):
        server_links(config)


@pytest.mark.parametrize("fixture", [V2RAYN_TCP, OLD_CLIENT_KCP, V2RAYN_WS_TLS])
def test_client_config_from_link_loads(fixture: dict[str, Any]) -> None:
    link = decode_vmess_link(_b64(fixture))
    config = client_config(link, 10800)
    loaded = load_config([("client.json", json.dumps(config))], {}).config
    outbound = loaded.outbounds[0]
    assert outbound.protocol == "vmess" and loaded.inbounds[0].port.first == 10800
    assert outbound.stream.network == link.net


def test_unsupported_transport_in_link_is_refused() -> None:
    link = decode_vmess_link(_b64({**V2RAYN_TCP, "net": "grpc"}))
    with pytest.raises(ShareLinkError, match='"grpc" is not supported'):
        client_config(link)
