from v2py.app.commander.proto import typed_message_pb2 as _typed_message_pb2
from v2py.app.commander.proto import core_pb2 as _core_pb2
from v2py.app.commander.proto import transport_pb2 as _transport_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("inbound", "outbound", "app", "transport", "extension")
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    inbound: _containers.RepeatedCompositeFieldContainer[_core_pb2.InboundHandlerConfig]
    outbound: _containers.RepeatedCompositeFieldContainer[_core_pb2.OutboundHandlerConfig]
    app: _containers.RepeatedCompositeFieldContainer[_typed_message_pb2.TypedMessage]
    transport: _transport_pb2.Config
    extension: _containers.RepeatedCompositeFieldContainer[_typed_message_pb2.TypedMessage]
    def __init__(self, inbound: _Optional[_Iterable[_Union[_core_pb2.InboundHandlerConfig, _Mapping]]] = ..., outbound: _Optional[_Iterable[_Union[_core_pb2.OutboundHandlerConfig, _Mapping]]] = ..., app: _Optional[_Iterable[_Union[_typed_message_pb2.TypedMessage, _Mapping]]] = ..., transport: _Optional[_Union[_transport_pb2.Config, _Mapping]] = ..., extension: _Optional[_Iterable[_Union[_typed_message_pb2.TypedMessage, _Mapping]]] = ...) -> None: ...
