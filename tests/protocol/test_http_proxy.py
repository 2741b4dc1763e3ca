"""HTTP proxy core (v2py.protocol.http_proxy): request/response readers over h11 and
4.34's Go-style re-writing. The byte vectors were taken from V2Ray 4.34 itself."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.errors import RemoteProtocolError
from v2py.protocol.http_proxy import (
    HEAD_MAX_BYTES,
    BodyMode,
    ClientClosed,
    HttpRequestReader,
    HttpResponseReader,
    InformationalReceived,
    ProxyRequest,
    ProxyResponse,
    RequestBodyReceived,
    RequestEnded,
    RequestHeadReceived,
    ResponseBodyReceived,
    ResponseEnded,
    ResponseHeadReceived,
    canonical_header_name,
    check_basic_auth,
    encode_chunk,
    encode_last_chunk,
    go_request_uri,
    make_proxy_request,
    parse_proxy_host,
    plan_client_response,
    plan_forward_request,
)

GET_ABS = (
    b"GET http://Example.test:8080/a/b?q=1 HTTP/1.1\r\n"
    b"Host: example.test:8080\r\n"
    b"User-Agent: curl/8\r\n"
    b"Proxy-Connection: Keep-Alive\r\n"
    b"Proxy-Authorization: Basic dTpw\r\n"
    b"Connection: keep-alive, X-Hop\r\n"
    b"X-Hop: 1\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"body"
)

Event = RequestHeadReceived | RequestBodyReceived | RequestEnded | ClientClosed


def drain(reader: HttpRequestReader) -> list[Event]:
    events: list[Event] = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    return events


def collapse(events: list[Event]) -> list[object]:
    """Events with body data merged (split points change only how data is cut)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, RequestBodyReceived) and out and isinstance(out[-1], bytes):
            out[-1] += event.data
        elif isinstance(event, RequestBodyReceived):
            out.append(event.data)
        else:
            out.append(event)
    return out


def read_all_requests(chunks: list[bytes]) -> list[object]:
    """Feed ``chunks`` (then EOF); collect every request as the shell would."""
    reader = HttpRequestReader()
    events: list[Event] = []
    for chunk in [*chunks, b""]:
        reader.receive_data(chunk)
        while True:
            got = drain(reader)
            events += got
            if got and isinstance(got[-1], RequestEnded):
                reader.start_next()
                continue
            break
    return collapse(events)


def one_request(data: bytes) -> RequestHeadReceived:
    reader = HttpRequestReader()
    reader.receive_data(data)
    event = reader.next_event()
    assert isinstance(event, RequestHeadReceived)
    return event


def forwarded(data: bytes) -> bytes:
    head = one_request(data)
    return plan_forward_request(head.request, chunked=head.chunked, length=head.length).head


# -- request reader ----------------------------------------------------------------------


