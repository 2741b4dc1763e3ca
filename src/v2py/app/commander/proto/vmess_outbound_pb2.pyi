from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("Receiver",)
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    Receiver: _containers.RepeatedCompositeFieldContainer[_protocol_pb2.ServerEndpoint]
    def __init__(self, Receiver: _Iterable[_protocol_pb2.ServerEndpoint | _Mapping] | None = ...) -> None: ...
