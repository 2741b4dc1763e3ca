from v2py.app.geo_proto import geodata_pb2 as _geodata_pb2
from v2py.app.commander.proto import net_pb2 as _net_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DomainMatchingType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Full: _ClassVar[DomainMatchingType]
    Subdomain: _ClassVar[DomainMatchingType]
    Keyword: _ClassVar[DomainMatchingType]
    Regex: _ClassVar[DomainMatchingType]
Full: DomainMatchingType
Subdomain: DomainMatchingType
Keyword: DomainMatchingType
Regex: DomainMatchingType

class NameServer(_message.Message):
    __slots__ = ("address", "client_ip", "prioritized_domain", "geoip", "original_rules")
    class PriorityDomain(_message.Message):
        __slots__ = ("type", "domain")
        TYPE_FIELD_NUMBER: _ClassVar[int]
        DOMAIN_FIELD_NUMBER: _ClassVar[int]
        type: DomainMatchingType
        domain: str
        def __init__(self, type: _Optional[_Union[DomainMatchingType, str]] = ..., domain: _Optional[str] = ...) -> None: ...
    class OriginalRule(_message.Message):
        __slots__ = ("rule", "size")
        RULE_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        rule: str
        size: int
        def __init__(self, rule: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    PRIORITIZED_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    GEOIP_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_RULES_FIELD_NUMBER: _ClassVar[int]
    address: _net_pb2.Endpoint
    client_ip: bytes
    prioritized_domain: _containers.RepeatedCompositeFieldContainer[NameServer.PriorityDomain]
    geoip: _containers.RepeatedCompositeFieldContainer[_geodata_pb2.GeoIP]
    original_rules: _containers.RepeatedCompositeFieldContainer[NameServer.OriginalRule]
    def __init__(self, address: _Optional[_Union[_net_pb2.Endpoint, _Mapping]] = ..., client_ip: _Optional[bytes] = ..., prioritized_domain: _Optional[_Iterable[_Union[NameServer.PriorityDomain, _Mapping]]] = ..., geoip: _Optional[_Iterable[_Union[_geodata_pb2.GeoIP, _Mapping]]] = ..., original_rules: _Optional[_Iterable[_Union[NameServer.OriginalRule, _Mapping]]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("NameServers", "name_server", "Hosts", "client_ip", "static_hosts", "tag")
    class HostsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _net_pb2.IPOrDomain
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_net_pb2.IPOrDomain, _Mapping]] = ...) -> None: ...
    class HostMapping(_message.Message):
        __slots__ = ("type", "domain", "ip", "proxied_domain")
        TYPE_FIELD_NUMBER: _ClassVar[int]
        DOMAIN_FIELD_NUMBER: _ClassVar[int]
        IP_FIELD_NUMBER: _ClassVar[int]
        PROXIED_DOMAIN_FIELD_NUMBER: _ClassVar[int]
        type: DomainMatchingType
        domain: str
        ip: _containers.RepeatedScalarFieldContainer[bytes]
        proxied_domain: str
        def __init__(self, type: _Optional[_Union[DomainMatchingType, str]] = ..., domain: _Optional[str] = ..., ip: _Optional[_Iterable[bytes]] = ..., proxied_domain: _Optional[str] = ...) -> None: ...
    NAMESERVERS_FIELD_NUMBER: _ClassVar[int]
    NAME_SERVER_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    STATIC_HOSTS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    NameServers: _containers.RepeatedCompositeFieldContainer[_net_pb2.Endpoint]
    name_server: _containers.RepeatedCompositeFieldContainer[NameServer]
    Hosts: _containers.MessageMap[str, _net_pb2.IPOrDomain]
    client_ip: bytes
    static_hosts: _containers.RepeatedCompositeFieldContainer[Config.HostMapping]
    tag: str
    def __init__(self, NameServers: _Optional[_Iterable[_Union[_net_pb2.Endpoint, _Mapping]]] = ..., name_server: _Optional[_Iterable[_Union[NameServer, _Mapping]]] = ..., Hosts: _Optional[_Mapping[str, _net_pb2.IPOrDomain]] = ..., client_ip: _Optional[bytes] = ..., static_hosts: _Optional[_Iterable[_Union[Config.HostMapping, _Mapping]]] = ..., tag: _Optional[str] = ...) -> None: ...
