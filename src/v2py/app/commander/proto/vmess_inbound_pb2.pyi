from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetourConfig(_message.Message):
    __slots__ = ("to",)
    TO_FIELD_NUMBER: _ClassVar[int]
    to: str
    def __init__(self, to: _Optional[str] = ...) -> None: ...

class DefaultConfig(_message.Message):
    __slots__ = ("alter_id", "level")
    ALTER_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    alter_id: int
    level: int
    def __init__(self, alter_id: _Optional[int] = ..., level: _Optional[int] = ...) -> None: ...

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
    def __init__(self, user: _Optional[_Iterable[_Union[_protocol_pb2.User, _Mapping]]] = ..., default: _Optional[_Union[DefaultConfig, _Mapping]] = ..., detour: _Optional[_Union[DetourConfig, _Mapping]] = ..., secure_encryption_only: _Optional[bool] = ...) -> None: ...
