from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BridgeConfig(_message.Message):
    __slots__ = ("tag", "domain")
    TAG_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    tag: str
    domain: str
    def __init__(self, tag: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class PortalConfig(_message.Message):
    __slots__ = ("tag", "domain")
    TAG_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    tag: str
    domain: str
    def __init__(self, tag: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("bridge_config", "portal_config")
    BRIDGE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    PORTAL_CONFIG_FIELD_NUMBER: _ClassVar[int]
    bridge_config: _containers.RepeatedCompositeFieldContainer[BridgeConfig]
    portal_config: _containers.RepeatedCompositeFieldContainer[PortalConfig]
    def __init__(self, bridge_config: _Optional[_Iterable[_Union[BridgeConfig, _Mapping]]] = ..., portal_config: _Optional[_Iterable[_Union[PortalConfig, _Mapping]]] = ...) -> None: ...
