from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2
from v2py.app.commander.proto import typed_message_pb2 as _typed_message_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("key", "security", "header")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECURITY_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    key: str
    security: _protocol_pb2.SecurityConfig
    header: _typed_message_pb2.TypedMessage
    def __init__(self, key: _Optional[str] = ..., security: _Optional[_Union[_protocol_pb2.SecurityConfig, _Mapping]] = ..., header: _Optional[_Union[_typed_message_pb2.TypedMessage, _Mapping]] = ...) -> None: ...
