"""Addresses and destinations (v2ray-core common/net)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass


class Network(enum.Enum):
    """Transport-level network of a destination."""

    TCP = "tcp"
    UDP = "udp"


def is_ip(address: str) -> bool:
    """True when ``address`` is an IPv4 or IPv6 literal (no brackets)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def normalize_address(address: str) -> str:
    """Strip IPv6 brackets and canonicalise IP literals; domains are returned as given."""
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a connection should go: network, address (IP literal or domain), port."""

    network: Network
    address: str
    port: int

    @property
    def is_domain(self) -> bool:
        return not is_ip(self.address)

    def host_port(self) -> str:
        """``host:port`` with IPv6 literals bracketed."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def __str__(self) -> str:
        return f"{self.network.value}:{self.host_port()}"

    def with_address(self, address: str) -> Destination:
        return Destination(self.network, normalize_address(address), self.port)


def tcp(address: str, port: int) -> Destination:
    """A TCP destination."""
    return Destination(Network.TCP, normalize_address(address), port)


def udp(address: str, port: int) -> Destination:
    """A UDP destination."""
    return Destination(Network.UDP, normalize_address(address), port)
