from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Network(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Unknown: _ClassVar[Network]
    RawTCP: _ClassVar[Network]
    TCP: _ClassVar[Network]
    UDP: _ClassVar[Network]
    UNIX: _ClassVar[Network]
Unknown: Network
RawTCP: Network
TCP: Network
UDP: Network
UNIX: Network

class IPOrDomain(_message.Message):
    __slots__ = ("ip", "domain")
    IP_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ip: bytes
    domain: str
    def __init__(self, ip: _Optional[bytes] = ..., domain: _Optional[str] = ...) -> None: ...

class PortRange(_message.Message):
    __slots__ = ("From", "To")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    From: int
    To: int
    def __init__(self, From: _Optional[int] = ..., To: _Optional[int] = ...) -> None: ...

class NetworkList(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: _containers.RepeatedScalarFieldContainer[Network]
    def __init__(self, network: _Optional[_Iterable[_Union[Network, str]]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("network", "address", "port")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    network: Network
    address: IPOrDomain
    port: int
    def __init__(self, network: _Optional[_Union[Network, str]] = ..., address: _Optional[_Union[IPOrDomain, _Mapping]] = ..., port: _Optional[int] = ...) -> None: ...
