from v2py.app.commander.proto import typed_message_pb2 as _typed_message_pb2
from v2py.app.commander.proto import net_pb2 as _net_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecurityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[SecurityType]
    LEGACY: _ClassVar[SecurityType]
    AUTO: _ClassVar[SecurityType]
    AES128_GCM: _ClassVar[SecurityType]
    CHACHA20_POLY1305: _ClassVar[SecurityType]
    NONE: _ClassVar[SecurityType]
UNKNOWN: SecurityType
LEGACY: SecurityType
AUTO: SecurityType
AES128_GCM: SecurityType
CHACHA20_POLY1305: SecurityType
NONE: SecurityType

class User(_message.Message):
    __slots__ = ("level", "email", "account")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    level: int
    email: str
    account: _typed_message_pb2.TypedMessage
    def __init__(self, level: _Optional[int] = ..., email: _Optional[str] = ..., account: _Optional[_Union[_typed_message_pb2.TypedMessage, _Mapping]] = ...) -> None: ...

class SecurityConfig(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: SecurityType
    def __init__(self, type: _Optional[_Union[SecurityType, str]] = ...) -> None: ...

class ServerEndpoint(_message.Message):
    __slots__ = ("address", "port", "user")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    address: _net_pb2.IPOrDomain
    port: int
    user: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, address: _Optional[_Union[_net_pb2.IPOrDomain, _Mapping]] = ..., port: _Optional[int] = ..., user: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...
