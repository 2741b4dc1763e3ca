"""The SOCKS5 client core (4.34 ``proxy/socks/protocol.go`` ``ClientHandshake``): the
bytes it writes, how it reads replies (whole, byte at a time, at any split), and a
handshake against the server core."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.errors import Socks5Error
from v2py.protocol.socks5 import (
    AuthMethod,
    ReplyReceived,
    RequestReceived,
    Socks5ClientConnection,
    Socks5ClientState,
    Socks5Command,
    Socks5ServerConnection,
    encode_client_greeting,
)

CONNECT = Socks5Command.CONNECT
UDP = Socks5Command.UDP_ASSOCIATE
REPLY_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


def _feed(
    client: Socks5ClientConnection, data: bytes, sizes: list[int] | None = None
) -> list[object]:
    events: list[object] = []
    pieces: list[bytes]
    if sizes is None:
        pieces = [data[i : i + 1] for i in range(len(data))]
    else:
        pieces, rest = [], data
        for size in sizes:
            pieces.append(rest[:size])
            rest = rest[size:]
        pieces.append(rest)
    for piece in pieces:
        if piece:
            client.receive_data(piece)
        while (event := client.next_event()) is not None:
            events.append(event)
    return events


def test_no_auth_greeting_then_request_after_the_method_reply() -> None:
    client = Socks5ClientConnection(command=CONNECT, address="example.com", port=443)
    assert client.data_to_send() == b"\x05\x01\x00"
    assert client.data_to_send() == b""
    client.receive_data(b"\x05")
    assert client.data_to_send() == b""
    client.receive_data(b"\x00")
    assert client.data_to_send() == b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
    assert client.state is Socks5ClientState.REPLY
    events = _feed(client, REPLY_V4 + b"tunnel")
    assert events == [ReplyReceived(address="127.0.0.1", port=1080)]
    assert client.state is Socks5ClientState.ESTABLISHED
    assert client.trailing_data == b"tunnel"


def test_password_sub_negotiation_goes_with_the_greeting() -> None:
    client = Socks5ClientConnection(
        command=UDP, address="::1", port=53, username="alice", password="s3cret"
    )
    assert client.data_to_send() == b"\x05\x01\x02\x01\x05alice\x06s3cret"
    client.receive_data(b"\x05\x02")
    assert client.data_to_send() == b""  # the request waits for the auth reply
    # 4.34 checks only the status byte of the auth reply.
    client.receive_data(b"\x07\x00")
    assert client.data_to_send() == b"\x05\x03\x00\x04" + b"\x00" * 15 + b"\x01\x00\x35"


def test_empty_credentials_still_offer_password() -> None:
    assert encode_client_greeting("", "") == b"\x05\x01\x02\x01\x00\x00"
    with pytest.raises(ValueError):
        encode_client_greeting("u" * 256, "")


@pytest.mark.parametrize(
    ("username", "reply", "message"),
    [
        (None, b"\x04\x00", "unexpected server version: 4"),
        (None, b"\x05\x02", "auth method not supported."),
        (None, b"\x05\xff", "auth method not supported."),
        ("u", b"\x05\x00", "auth method not supported."),
        ("u", b"\x05\x02\x01\x01", "server rejects account: 1"),
        (None, b"\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", "server rejects request: 5"),
        (None, b"\x05\x00\x05\x00\x00\x09", "unknown address type"),
        (None, b"\x05\x00\x05\x00\x00\x03\x03a b\x00\x01", "invalid domain name"),
        (None, b"\x05\x00\x05\x00\x00\x03\x00\x00\x01", "empty domain name"),
    ],
)
def test_refusals_and_bad_replies(username: str | None, reply: bytes, message: str) -> None:
    client = Socks5ClientConnection(command=CONNECT, address="1.2.3.4", port=80, username=username)
    client.data_to_send()
    with pytest.raises(Socks5Error, match=message):
        _feed(client, reply)
    assert client.state is Socks5ClientState.ERROR


def test_eof_during_the_handshake_is_an_error() -> None:
    client = Socks5ClientConnection(command=CONNECT, address="1.2.3.4", port=80)
    client.receive_data(b"\x05")
    client.receive_data(b"")
    with pytest.raises(Socks5Error, match="closed during the handshake"):
        client.next_event()


def test_a_domain_reply_that_spells_an_ip_is_that_ip() -> None:
    client = Socks5ClientConnection(command=UDP, address="1.2.3.4", port=80)
    events = _feed(client, b"\x05\x00" + b"\x05\x00\x00\x03\x0810.0.0.1\x00\x35")
    assert events == [ReplyReceived(address="10.0.0.1", port=53)]


@given(st.lists(st.integers(min_value=1, max_value=8), max_size=6), st.booleans())
def test_any_split_gives_the_same_result(sizes: list[int], password: bool) -> None:
    user = "bob" if password else None
    client = Socks5ClientConnection(command=CONNECT, address="x.test", port=8, username=user)
    server_bytes = (b"\x05\x02\x01\x00" if password else b"\x05\x00") + REPLY_V4 + b"data"
    events = _feed(client, server_bytes, sizes)
    assert events == [ReplyReceived(address="127.0.0.1", port=1080)]
    assert client.trailing_data == b"data"


@given(st.binary(max_size=40))
def test_arbitrary_server_bytes_give_events_or_socks_errors(data: bytes) -> None:
    client = Socks5ClientConnection(command=CONNECT, address="1.2.3.4", port=80, username="u")
    try:
        _feed(client, data)
        client.receive_data(b"")
        client.next_event()
    except Socks5Error:
        pass


@pytest.mark.parametrize("auth", [AuthMethod.NO_AUTH, AuthMethod.PASSWORD])
def test_against_the_server_core(auth: AuthMethod) -> None:
    server = Socks5ServerConnection(auth_method=auth, accounts={"al": "pw"}, udp_enabled=True)
    client = Socks5ClientConnection(
        command=CONNECT,
        address="example.org",
        port=8443,
        username="al" if auth is AuthMethod.PASSWORD else None,
        password="pw",
    )
    request = None
    for _ in range(4):
        server.receive_data(client.data_to_send())
        while (event := server.next_event()) is not None:
            assert isinstance(event, RequestReceived)
            request = event
            server.accept("127.0.0.1", 1080)
        client.receive_data(server.data_to_send())
        if client.next_event() is not None:
            break
    else:
        pytest.fail("no reply")
    assert request is not None
    assert (request.address, request.port) == ("example.org", 8443)
    assert request.username == ("al" if auth is AuthMethod.PASSWORD else "")
