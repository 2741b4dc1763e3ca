"""The ``dns`` outbound's shell (proxy/dns_outbound.py) with a fake name server and a
fake forwarding outbound; the wire comparison with 4.34 is
tests/interop/test_dns_outbound_interop.py."""

from __future__ import annotations

import asyncio
import ipaddress

import dns.message
import dns.rcode
import pytest

from v2py.app.chain import stream_pair
from v2py.app.dns import DnsClient, DnsLookupError
from v2py.app.dns import _Server as Server
from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.common.net import Destination, Network, tcp, udp
from v2py.errors import RemoteProtocolError
from v2py.protocol.dns_proxy import TcpMessages, frame_tcp
from v2py.proxy import dns_outbound
from v2py.proxy.dns_outbound import DnsOutbound
from v2py.transport.stream import Stream

TIMEOUT_S = 5.0


class FakeNameServer:
    """Answers from ``answers``: a tuple of IP texts, or an exception to raise;
    names in ``hang`` never answer."""

    name = "fake"

    def __init__(self, answers: dict[str, tuple[str, ...] | Exception]) -> None:
        self.answers = answers
        self.hang: set[str] = set()
        self.asked: list[tuple[str, bool, bool]] = []

    async def query(self, domain: str, *, ipv4: bool, ipv6: bool) -> tuple[bytes, ...]:
        self.asked.append((domain, ipv4, ipv6))
        if domain in self.hang:
            await asyncio.Event().wait()
        found = self.answers.get(domain, ())
        if isinstance(found, Exception):
            raise found
        ips = tuple(ipaddress.ip_address(a).packed for a in found)
        return tuple(ip for ip in ips if (len(ip) == 4 and ipv4) or (len(ip) == 16 and ipv6))

    async def aclose(self) -> None:
        return None


class EchoForward:
    """A forwarding outbound that answers every message with b"fwd:" + message and
    records the destinations it was asked for."""

    tag = "fwd"

    def __init__(self) -> None:
        self.targets: list[Destination] = []

    async def handle(self, session: Session, stream: Stream) -> None:
        assert session.destination is not None
        self.targets.append(session.destination)
        messages = TcpMessages()
        while data := await stream.read():
            for message in messages.feed(data):
                stream.write(frame_tcp(b"fwd:" + message))

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        assert session.destination is not None
        self.targets.append(session.destination)
        while (message := await link.recv()) is not None:
            link.send(b"fwd:" + message)


def outbound(
    server: FakeNameServer, *, tag: str = "", forward: EchoForward | None = None, **kw: object
) -> DnsOutbound:
    client = DnsClient(hosts=None, servers=[Server(server, (), None)], tag=tag)
    return DnsOutbound(tag="dns-out", client=client, forward=forward or EchoForward(), **kw)  # type: ignore[arg-type]


def query(name: str, rdtype: str, qid: int = 1) -> bytes:
    return dns.message.make_query(name, rdtype, id=qid).to_wire()


async def udp_session(
    out: DnsOutbound, session: Session, messages: list[bytes], want: int
) -> list[bytes]:
    replies: list[bytes] = []
    got = asyncio.Event()

    def back(data: bytes) -> None:
        replies.append(data)
        if len(replies) >= want:
            got.set()

    link = PacketLink(back)
    task = asyncio.create_task(out.handle_packets(session, link))
    for message in messages:
        link.push(message)
    async with asyncio.timeout(TIMEOUT_S):
        if want:
            await got.wait()
        else:
            await asyncio.sleep(0.05)
        link.close()
        await task
    return replies


def session(dest: Destination, inbound_tag: str = "dns-in", internal: bool = False) -> Session:
    return Session(
        inbound_tag=inbound_tag, source=("127.0.0.1", 5000), destination=dest, internal=internal
    )


def parsed(reply: bytes) -> tuple[int, list[str]]:
    message = dns.message.from_wire(reply)
    return message.rcode(), [r.to_text() for rrset in message.answer for r in rrset]


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (("10.0.0.1", "10.0.0.2"), (dns.rcode.NOERROR, ["10.0.0.1", "10.0.0.2"])),
        (DnsLookupError("nx", rcode=3), (dns.rcode.NXDOMAIN, [])),
        (DnsLookupError("empty", empty=True), (dns.rcode.NOERROR, [])),
        (DnsLookupError("timeout", retry_next=True), None),
        (DnsLookupError("refused by the system"), None),
        ((), None),
    ],
    ids=["ips", "rcode", "empty", "timeout", "other-failure", "nothing"],
)
async def test_lookup_results_as_4_34_answers_them(
    found: tuple[str, ...] | Exception, expected: tuple[int, list[str]] | None
) -> None:
    server = FakeNameServer({"a.test": found})
    out = outbound(server)
    replies = await udp_session(
        out, session(udp("1.1.1.1", 53)), [query("a.test", "A")], 1 if expected else 0
    )
    assert [parsed(r) for r in replies] == ([expected] if expected else [])
    assert server.asked == [("a.test", True, False)]


async def test_other_questions_are_forwarded_to_the_destination_or_the_override() -> None:
    forward = EchoForward()
    out = outbound(FakeNameServer({}), forward=forward)
    mx = query("a.test", "MX")
    assert await udp_session(out, session(udp("1.1.1.1", 53)), [mx, b"junk"], 2) == [
        b"fwd:" + mx,
        b"fwd:junk",
    ]
    assert forward.targets == [udp("1.1.1.1", 53)]  # one connection for both

    forward = EchoForward()
    out = outbound(
        FakeNameServer({}), forward=forward, network=Network.TCP, address="9.9.9.9", port=5353
    )
    assert await udp_session(out, session(udp("1.1.1.1", 53)), [mx], 1) == [b"fwd:" + mx]
    assert forward.targets == [tcp("9.9.9.9", 5353)]


