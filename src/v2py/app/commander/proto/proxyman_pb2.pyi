from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

from v2py.app.commander.proto import internet_pb2 as _internet_pb2
from v2py.app.commander.proto import net_pb2 as _net_pb2

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
        def __init__(self, value: int | None = ...) -> None: ...
    class AllocationStrategyRefresh(_message.Message):
        __slots__ = ("value",)
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: int
        def __init__(self, value: int | None = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    type: AllocationStrategy.Type
    concurrency: AllocationStrategy.AllocationStrategyConcurrency
    refresh: AllocationStrategy.AllocationStrategyRefresh
    def __init__(self, type: AllocationStrategy.Type | str | None = ..., concurrency: AllocationStrategy.AllocationStrategyConcurrency | _Mapping | None = ..., refresh: AllocationStrategy.AllocationStrategyRefresh | _Mapping | None = ...) -> None: ...

class SniffingConfig(_message.Message):
    __slots__ = ("enabled", "destination_override")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    destination_override: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, enabled: bool | None = ..., destination_override: _Iterable[str] | None = ...) -> None: ...

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
    def __init__(self, port_range: _net_pb2.PortRange | _Mapping | None = ..., listen: _net_pb2.IPOrDomain | _Mapping | None = ..., allocation_strategy: AllocationStrategy | _Mapping | None = ..., stream_settings: _internet_pb2.StreamConfig | _Mapping | None = ..., receive_original_destination: bool | None = ..., domain_override: _Iterable[KnownProtocols | str] | None = ..., sniffing_settings: SniffingConfig | _Mapping | None = ...) -> None: ...

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
    def __init__(self, via: _net_pb2.IPOrDomain | _Mapping | None = ..., stream_settings: _internet_pb2.StreamConfig | _Mapping | None = ..., proxy_settings: _internet_pb2.ProxyConfig | _Mapping | None = ..., multiplex_settings: MultiplexingConfig | _Mapping | None = ...) -> None: ...

class MultiplexingConfig(_message.Message):
    __slots__ = ("enabled", "concurrency")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    concurrency: int
    def __init__(self, enabled: bool | None = ..., concurrency: int | None = ...) -> None: ...
