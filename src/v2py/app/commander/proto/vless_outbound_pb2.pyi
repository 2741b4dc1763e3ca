from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("vnext",)
    VNEXT_FIELD_NUMBER: _ClassVar[int]
    vnext: _containers.RepeatedCompositeFieldContainer[_protocol_pb2.ServerEndpoint]
    def __init__(self, vnext: _Optional[_Iterable[_Union[_protocol_pb2.ServerEndpoint, _Mapping]]] = ...) -> None: ...
