from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Certificate(_message.Message):
    __slots__ = ("Certificate", "Key", "usage")
    class Usage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCIPHERMENT: _ClassVar[Certificate.Usage]
        AUTHORITY_VERIFY: _ClassVar[Certificate.Usage]
        AUTHORITY_ISSUE: _ClassVar[Certificate.Usage]
    ENCIPHERMENT: Certificate.Usage
    AUTHORITY_VERIFY: Certificate.Usage
    AUTHORITY_ISSUE: Certificate.Usage
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    Certificate: bytes
    Key: bytes
    usage: Certificate.Usage
    def __init__(self, Certificate: _Optional[bytes] = ..., Key: _Optional[bytes] = ..., usage: _Optional[_Union[Certificate.Usage, str]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("allow_insecure", "certificate", "server_name", "next_protocol", "enable_session_resumption", "disable_system_root")
    ALLOW_INSECURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAME_FIELD_NUMBER: _ClassVar[int]
    NEXT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SESSION_RESUMPTION_FIELD_NUMBER: _ClassVar[int]
    DISABLE_SYSTEM_ROOT_FIELD_NUMBER: _ClassVar[int]
    allow_insecure: bool
    certificate: _containers.RepeatedCompositeFieldContainer[Certificate]
    server_name: str
    next_protocol: _containers.RepeatedScalarFieldContainer[str]
    enable_session_resumption: bool
    disable_system_root: bool
    def __init__(self, allow_insecure: _Optional[bool] = ..., certificate: _Optional[_Iterable[_Union[Certificate, _Mapping]]] = ..., server_name: _Optional[str] = ..., next_protocol: _Optional[_Iterable[str]] = ..., enable_session_resumption: _Optional[bool] = ..., disable_system_root: _Optional[bool] = ...) -> None: ...