def test_absolute_get_and_body() -> None:
    events = read_all_requests([GET_ABS])
    head = events[0]
    assert isinstance(head, RequestHeadReceived)
    request = head.request
    assert (request.method, request.url_host, request.request_uri) == (
        "GET",
        "Example.test:8080",
        "/a/b?q=1",
    )
    assert request.destination() == ("Example.test", 8080)
    assert request.keep_alive and head.length == 4 and not head.chunked
    assert events[1:] == [b"body", RequestEnded(), ClientClosed()]


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, 3 * len(GET_ABS)), max_size=8))
def test_pipelined_requests_any_split(cuts: list[int]) -> None:
    data = GET_ABS * 3
    bounds = [0, *sorted(cuts), len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    assert read_all_requests(chunks) == read_all_requests([data])
    assert len(read_all_requests([data])) == 3 * 3 + 1


def test_byte_at_a_time_chunked_with_trailers() -> None:
    data = (
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n"
        b"\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    )
    events = read_all_requests([data[i : i + 1] for i in range(len(data))])
    head = events[0]
    assert isinstance(head, RequestHeadReceived) and head.chunked
    assert events[1:] == [b"hello", RequestEnded(trailers=(("X-T", "1"),)), ClientClosed()]
    plan = plan_forward_request(head.request, chunked=True, length=0)
    assert plan.trailers
    assert plan.head == (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"") == b""
    assert encode_last_chunk([("x-t", "1")]) == b"0\r\nX-T: 1\r\n\r\n"


def test_connect_hands_over_the_rest() -> None:
    reader = HttpRequestReader()
    reader.receive_data(b"CONNECT [::1]:22 HTTP/1.1\r\n\r\nSSH-2.0")
    event = reader.next_event()
    assert isinstance(event, RequestHeadReceived) and event.request.is_connect
    assert event.request.destination() == ("::1", 22)
    assert reader.take_trailing() == b"SSH-2.0"


def test_missing_host_on_http11_is_served() -> None:
    head = one_request(b"GET http://a.test:81/x HTTP/1.1\r\nX: 1\r\n\r\n")
    assert head.request.headers == (("X", "1"),)
    assert head.request.destination() == ("a.test", 81)
    head = one_request(b"GET /x HTTP/1.1\r\n\r\n")
    assert head.request.host == "" and head.request.url_host == ""


def test_oversized_head() -> None:
    reader = HttpRequestReader()
    reader.receive_data(b"GET http://a/ HTTP/1.1\r\nX: " + b"a" * HEAD_MAX_BYTES)
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


@pytest.mark.parametrize(
    "data",
    [
        b"GET\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / SPDY/3\r\nHost: a\r\n\r\n",
        b"GET http://a.test:8x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET a.test/x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_malformed(data: bytes) -> None:
    reader = HttpRequestReader()
    reader.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_input_parses_or_raises_remote_error(data: bytes) -> None:
    reader = HttpRequestReader()
    try:
        for chunk in (b"GET http://a/ HTTP/1.1\r\n" + data, b""):
            reader.receive_data(chunk)
            for event in drain(reader):
                if isinstance(event, RequestHeadReceived):
                    plan_forward_request(event.request, chunked=event.chunked, length=event.length)
    except RemoteProtocolError:
        pass


# -- hosts, URIs, names, auth ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("example.test:443", ("example.test", 443)),
        ("127.0.0.1", ("127.0.0.1", 80)),
        ("[::1]:22", ("::1", 22)),
        ("[::1]", ("::1", 80)),
        ("a:", ("a", 80)),
        ("a:0x50", ("a", 80)),
        ("a:010", ("a", 8)),
    ],
)
def test_parse_proxy_host(raw: str, expected: tuple[str, int]) -> None:
    assert parse_proxy_host(raw, 80) == expected


@pytest.mark.parametrize("raw", ["a:b:c", "[::1", "[::1]x", "a:65536", "a:1_0", "", ":80"])
def test_parse_proxy_host_errors(raw: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_proxy_host(raw, 80)


def test_https_default_port_and_userinfo() -> None:
    request = make_proxy_request("GET", "https://user:pw@a.test", "1.1", [])
    assert request.destination() == ("a.test", 443)
    assert request.request_uri == "/"


@pytest.mark.parametrize(
    "raw,query,expected",
    [
        ("/a/b", None, "/a/b"),
        ("", None, "/"),
        ("", "", "/?"),
        ("/a|b", "x=|", "/a%7Cb?x=|"),
        ("/%7e!*()", None, "/%7e!*()"),
        ('/a b"', None, "/a%20b%22"),
        ("/\xc3\xa9", None, "/%C3%A9"),  # bytes of a target arrive as latin-1 text
    ],
)
def test_request_uri_as_go_writes_it(raw: str, query: str | None, expected: str) -> None:
    assert go_request_uri(raw, query) == expected


def test_canonical_header_name() -> None:
    assert canonical_header_name("x-FOO-bar") == "X-Foo-Bar"
    assert canonical_header_name("www-authenticate") == "Www-Authenticate"
    assert canonical_header_name("te") == "Te"
    assert canonical_header_name("x-1a") == "X-1a"


def _auth(value: str) -> ProxyRequest:
    return make_proxy_request("GET", "http://a/", "1.1", [("Proxy-Authorization", value)])


def test_basic_auth_as_4_34_parses_it() -> None:
    accounts = {"alice": "pw:with:colons"}
    token = base64.b64encode(b"alice:pw:with:colons").decode()
    assert check_basic_auth(_auth(f"Basic {token}"), accounts) == "alice"
    # Go checks the exact prefix "Basic ".
    assert check_basic_auth(_auth(f"basic {token}"), accounts) is None
    assert check_basic_auth(_auth(f"Basic  {token}"), accounts) is None
    no = base64.b64encode(b"alice:no").decode()
    assert check_basic_auth(_auth(f"Basic {no}"), accounts) is None
    bare = base64.b64encode(b"alice").decode()
    assert check_basic_auth(_auth(f"Basic {bare}"), accounts) is None
    assert check_basic_auth(_auth("Basic !!!"), accounts) is None
    assert check_basic_auth(make_proxy_request("GET", "http://a/", "1.1", []), accounts) is None


# -- forwarded request: bytes as V2Ray 4.34 wrote them ---------------------------------


def test_forwarded_request_as_4_34() -> None:
    assert forwarded(
        b"GET http://127.0.0.1:1111/a/b?x=1 HTTP/1.1\r\nHost: foo\r\nuser-agent: curl\r\n"
        b"Pragma: no-cache\r\nx-lower: v\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\n"
        b"Connection: x-lower\r\n\r\n"
    ) == (
        b"GET /a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:1111\r\nUser-Agent: curl\r\n"
        b"Cache-Control: no-cache\r\nConnection: close\r\nKeep-Alive: 5\r\nPragma: no-cache\r\n\r\n"
    )
    assert forwarded(b"GET http://h:2/second HTTP/1.0\r\nContent-Length: 0\r\n\r\n") == (
        b"GET /second HTTP/1.1\r\nHost: h:2\r\nConnection: close\r\n\r\n"
    )
    assert forwarded(
        b"PUT http://h/b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nUser-Agent:\r\n\r\nbody"
    ) == (b"PUT /b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
    assert forwarded(b"POST http://h/a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n") == (
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


def test_connection_cannot_strip_framing_or_host() -> None:
    head = forwarded(
        b"POST http://[::1]/ HTTP/1.1\r\nHost: [::1]\r\nConnection: content-length, host\r\n"
        b"Content-Length: 1\r\n\r\nx"
    )
    assert (
        head == b"POST / HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"
    )


# -- response reader and the client response -------------------------------------------


def respond(method: str, data: bytes) -> bytes:
    """What the client gets for origin bytes ``data`` (then EOF)."""
    reader = HttpResponseReader(method)
    out = b""
    plan = None
    for chunk in (data, b""):
        reader.receive_data(chunk)
        while (event := reader.next_event()) is not None:
            if isinstance(event, ResponseHeadReceived):
                plan = plan_client_response(event.response, method)
                out += plan.head
            elif isinstance(event, ResponseBodyReceived):
                assert plan is not None
                out += encode_chunk(event.data) if plan.body is BodyMode.CHUNKED else event.data
            elif isinstance(event, ResponseEnded):
                assert plan is not None
                if plan.body is BodyMode.CHUNKED:
                    out += encode_last_chunk(event.trailers if plan.trailers else ())
                out += plan.tail
            elif isinstance(event, InformationalReceived):
                out += b"<1xx>"
    return out


@pytest.mark.parametrize(
    "method,origin,client",
    [
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nx-b: 1\r\nContent-Length: 3\r\nconnection: close\r\n"
            b"keep-alive: x\r\nA-Z: 2\r\n\r\none",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nA-Z: 2\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=4\r\nProxy-Connection: keep-alive\r\nX-B: 1\r\n\r\none",
        ),
        (
            "GET",
            b"HTTP/1.1 404 Not Here\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Here\r\nConnection: keep-alive\r\nKeep-Alive: timeout=4\r\n"
            b"Proxy-Connection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "POST",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-T: 9\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 9\r\n\r\n",
        ),
        (
            "PUT",
            b"HTTP/1.0 200\r\nfoo: bar\r\n\r\nclose-delimited",
            b"HTTP/1.0 200 200\r\nConnection: close\r\nFoo: bar\r\n\r\nclose-delimited",
        ),
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=4\r\nProxy-Connection: keep-alive\r\n\r\n",
        ),
        (
            "GET",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\nKeep-Alive: timeout=4\r\n"
            b"Proxy-Connection: keep-alive\r\n\r\n",
        ),
        (
            "GET",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
            b"<1xx>HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=4\r\nProxy-Connection: keep-alive\r\n\r\nx",
        ),
    ],
)
def test_client_response_as_4_34(method: str, origin: bytes, client: bytes) -> None:
    assert respond(method, origin) == client
    assert respond(method, origin) == respond_byte_at_a_time(method, origin)


def respond_byte_at_a_time(method: str, data: bytes) -> bytes:
    reader = HttpResponseReader(method)
    out = b""
    plan = None
    for i in range(len(data) + 1):
        reader.receive_data(data[i : i + 1])
        while (event := reader.next_event()) is not None:
            if isinstance(event, ResponseHeadReceived):
                plan = plan_client_response(event.response, method)
                out += plan.head
            elif isinstance(event, ResponseBodyReceived):
                assert plan is not None
                out += encode_chunk(event.data) if plan.body is BodyMode.CHUNKED else event.data
            elif isinstance(event, ResponseEnded):
                assert plan is not None
                if plan.body is BodyMode.CHUNKED:
                    out += encode_last_chunk(event.trailers if plan.trailers else ())
                out += plan.tail
            elif isinstance(event, InformationalReceived):
                out += b"<1xx>"
    # chunk boundaries differ byte-at-a-time; compare de-chunked shape via the head
    return out if plan is None or plan.body is not BodyMode.CHUNKED else respond(method, data)


def test_keep_alive_flags() -> None:
    def plan(data: bytes, method: str = "GET") -> bool:
        reader = HttpResponseReader(method)
        reader.receive_data(data)
        event = reader.next_event()
        assert isinstance(event, ResponseHeadReceived)
        return plan_client_response(event.response, method).keep_alive

    assert plan(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
    assert not plan(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert not plan(b"HTTP/1.1 200 OK\r\n\r\n")
    assert not plan(b"HTTP/1.1 200 OK\r\n\r\n", "HEAD")


def test_cut_or_garbage_response_raises() -> None:
    for data in (b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"):
        reader = HttpResponseReader("GET")
        reader.receive_data(data)
        reader.receive_data(b"")
        with pytest.raises(RemoteProtocolError):
            while reader.next_event() is not None:
                pass


def test_response_reason_text() -> None:
    response = ProxyResponse(
        version="1.1", status=200, status_line="HTTP/1.1 200 ", headers=(), chunked=False
    )
    assert plan_client_response(response, "HEAD").head.startswith(b"HTTP/1.1 200 \r\n")
