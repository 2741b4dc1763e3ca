"""The ``dns`` outbound's message handling (v2ray-core 4.34 ``proxy/dns/dns.go`` and
``common/protocol/dns/io.go``), pure: bytes in, messages and answers out.

* Over TCP a message is a 2-byte big-endian length and that many bytes; a length
  above 2048 (4.34's ``buf.Size``) ends the connection. Over UDP a datagram is a
  message. An empty message is not written.
* A message is an *IP query* when its 12-byte header and its first question parse and
  that question asks for A or AAAA (4.34 ``parseIPQuery``: the class, the QR bit,
  the opcode and the other questions are not looked at). Everything else is
  forwarded as it is.
* The answer to an IP query: the query's ID; QR, AA, RD and RA set, opcode 0, the
  rcode of the lookup; the question (the query's name, the asked type, class IN); one
  record per address with TTL 600, the name compressed to the question's; no
  authority or additional records, no EDNS.

The DNS wire format itself is dnspython's (names, rdata, compression).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from v2py.protocol.framing import LengthPrefixed

if TYPE_CHECKING:
    import dns.name

__all__ = [
    "ANSWER_TTL_S",
    "MAX_TCP_MESSAGE_BYTES",
    "TYPE_A",
    "TYPE_AAAA",
    "IpQuery",
    "TcpMessages",
    "answer",
    "frame_tcp",
    "parse_ip_query",
]

#: 4.34's ``buf.Size``: a longer TCP message is an error (``message size too large``).
MAX_TCP_MESSAGE_BYTES = 2048
#: The TTL of every answer record (4.34 ``handleIPQuery``).
ANSWER_TTL_S = 600
TYPE_A = 1
TYPE_AAAA = 28
_HEADER_BYTES = 12
_CLASS_IN = 1
# QR | AA | RD | RA (4.34 sets exactly these on every answer).
_ANSWER_FLAGS = 0x8000 | 0x0400 | 0x0100 | 0x0080
_LENGTH = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class IpQuery:
    """An A or AAAA question: ``domain`` is the name as text with its final dot."""

    id: int
    domain: str
    qtype: int
    #: The question's name as dnspython parsed it (answers repeat it byte for byte).
    name: dns.name.Name


def parse_ip_query(message: bytes) -> IpQuery | None:
    """The A/AAAA question of ``message``, or None (not one, or not parseable)."""
    if len(message) < _HEADER_BYTES:
        return None
    query_id, _, qdcount = struct.unpack_from("!HHH", message)
    if qdcount == 0:
        return None
    import dns.exception
    import dns.name

    try:
        name, used = dns.name.from_wire(message, _HEADER_BYTES)
    except (dns.exception.DNSException, ValueError, IndexError):
        return None
    end = _HEADER_BYTES + used
    if len(message) < end + 4:
        return None
    qtype = struct.unpack_from("!H", message, end)[0]
    if qtype not in (TYPE_A, TYPE_AAAA):
        return None
    return IpQuery(query_id, name.to_text(), qtype, name)


def answer(query: IpQuery, rcode: int, ips: tuple[bytes, ...]) -> bytes:
    """The answer message to ``query``: ``ips`` (packed; those of the asked family are
    written, in order, repeats included) under ``rcode``."""
    import dns.message
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    from dns.rdtypes.IN.A import A
    from dns.rdtypes.IN.AAAA import AAAA

    kind = dns.rdatatype.RdataType.make(query.qtype)
    size, make = (4, A) if query.qtype == TYPE_A else (16, AAAA)
    message = dns.message.Message(id=query.id)
    message.flags = _ANSWER_FLAGS | (rcode & 0xF)
    message.question.append(dns.rrset.RRset(query.name, dns.rdataclass.IN, kind))
    for ip in ips:
        if len(ip) != size:
            continue
        # One RRset per record: a set would drop a repeated address (4.34 writes it).
        record = dns.rrset.RRset(query.name, dns.rdataclass.IN, kind)
        record.add(make(dns.rdataclass.IN, kind, str(ipaddress.ip_address(ip))), ANSWER_TTL_S)
        message.answer.append(record)
    return message.to_wire(max_size=0xFFFF)


def frame_tcp(message: bytes) -> bytes:
    """``message`` as written on a TCP link (nothing for an empty one)."""
    if not message:
        return b""
    return _LENGTH.pack(len(message)) + message


class TcpMessages(LengthPrefixed):
    """Splits a TCP link's bytes into messages; a length above
    :data:`MAX_TCP_MESSAGE_BYTES` raises ValueError."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(MAX_TCP_MESSAGE_BYTES)
