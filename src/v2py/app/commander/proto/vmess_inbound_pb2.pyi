from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2

DESCRIPTOR: _descriptor.FileDescriptor

class DetourConfig(_message.Message):
    __slots__ = ("to",)
    TO_FIELD_NUMBER: _ClassVar[int]
    to: str
    def __init__(self, to: str | None = ...) -> None: ...

class DefaultConfig(_message.Message):
    __slots__ = ("alter_id", "level")
    ALTER_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    alter_id: int
    level: int
    def __init__(self, alter_id: int | None = ..., level: int | None = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("user", "default", "detour", "secure_encryption_only")
    USER_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DETOUR_FIELD_NUMBER: _ClassVar[int]
    SECURE_ENCRYPTION_ONLY_FIELD_NUMBER: _ClassVar[int]
    user: _containers.RepeatedCompositeFieldContainer[_protocol_pb2.User]
    default: DefaultConfig
    detour: DetourConfig
    secure_encryption_only: bool
    def __init__(self, user: _Iterable[_protocol_pb2.User | _Mapping] | None = ..., default: DefaultConfig | _Mapping | None = ..., detour: DetourConfig | _Mapping | None = ..., secure_encryption_only: bool | None = ...) -> None: ...
