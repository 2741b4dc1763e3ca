from v2py.app.commander.proto import typed_message_pb2 as _typed_message_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransportProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TCP: _ClassVar[TransportProtocol]
    UDP: _ClassVar[TransportProtocol]
    MKCP: _ClassVar[TransportProtocol]
    WebSocket: _ClassVar[TransportProtocol]
    HTTP: _ClassVar[TransportProtocol]
    DomainSocket: _ClassVar[TransportProtocol]
TCP: TransportProtocol
UDP: TransportProtocol
MKCP: TransportProtocol
WebSocket: TransportProtocol
HTTP: TransportProtocol
DomainSocket: TransportProtocol

class TransportConfig(_message.Message):
    __slots__ = ("protocol", "protocol_name", "settings")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    protocol: TransportProtocol
    protocol_name: str
    settings: _typed_message_pb2.TypedMessage
    def __init__(self, protocol: _Optional[_Union[TransportProtocol, str]] = ..., protocol_name: _Optional[str] = ..., settings: _Optional[_Union[_typed_message_pb2.TypedMessage, _Mapping]] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("protocol", "protocol_name", "transport_settings", "security_type", "security_settings", "socket_settings")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    SECURITY_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SOCKET_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    protocol: TransportProtocol
    protocol_name: str
    transport_settings: _containers.RepeatedCompositeFieldContainer[TransportConfig]
    security_type: str
    security_settings: _containers.RepeatedCompositeFieldContainer[_typed_message_pb2.TypedMessage]
    socket_settings: SocketConfig
    def __init__(self, protocol: _Optional[_Union[TransportProtocol, str]] = ..., protocol_name: _Optional[str] = ..., transport_settings: _Optional[_Iterable[_Union[TransportConfig, _Mapping]]] = ..., security_type: _Optional[str] = ..., security_settings: _Optional[_Iterable[_Union[_typed_message_pb2.TypedMessage, _Mapping]]] = ..., socket_settings: _Optional[_Union[SocketConfig, _Mapping]] = ...) -> None: ...

class ProxyConfig(_message.Message):
    __slots__ = ("tag",)
    TAG_FIELD_NUMBER: _ClassVar[int]
    tag: str
    def __init__(self, tag: _Optional[str] = ...) -> None: ...

class SocketConfig(_message.Message):
    __slots__ = ("mark", "tfo", "tproxy", "receive_original_dest_address", "bind_address", "bind_port", "accept_proxy_protocol")
    class TCPFastOpenState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AsIs: _ClassVar[SocketConfig.TCPFastOpenState]
        Enable: _ClassVar[SocketConfig.TCPFastOpenState]
        Disable: _ClassVar[SocketConfig.TCPFastOpenState]
    AsIs: SocketConfig.TCPFastOpenState
    Enable: SocketConfig.TCPFastOpenState
    Disable: SocketConfig.TCPFastOpenState
    class TProxyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Off: _ClassVar[SocketConfig.TProxyMode]
        TProxy: _ClassVar[SocketConfig.TProxyMode]
        Redirect: _ClassVar[SocketConfig.TProxyMode]
    Off: SocketConfig.TProxyMode
    TProxy: SocketConfig.TProxyMode
    Redirect: SocketConfig.TProxyMode
    MARK_FIELD_NUMBER: _ClassVar[int]
    TFO_FIELD_NUMBER: _ClassVar[int]
    TPROXY_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_ORIGINAL_DEST_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BIND_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BIND_PORT_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_PROXY_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    mark: int
    tfo: SocketConfig.TCPFastOpenState
    tproxy: SocketConfig.TProxyMode
    receive_original_dest_address: bool
    bind_address: bytes
    bind_port: int
    accept_proxy_protocol: bool
    def __init__(self, mark: _Optional[int] = ..., tfo: _Optional[_Union[SocketConfig.TCPFastOpenState, str]] = ..., tproxy: _Optional[_Union[SocketConfig.TProxyMode, str]] = ..., receive_original_dest_address: _Optional[bool] = ..., bind_address: _Optional[bytes] = ..., bind_port: _Optional[int] = ..., accept_proxy_protocol: _Optional[bool] = ...) -> None: ...
