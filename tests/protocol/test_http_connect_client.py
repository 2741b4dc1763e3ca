"""The HTTP outbound's CONNECT client core (4.34 ``proxy/http/client.go``): the request
bytes Go writes [verified against the binary] and how the proxy's answer is read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.errors import RemoteProtocolError
from v2py.protocol.http_proxy import (
    HttpConnectClient,
    TunnelEstablished,
    connect_target,
    encode_connect_request,
)

OK = b"HTTP/1.1 200 Connection established\r\n\r\n"


def test_request_bytes_as_go_writes_them() -> None:
    assert encode_connect_request("example.com:443", ("al", "pw:x")) == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
        b"User-Agent: Go-http-client/1.1\r\nProxy-Authorization: Basic YWw6cHc6eA==\r\n"
        b"Proxy-Connection: Keep-Alive\r\n\r\n"
    )
    assert encode_connect_request("[::1]:443") == (
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"
        b"User-Agent: Go-http-client/1.1\r\nProxy-Connection: Keep-Alive\r\n\r\n"
    )
    assert connect_target("::1", 443) == "[::1]:443"
    assert connect_target("10.0.0.1", 80) == "10.0.0.1:80"


def _run(client: HttpConnectClient, data: bytes, step: int) -> list[TunnelEstablished]:
    events = []
    for i in range(0, len(data), step):
        client.receive_data(data[i : i + step])
        while (event := client.next_event()) is not None:
            events.append(event)
    return events


@pytest.mark.parametrize("step", [1, 7, 1000])
def test_200_opens_the_tunnel_and_keeps_what_follows(step: int) -> None:
    client = HttpConnectClient("example.com:443")
    assert client.data_to_send().startswith(b"CONNECT example.com:443 HTTP/1.1\r\n")
    assert client.data_to_send() == b""
    events = _run(client, OK + b"banner", step)
    assert events == [TunnelEstablished(status_line="200 Connection established")]
    assert client.trailing_data == b"banner"
    client.receive_data(b"!")
    assert client.trailing_data == b"banner!"


def test_trailing_bytes_in_the_same_read() -> None:
    client = HttpConnectClient("h:1")
    client.receive_data(OK + b"banner")
    assert client.next_event() == TunnelEstablished(status_line="200 Connection established")
    assert client.trailing_data == b"banner"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "407 Proxy Authentication Required",
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            "503 Service Unavailable",
        ),
        (b"HTTP/1.1 201 Created\r\n\r\n", "201 Created"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "100 Continue"),
        (b"HTTP/1.0 403\r\n\r\n", "403"),
    ],
)
def test_anything_but_200_fails(answer: bytes, status: str) -> None:
    client = HttpConnectClient("h:1")
    client.receive_data(answer)
    with pytest.raises(RemoteProtocolError, match=f"non 200 code: {status}$"):
        client.next_event()


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\n", b"SSH-2.0-x\r\n\r\n"])
def test_garbage_or_eof_fails(answer: bytes) -> None:
    client = HttpConnectClient("h:1")
    client.receive_data(answer)
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


@given(st.binary(max_size=60))
def test_arbitrary_answers_give_an_event_or_a_remote_error(data: bytes) -> None:
    client = HttpConnectClient("h:1")
    try:
        client.receive_data(data)
        client.receive_data(b"")
        client.next_event()
    except RemoteProtocolError:
        pass
