from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DestinationOverride(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: _protocol_pb2.ServerEndpoint
    def __init__(self, server: _Optional[_Union[_protocol_pb2.ServerEndpoint, _Mapping]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("domain_strategy", "timeout", "destination_override", "user_level")
    class DomainStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AS_IS: _ClassVar[Config.DomainStrategy]
        USE_IP: _ClassVar[Config.DomainStrategy]
        USE_IP4: _ClassVar[Config.DomainStrategy]
        USE_IP6: _ClassVar[Config.DomainStrategy]
    AS_IS: Config.DomainStrategy
    USE_IP: Config.DomainStrategy
    USE_IP4: Config.DomainStrategy
    USE_IP6: Config.DomainStrategy
    DOMAIN_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    USER_LEVEL_FIELD_NUMBER: _ClassVar[int]
    domain_strategy: Config.DomainStrategy
    timeout: int
    destination_override: DestinationOverride
    user_level: int
    def __init__(self, domain_strategy: _Optional[_Union[Config.DomainStrategy, str]] = ..., timeout: _Optional[int] = ..., destination_override: _Optional[_Union[DestinationOverride, _Mapping]] = ..., user_level: _Optional[int] = ...) -> None: ...
