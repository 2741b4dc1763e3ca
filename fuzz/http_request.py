"""Fuzz target: the HTTP proxy inbound's request side and response re-writing
(``v2py.protocol.http_proxy``; v2ray-core ``proxy/http/server.go``).

The target runs what ``proxy/http_inbound.py`` runs on client bytes: the request
reader (h11 underneath), Basic auth, the destination, the forwarded head, the body
events, the next pipelined request; and on origin bytes: the response reader and the
head/body re-writing sent back to the client.

Invariant: arbitrary bytes cut into arbitrary reads yield only events or
:class:`~v2py.errors.RemoteProtocolError` (nothing else escapes any of those calls);
a request head never buffers past ``HEAD_MAX_BYTES``; forwarded body bytes never
exceed what came in.

Run by hand: ``python -m fuzz.http_request -max_total_time=300``.
"""

from __future__ import annotations

from fuzz._harness import FuzzInput, bounded, check, instrumented, main, split

with instrumented("v2py", "h11"):
    from v2py.errors import RemoteProtocolError
    from v2py.protocol.http_proxy import (
        HEAD_MAX_BYTES,
        BodyMode,
        ClientClosed,
        HttpRequestReader,
        HttpResponseReader,
        InformationalReceived,
        RequestBodyReceived,
        RequestEnded,
        RequestHeadReceived,
        ResponseBodyReceived,
        ResponseEnded,
        ResponseHeadReceived,
        check_basic_auth,
        encode_chunk,
        encode_informational,
        encode_last_chunk,
        plan_client_response,
        plan_forward_request,
    )

ACCOUNTS = {"user": "pass", "": ""}
#: Requests served per input at most (pipelining); keeps one run short.
MAX_REQUESTS = 16
#: Slack over the client's bytes for what the forwarded heads and re-chunking add.
HEAD_SLACK = 64 * 1024


def _requests(raw: bytes, inp: FuzzInput, transparent: bool, eof: bool) -> str:
    """Serve every request in ``raw``; return the last request's method."""
    reader = HttpRequestReader()
    reads = split(raw, inp)
    if eof:
        reads.append(b"")
    fed = 0
    body = 0
    method = "GET"
    served = 0
    try:
        while served < MAX_REQUESTS:
            event = reader.next_event()
            if event is None:
                if not reads:
                    return method
                data = reads.pop(0)
                fed += len(data)
                reader.receive_data(data)
                continue
            if isinstance(event, ClientClosed):
                return method
            if isinstance(event, RequestHeadReceived):
                request = event.request
                method = request.method
                check_basic_auth(request, ACCOUNTS)
                check(request.keep_alive in (True, False), "keep_alive")
                if request.is_connect:
                    host, port = request.destination()
                    check(0 <= port <= 0xFFFF, f"port {port}")
                    reader.take_trailing()
                    return method
                if request.url_host or transparent:
                    host, port = request.destination()
                    check(0 <= port <= 0xFFFF, f"port {port}")
                    plan = plan_forward_request(request, chunked=event.chunked, length=event.length)
                    check(plan.head.endswith(b"\r\n\r\n"), "forwarded head not terminated")
                elif request.host:
                    request.destination()
                continue
            if isinstance(event, RequestBodyReceived):
                body += len(event.data)
                encode_chunk(event.data)
                continue
            check(isinstance(event, RequestEnded), f"unexpected event {event!r}")
            assert isinstance(event, RequestEnded)
            encode_last_chunk(event.trailers)
            served += 1
            reader.start_next()
    except RemoteProtocolError:
        pass
    bounded(body, fed, factor=1, slack=0, what="request body")
    return method


def _response(raw: bytes, inp: FuzzInput, method: str) -> None:
    reader = HttpResponseReader(method)
    reads = split(raw, inp)
    reads.append(b"")
    written = 0
    fed = 0
    plan = None
    try:
        for data in reads:
            fed += len(data)
            reader.receive_data(data)
            while (event := reader.next_event()) is not None:
                if isinstance(event, InformationalReceived):
                    written += len(encode_informational(event.response))
                elif isinstance(event, ResponseHeadReceived):
                    plan = plan_client_response(event.response, method)
                    written += len(plan.head)
                elif isinstance(event, ResponseBodyReceived):
                    check(plan is not None, "body before head")
                    assert plan is not None
                    if plan.body is BodyMode.CHUNKED:
                        written += len(encode_chunk(event.data))
                    elif plan.body is BodyMode.RAW:
                        written += len(event.data)
                else:
                    check(isinstance(event, ResponseEnded), f"unexpected event {event!r}")
                    assert isinstance(event, ResponseEnded)
                    check(plan is not None, "end before head")
                    written += len(encode_last_chunk(event.trailers))
                    return
    except RemoteProtocolError:
        pass
    finally:
        bounded(written, fed, factor=2, slack=HEAD_SLACK, what="response")


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    flags = inp.u8()
    request = inp.take(inp.u16() % (2 * HEAD_MAX_BYTES))
    response = inp.take(inp.u16())
    method = _requests(request, inp, transparent=bool(flags & 1), eof=bool(flags & 2))
    if flags & 4:
        method = inp.choice(("GET", "HEAD", "POST", "CONNECT", "OPTIONS"))
    _response(response, inp, method)


def seeds() -> list[bytes]:
    def framed(flags: int, request: bytes, response: bytes, tail: bytes = b"") -> bytes:
        return (
            bytes([flags])
            + len(request).to_bytes(2, "big")
            + request
            + len(response).to_bytes(2, "big")
            + response
            + tail
        )

    get = b"GET http://example.test/a?b HTTP/1.1\r\nHost: example.test\r\n"
    return [
        framed(
            0,
            get + b"Proxy-Connection: keep-alive\r\n\r\n" + get + b"\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        framed(
            2,
            b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n\x16\x03\x01",
            b"",
        ),
        framed(
            0,
            b"POST http://[::1]:8080/p%20q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-T\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-U\r\n\r\n2\r\nhi\r\n0\r\nX-U: 2\r\n\r\n",
        ),
        framed(
            1,
            b"GET / HTTP/1.0\r\nHost: a.test:81\r\nPragma: no-cache\r\n\r\n",
            b"HTTP/1.0 200\r\n\r\nbody",
            b"\x04\x01",
        ),
        framed(
            3,
            b"HEAD http://a/ HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
