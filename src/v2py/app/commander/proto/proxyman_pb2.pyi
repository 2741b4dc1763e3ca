from v2py.app.commander.proto import net_pb2 as _net_pb2
from v2py.app.commander.proto import internet_pb2 as _internet_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KnownProtocols(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HTTP: _ClassVar[KnownProtocols]
    TLS: _ClassVar[KnownProtocols]
HTTP: KnownProtocols
TLS: KnownProtocols

class AllocationStrategy(_message.Message):
    __slots__ = ("type", "concurrency", "refresh")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Always: _ClassVar[AllocationStrategy.Type]
        Random: _ClassVar[AllocationStrategy.Type]
        External: _ClassVar[AllocationStrategy.Type]
    Always: AllocationStrategy.Type
    Random: AllocationStrategy.Type
    External: AllocationStrategy.Type
    class AllocationStrategyConcurrency(_message.Message):
        __slots__ = ("value",)
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: int
        def __init__(self, value: _Optional[int] = ...) -> None: ...
    class AllocationStrategyRefresh(_message.Message):
        __slots__ = ("value",)
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: int
        def __init__(self, value: _Optional[int] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    type: AllocationStrategy.Type
    concurrency: AllocationStrategy.AllocationStrategyConcurrency
    refresh: AllocationStrategy.AllocationStrategyRefresh
    def __init__(self, type: _Optional[_Union[AllocationStrategy.Type, str]] = ..., concurrency: _Optional[_Union[AllocationStrategy.AllocationStrategyConcurrency, _Mapping]] = ..., refresh: _Optional[_Union[AllocationStrategy.AllocationStrategyRefresh, _Mapping]] = ...) -> None: ...

class SniffingConfig(_message.Message):
    __slots__ = ("enabled", "destination_override")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    destination_override: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, enabled: _Optional[bool] = ..., destination_override: _Optional[_Iterable[str]] = ...) -> None: ...

class ReceiverConfig(_message.Message):
    __slots__ = ("port_range", "listen", "allocation_strategy", "stream_settings", "receive_original_destination", "domain_override", "sniffing_settings")
    PORT_RANGE_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STREAM_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_ORIGINAL_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    SNIFFING_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    port_range: _net_pb2.PortRange
    listen: _net_pb2.IPOrDomain
    allocation_strategy: AllocationStrategy
    stream_settings: _internet_pb2.StreamConfig
    receive_original_destination: bool
    domain_override: _containers.RepeatedScalarFieldContainer[KnownProtocols]
    sniffing_settings: SniffingConfig
    def __init__(self, port_range: _Optional[_Union[_net_pb2.PortRange, _Mapping]] = ..., listen: _Optional[_Union[_net_pb2.IPOrDomain, _Mapping]] = ..., allocation_strategy: _Optional[_Union[AllocationStrategy, _Mapping]] = ..., stream_settings: _Optional[_Union[_internet_pb2.StreamConfig, _Mapping]] = ..., receive_original_destination: _Optional[bool] = ..., domain_override: _Optional[_Iterable[_Union[KnownProtocols, str]]] = ..., sniffing_settings: _Optional[_Union[SniffingConfig, _Mapping]] = ...) -> None: ...

class SenderConfig(_message.Message):
    __slots__ = ("via", "stream_settings", "proxy_settings", "multiplex_settings")
    VIA_FIELD_NUMBER: _ClassVar[int]
    STREAM_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PROXY_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLEX_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    via: _net_pb2.IPOrDomain
    stream_settings: _internet_pb2.StreamConfig
    proxy_settings: _internet_pb2.ProxyConfig
    multiplex_settings: MultiplexingConfig
    def __init__(self, via: _Optional[_Union[_net_pb2.IPOrDomain, _Mapping]] = ..., stream_settings: _Optional[_Union[_internet_pb2.StreamConfig, _Mapping]] = ..., proxy_settings: _Optional[_Union[_internet_pb2.ProxyConfig, _Mapping]] = ..., multiplex_settings: _Optional[_Union[MultiplexingConfig, _Mapping]] = ...) -> None: ...

class MultiplexingConfig(_message.Message):
    __slots__ = ("enabled", "concurrency")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    concurrency: int
    def __init__(self, enabled: _Optional[bool] = ..., concurrency: _Optional[int] = ...) -> None: ...
