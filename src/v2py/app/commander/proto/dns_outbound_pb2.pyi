from v2py.app.commander.proto import net_pb2 as _net_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: _net_pb2.Endpoint
    def __init__(self, server: _Optional[_Union[_net_pb2.Endpoint, _Mapping]] = ...) -> None: ...
