from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Domain(_message.Message):
    __slots__ = ("type", "value", "attribute")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Plain: _ClassVar[Domain.Type]
        Regex: _ClassVar[Domain.Type]
        Domain: _ClassVar[Domain.Type]
        Full: _ClassVar[Domain.Type]
    Plain: Domain.Type
    Regex: Domain.Type
    Domain: Domain.Type
    Full: Domain.Type
    class Attribute(_message.Message):
        __slots__ = ("key", "bool_value", "int_value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
        INT_VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        bool_value: bool
        int_value: int
        def __init__(self, key: _Optional[str] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    type: Domain.Type
    value: str
    attribute: _containers.RepeatedCompositeFieldContainer[Domain.Attribute]
    def __init__(self, type: _Optional[_Union[Domain.Type, str]] = ..., value: _Optional[str] = ..., attribute: _Optional[_Iterable[_Union[Domain.Attribute, _Mapping]]] = ...) -> None: ...

class CIDR(_message.Message):
    __slots__ = ("ip", "prefix")
    IP_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ip: bytes
    prefix: int
    def __init__(self, ip: _Optional[bytes] = ..., prefix: _Optional[int] = ...) -> None: ...

class GeoIP(_message.Message):
    __slots__ = ("country_code", "cidr")
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    CIDR_FIELD_NUMBER: _ClassVar[int]
    country_code: str
    cidr: _containers.RepeatedCompositeFieldContainer[CIDR]
    def __init__(self, country_code: _Optional[str] = ..., cidr: _Optional[_Iterable[_Union[CIDR, _Mapping]]] = ...) -> None: ...

class GeoIPList(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: _containers.RepeatedCompositeFieldContainer[GeoIP]
    def __init__(self, entry: _Optional[_Iterable[_Union[GeoIP, _Mapping]]] = ...) -> None: ...

class GeoSite(_message.Message):
    __slots__ = ("country_code", "domain")
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    country_code: str
    domain: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, country_code: _Optional[str] = ..., domain: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ...) -> None: ...

class GeoSiteList(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: _containers.RepeatedCompositeFieldContainer[GeoSite]
    def __init__(self, entry: _Optional[_Iterable[_Union[GeoSite, _Mapping]]] = ...) -> None: ...
