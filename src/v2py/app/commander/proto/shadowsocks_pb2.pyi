from v2py.app.commander.proto import net_pb2 as _net_pb2
from v2py.app.commander.proto import protocol_pb2 as _protocol_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CipherType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[CipherType]
    AES_128_GCM: _ClassVar[CipherType]
    AES_256_GCM: _ClassVar[CipherType]
    CHACHA20_POLY1305: _ClassVar[CipherType]
    NONE: _ClassVar[CipherType]
UNKNOWN: CipherType
AES_128_GCM: CipherType
AES_256_GCM: CipherType
CHACHA20_POLY1305: CipherType
NONE: CipherType

class Account(_message.Message):
    __slots__ = ("password", "cipher_type")
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CIPHER_TYPE_FIELD_NUMBER: _ClassVar[int]
    password: str
    cipher_type: CipherType
    def __init__(self, password: _Optional[str] = ..., cipher_type: _Optional[_Union[CipherType, str]] = ...) -> None: ...

class ServerConfig(_message.Message):
    __slots__ = ("udp_enabled", "user", "network")
    UDP_ENABLED_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    udp_enabled: bool
    user: _protocol_pb2.User
    network: _containers.RepeatedScalarFieldContainer[_net_pb2.Network]
    def __init__(self, udp_enabled: _Optional[bool] = ..., user: _Optional[_Union[_protocol_pb2.User, _Mapping]] = ..., network: _Optional[_Iterable[_Union[_net_pb2.Network, str]]] = ...) -> None: ...

class ClientConfig(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: _containers.RepeatedCompositeFieldContainer[_protocol_pb2.ServerEndpoint]
    def __init__(self, server: _Optional[_Iterable[_Union[_protocol_pb2.ServerEndpoint, _Mapping]]] = ...) -> None: ...