@pytest.mark.parametrize(
    ("dns_tag", "inbound_tag", "internal", "own"),
    [
        ("dns", "dns", True, True),
        ("dns", "dns", False, True),  # an inbound tagged like dns.tag counts too (4.34)
        ("dns", "other", True, False),
        ("", "", True, True),  # no dns.tag: 4.34's random tag, only its own queries
        ("", "", False, False),
    ],
)
async def test_the_dns_clients_own_queries_are_forwarded_not_answered(
    dns_tag: str, inbound_tag: str, internal: bool, own: bool
) -> None:
    server = FakeNameServer({"a.test": ("10.0.0.1",)})
    out = outbound(server, tag=dns_tag)
    a = query("a.test", "A")
    replies = await udp_session(out, session(udp("1.1.1.1", 53), inbound_tag, internal), [a], 1)
    assert (replies == [b"fwd:" + a]) is own
    assert bool(server.asked) is not own


async def test_tcp_session_frames_both_ways_and_forwards_over_tcp() -> None:
    forward = EchoForward()
    out = outbound(FakeNameServer({"a.test": ("10.0.0.1",)}), forward=forward)
    near, far = stream_pair()
    task = asyncio.create_task(out.handle(session(tcp("1.1.1.1", 53)), far))
    mx = query("a.test", "MX", 2)
    near.write(frame_tcp(query("a.test", "A", 1)) + frame_tcp(mx))
    reader = TcpMessages()
    got: list[bytes] = []
    async with asyncio.timeout(TIMEOUT_S):
        while len(got) < 2:
            got += reader.feed(await near.read())
        near.write_eof()
        await task
    assert b"fwd:" + mx in got
    answers = [g for g in got if not g.startswith(b"fwd:")]
    assert [parsed(a) for a in answers] == [(dns.rcode.NOERROR, ["10.0.0.1"])]
    assert forward.targets == [tcp("1.1.1.1", 53)]


async def test_tcp_message_too_large_ends_the_session() -> None:
    out = outbound(FakeNameServer({}))
    near, far = stream_pair()
    near.write(b"\x08\x01")
    with pytest.raises(RemoteProtocolError, match="too large"):
        async with asyncio.timeout(TIMEOUT_S):
            await out.handle(session(tcp("1.1.1.1", 53)), far)


async def test_waiting_lookups_are_bounded_and_cancelled_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dns_outbound, "MAX_PENDING_LOOKUPS", 4)
    server = FakeNameServer({})
    server.hang.add("slow.test")
    out = outbound(server)
    await udp_session(
        out, session(udp("1.1.1.1", 53)), [query("slow.test", "A", i) for i in range(10)], 0
    )
    assert len(server.asked) == 4


async def test_an_ended_forward_connection_is_dialled_again() -> None:
    class OneShot(EchoForward):
        async def handle_packets(self, session: Session, link: PacketLink) -> None:
            self.targets.append(session.destination)  # type: ignore[arg-type]
            message = await link.recv()
            if message is not None:
                link.send(b"fwd:" + message)

    forward = OneShot()
    out = outbound(FakeNameServer({}), forward=forward)
    replies = await _slow_udp(out, [b"one", b"two"])
    assert replies == [b"fwd:one", b"fwd:two"]
    assert len(forward.targets) == 2


async def _slow_udp(out: DnsOutbound, messages: list[bytes]) -> list[bytes]:
    replies: list[bytes] = []
    link = PacketLink(replies.append)
    task = asyncio.create_task(out.handle_packets(session(udp("1.1.1.1", 53)), link))
    async with asyncio.timeout(TIMEOUT_S):
        for message in messages:
            count = len(replies)
            link.push(message)
            while len(replies) == count:
                await asyncio.sleep(0.01)
        link.close()
        await task
    return replies


async def test_counters_count_only_forwarded_bytes_as_4_34() -> None:
    """4.34 counts an outbound's traffic on what it dials: answered questions cost
    nothing, a forwarded one counts its bytes up and the reply's down."""
    import json

    from tests.app.test_dns import dns_server
    from v2py.config.load import load_config
    from v2py.instance import Instance

    async with dns_server({"a.test": ["10.0.0.1"]}) as fake:
        data = {
            "stats": {},
            "policy": {"system": {"statsOutboundUplink": True, "statsOutboundDownlink": True}},
            "dns": {"hosts": {"hosted.test": "10.0.0.9"}},
            "outbounds": [{"tag": "dns-out", "protocol": "dns"}],
        }
        loaded = load_config([("t.json", json.dumps(data))], {})
        instance = Instance(loaded.config, env={})
        out = instance.outbounds.get("dns-out")
        assert out is not None and instance.stats_manager is not None
        a = query("hosted.test", "A", 1)
        mx = query("a.test", "MX", 2)
        try:
            replies = await udp_session(out, session(udp("127.0.0.1", fake.port)), [a, mx], 2)
        finally:
            await instance.close()
        forwarded = [r for r in replies if dns.message.from_wire(r).id == 2]
        assert len(replies) == 2 and len(forwarded) == 1
        counts = dict(instance.stats_manager.query("outbound>>>dns-out"))
        assert counts == {
            "outbound>>>dns-out>>>traffic>>>uplink": len(mx),
            "outbound>>>dns-out>>>traffic>>>downlink": len(forwarded[0]),
        }
