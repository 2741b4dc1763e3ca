from v2py.app.geo_proto import geodata_pb2 as _geodata_pb2
from v2py.app.commander.proto import net_pb2 as _net_pb2
from v2py.app.commander.proto import port_list_pb2 as _port_list_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutingRule(_message.Message):
    __slots__ = ("tag", "balancing_tag", "domain", "cidr", "geoip", "port_range", "port_list", "network_list", "networks", "source_cidr", "source_geoip", "source_port_list", "user_email", "inbound_tag", "protocol", "attributes")
    TAG_FIELD_NUMBER: _ClassVar[int]
    BALANCING_TAG_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CIDR_FIELD_NUMBER: _ClassVar[int]
    GEOIP_FIELD_NUMBER: _ClassVar[int]
    PORT_RANGE_FIELD_NUMBER: _ClassVar[int]
    PORT_LIST_FIELD_NUMBER: _ClassVar[int]
    NETWORK_LIST_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CIDR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_GEOIP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PORT_LIST_FIELD_NUMBER: _ClassVar[int]
    USER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    INBOUND_TAG_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    tag: str
    balancing_tag: str
    domain: _containers.RepeatedCompositeFieldContainer[_geodata_pb2.Domain]
    cidr: _containers.RepeatedCompositeFieldContainer[_geodata_pb2.CIDR]
    geoip: _containers.RepeatedCompositeFieldContainer[_geodata_pb2.GeoIP]
    port_range: _net_pb2.PortRange
    port_list: _port_list_pb2.PortList
    network_list: _net_pb2.NetworkList
    networks: _containers.RepeatedScalarFieldContainer[_net_pb2.Network]
    source_cidr: _containers.RepeatedCompositeFieldContainer[_geodata_pb2.CIDR]
    source_geoip: _containers.RepeatedCompositeFieldContainer[_geodata_pb2.GeoIP]
    source_port_list: _port_list_pb2.PortList
    user_email: _containers.RepeatedScalarFieldContainer[str]
    inbound_tag: _containers.RepeatedScalarFieldContainer[str]
    protocol: _containers.RepeatedScalarFieldContainer[str]
    attributes: str
    def __init__(self, tag: _Optional[str] = ..., balancing_tag: _Optional[str] = ..., domain: _Optional[_Iterable[_Union[_geodata_pb2.Domain, _Mapping]]] = ..., cidr: _Optional[_Iterable[_Union[_geodata_pb2.CIDR, _Mapping]]] = ..., geoip: _Optional[_Iterable[_Union[_geodata_pb2.GeoIP, _Mapping]]] = ..., port_range: _Optional[_Union[_net_pb2.PortRange, _Mapping]] = ..., port_list: _Optional[_Union[_port_list_pb2.PortList, _Mapping]] = ..., network_list: _Optional[_Union[_net_pb2.NetworkList, _Mapping]] = ..., networks: _Optional[_Iterable[_Union[_net_pb2.Network, str]]] = ..., source_cidr: _Optional[_Iterable[_Union[_geodata_pb2.CIDR, _Mapping]]] = ..., source_geoip: _Optional[_Iterable[_Union[_geodata_pb2.GeoIP, _Mapping]]] = ..., source_port_list: _Optional[_Union[_port_list_pb2.PortList, _Mapping]] = ..., user_email: _Optional[_Iterable[str]] = ..., inbound_tag: _Optional[_Iterable[str]] = ..., protocol: _Optional[_Iterable[str]] = ..., attributes: _Optional[str] = ...) -> None: ...

class BalancingRule(_message.Message):
    __slots__ = ("tag", "outbound_selector")
    TAG_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    tag: str
    outbound_selector: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tag: _Optional[str] = ..., outbound_selector: _Optional[_Iterable[str]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("domain_strategy", "rule", "balancing_rule")
    class DomainStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AsIs: _ClassVar[Config.DomainStrategy]
        UseIp: _ClassVar[Config.DomainStrategy]
        IpIfNonMatch: _ClassVar[Config.DomainStrategy]
        IpOnDemand: _ClassVar[Config.DomainStrategy]
    AsIs: Config.DomainStrategy
    UseIp: Config.DomainStrategy
    IpIfNonMatch: Config.DomainStrategy
    IpOnDemand: Config.DomainStrategy
    DOMAIN_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    BALANCING_RULE_FIELD_NUMBER: _ClassVar[int]
    domain_strategy: Config.DomainStrategy
    rule: _containers.RepeatedCompositeFieldContainer[RoutingRule]
    balancing_rule: _containers.RepeatedCompositeFieldContainer[BalancingRule]
    def __init__(self, domain_strategy: _Optional[_Union[Config.DomainStrategy, str]] = ..., rule: _Optional[_Iterable[_Union[RoutingRule, _Mapping]]] = ..., balancing_rule: _Optional[_Iterable[_Union[BalancingRule, _Mapping]]] = ...) -> None: ...
