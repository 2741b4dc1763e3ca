from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

from v2py.app.commander.proto import net_pb2 as _net_pb2
from v2py.app.commander.proto import typed_message_pb2 as _typed_message_pb2

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
    def __init__(self, level: int | None = ..., email: str | None = ..., account: _typed_message_pb2.TypedMessage | _Mapping | None = ...) -> None: ...

class SecurityConfig(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: SecurityType
    def __init__(self, type: SecurityType | str | None = ...) -> None: ...

class ServerEndpoint(_message.Message):
    __slots__ = ("address", "port", "user")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    address: _net_pb2.IPOrDomain
    port: int
    user: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, address: _net_pb2.IPOrDomain | _Mapping | None = ..., port: int | None = ..., user: _Iterable[User | _Mapping] | None = ...) -> None: ...
