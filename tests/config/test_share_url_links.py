"""vless://, trojan:// and ss:// share links (config/share_url.py)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.config.load import load_config
from v2py.config.share import ShareLinkError, socks_client_config
from v2py.config.share_url import (
    UrlLink,
    decode_url_link,
    encode_url_link,
    url_client_outbound,
    url_server_links,
)

ID = "b831381d-6324-4d53-ad4f-8cda48b30811"


def test_reads_the_links_clients_share() -> None:
    link = decode_url_link(
        f"vless://{ID}@vpn.example:443?encryption=none&security=tls&sni=cdn.example"
        "&type=ws&host=cdn.example&path=%2Fray%3Fed%3D2048#my%20node"
    )
    assert (link.scheme, link.address, link.port, link.secret) == ("vless", "vpn.example", 443, ID)
    assert (link.network, link.path, link.host, link.security, link.sni) == (
        "ws", "/ray?ed=2048", "cdn.example", "tls", "cdn.example"
    )  # fmt: skip
    assert link.name == "my node"
    trojan = decode_url_link("trojan://p%40ss@[2001:db8::1]:8443?allowInsecure=1#t")
    assert (trojan.secret, trojan.address, trojan.port) == ("p@ss", "2001:db8::1", 8443)
    assert trojan.security == "tls" and trojan.allow_insecure  # Trojan means TLS unless told
    userinfo = base64.urlsafe_b64encode(b"chacha20-ietf-poly1305:pw").decode().rstrip("=")
    ss = decode_url_link(f"ss://{userinfo}@1.2.3.4:8388#x")
    assert (ss.method, ss.secret, ss.port) == ("chacha20-poly1305", "pw", 8388)
    legacy = base64.b64encode(b"aes-256-gcm:p:w@h.example:1").decode()
    old = decode_url_link(f"ss://{legacy}#y")
    assert (old.method, old.secret, old.address, old.port) == ("aes-256-gcm", "p:w", "h.example", 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://x", "not a vless://"),
        ("vless://not-a-uuid@h:1", "not a UUID"),
        (f"vless://{ID}@h:1?flow=xtls-rprx-vision", "flow"),
        (f"vless://{ID}@h:1?security=reality&pbk=k", "REALITY"),
        (f"vless://{ID}@h:1?type=grpc", "grpc"),
        (f"vless://{ID}@h:99999", "port"),
        (f"vless://{ID}@h", "HOST:PORT"),
        ("trojan://@h:1", "password is empty"),
        ("trojan://h:1", "user part"),
        ("ss://YWVzLTEyOC1nY206cA@h:1/?plugin=v2ray-plugin", "plugin"),
        ("ss://cmM0LW1kNTpw@h:1", "cipher"),
    ],
)
def test_what_a_434_client_cannot_do_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ShareLinkError, match=message) as info:
        decode_url_link(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "link",
    [
        UrlLink(scheme="vless", name="a b#c", address="h.example", port=1, secret=ID,
                network="ws", host="cdn", path="/p?x=1", security="tls", sni="s", alpn=("h2",)),
        UrlLink(scheme="trojan", address="::1", port=2, secret="p@ss:w/rd", network="kcp",
                header_type="wechat-video", seed="s", security="tls"),
        UrlLink(scheme="vless", address="1.2.3.4", port=3, secret=ID, header_type="http",
                host="a.example,b.example", path="/x"),
        UrlLink(scheme="ss", name="n", address="h", port=4, secret="p:w@", method="aes-128-gcm"),
    ],
)  # fmt: skip
def test_round_trip(link: UrlLink) -> None:
    assert decode_url_link(encode_url_link(link)) == link


def _server(inbounds: list[dict[str, Any]]) -> Any:
    text = json.dumps({"inbounds": inbounds, "outbounds": [{"protocol": "freedom"}]})
    return load_config([("s.json", text)], {}).config


def test_server_links_for_every_user_and_client_configs_that_load() -> None:
    config = _server(
        [
            {"tag": "vl", "listen": "127.0.0.1", "port": 1, "protocol": "vless",
             "settings": {"clients": [{"id": ID, "email": "a@x"}, {"id": ID}],
                          "decryption": "none"},
             "streamSettings": {"network": "ws", "wsSettings": {"path": "/v"}}},
            {"listen": "127.0.0.1", "port": 2, "protocol": "trojan",
             "settings": {"clients": [{"password": "pw"}]}},
            {"listen": "127.0.0.1", "port": 3, "protocol": "shadowsocks",
             "settings": {"method": "aes-128-gcm", "password": "pw"}},
            {"listen": "127.0.0.1", "port": 4, "protocol": "shadowsocks",
             "settings": {"method": "aes-128-gcm", "password": "pw"},
             "streamSettings": {"network": "ws"}},
        ]
    )  # fmt: skip
    links = url_server_links(config, "vpn.example")
    assert [(k.scheme, k.name, k.port) for k in links] == [
        ("vless", "a@x", 1),
        ("vless", "vl-1", 1),
        ("trojan", "inbound1-0", 2),
        ("ss", "inbound2", 3),
    ]  # fmt: skip  (the Shadowsocks inbound over ws has no SIP002 link)
    assert links[0].path == "/v" and links[2].security == "none"
    for link in links:
        config_json = socks_client_config(
            url_client_outbound(decode_url_link(encode_url_link(link))), 1080
        )
        load_config([("c.json", json.dumps(config_json))], {})


@given(
    st.sampled_from(["vless://", "trojan://", "ss://"]),
    st.sampled_from(["", f"{ID}@h:1?", "pw@[::1]:443?", "YWVzLTEyOC1nY206cA@h:1"]),
    st.text(max_size=60),
)
def test_any_text_is_a_link_or_one_line(scheme: str, start: str, rest: str) -> None:
    try:
        link = decode_url_link(scheme + start + rest)
    except ShareLinkError as exc:
        assert "\n" not in str(exc)
        return
    with contextlib.suppress(ShareLinkError):  # may refuse, never crash
        url_client_outbound(link)
