"""Shared machinery of the config models (v2ray-core ``infra/conf`` conventions).

V2Ray decodes its JSON with Go's ``encoding/json``: object keys match struct
fields case-insensitively, unknown keys are ignored, ``null`` leaves a field at
its default, and integers must be integral and fit the field's width. This
module gives the pydantic models that behaviour while staying strict about
values (docs/style.md section 5):

* :class:`ConfigModel` remaps keys onto the camelCase JSON names, keeps a note
  of unknown keys so the loader can warn with their path, and is frozen.
* ``Uint16``, ``Byte``, ``Bool``, ``Str``... are the value types, each with a
  one-line message that quotes the bad value and says what is allowed.
* :func:`to_config_error` turns the first pydantic error into one
  :class:`~v2py.errors.ConfigError` line with a V2Ray-style JSON path.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from v2py.config.jsonc import BigNumber
from v2py.errors import ConfigError, printable


def _skip_pydantic_plugin_discovery() -> None:
    """Tell pydantic there are no plugins, before it looks for them (its first
    validator is built when a config is first validated, after these imports).

    The first validator pydantic builds imports ``importlib.metadata`` (and with it
    ``email``, ``zipfile``, ``csv``...) and reads the entry points of every installed
    distribution, looking for pydantic plugins: about 20 ms of every start-up
    (measured; a minimal config starts in about 300 ms). v2py's models are its own
    and no plugin is meant to observe them, so pydantic's plugin loader
    (``pydantic.plugin._loader``, whose ``get_plugins()`` returns ``()`` too when
    ``PYDANTIC_DISABLE_PLUGINS`` is set) is answered in advance. Guarded by
    ``tests/test_startup_imports.py``.
    """
    name = "pydantic.plugin._loader"
    if name in sys.modules:  # already loaded (e.g. pydantic used before v2py): keep it
        return
    loader = types.ModuleType(name, "v2py: pydantic plugins are not loaded")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # returns () as disabled

    def real(attribute: str) -> Any:
        # A pydantic that asks its loader for anything else gets the real module
        # (dunder names are the import system's own questions, e.g. ``__path__``).
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if sys.modules.get(name) is loader:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)

    setattr(loader, "__getattr__", real)  # noqa: B010 - a module-level __getattr__
    sys.modules[name] = loader


_skip_pydantic_plugin_discovery()

__all__ = [
    "Bool",
    "Byte",
    "ConfigModel",
    "Int16",
    "Str",
    "Uint16",
    "Uint32",
    "one_of",
    "describe",
    "quote",
    "fail",
    "int_in",
    "ip_address",
    "join_path",
    "string_list",
    "to_config_error",
    "unknown_key_warnings",
]

UINT16_MAX = 0xFFFF
UINT32_MAX = 0xFFFF_FFFF
BYTE_MAX = 0xFF
INT16_MIN = -0x8000
INT16_MAX = 0x7FFF

UNKNOWN_KEY_WARNING = "unknown key, ignored"
_ERROR_TYPE = "v2py"


#: Characters of a user string shown in a message; longer ones are cut (with the length).
MAX_SHOWN_CHARS = 80


def quote(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """A user string as a JSON string literal for a message: quotes, backslashes and
    every non-printable character escaped; past ``limit`` characters cut, with the
    full length said (a 10 MB value is not echoed back)."""
    suffix = ""
    if len(text) > limit:
        suffix = f" ({len(text)} characters)"
        text = text[: limit - 3] + "..."
    return printable(json.dumps(text, ensure_ascii=False), limit=4 * limit + 8) + suffix


def describe(value: object) -> str:
    """Render a JSON value for a message: scalars as JSON, containers by kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, BigNumber):
        return repr(value)
    try:
        return printable(json.dumps(value, ensure_ascii=False), limit=MAX_SHOWN_CHARS)
    except (TypeError, ValueError):
        return printable(repr(value), limit=MAX_SHOWN_CHARS)


def fail(message: str, sub: str = "") -> PydanticCustomError:
    """Build the error a validator raises.

    ``message`` is the finished text (it is not formatted again, so braces in
    user values are safe). ``sub`` is a JSON sub-path appended to the error's
    location, for model-level checks that blame one key, e.g. ``"concurrency"``.
    """
    return PydanticCustomError(_ERROR_TYPE, "{message}", {"message": message, "sub": sub})


class ConfigModel(BaseModel):
    """Base of every config object: frozen, camelCase JSON keys, case-insensitive.

    Subclasses may set ``IGNORED_KEYS`` (lower-case JSON key -> warning text)
    for keys V2Ray knows but whose meaning does not apply (e.g. ``wsSettings``
    under a TCP stream, which 4.34 ignores too), ``REFUSED_KEYS`` (lower-case
    JSON key -> reason) for keys V2Ray gives a meaning v2py does not implement:
    they fail closed with a ``ConfigError`` naming the key, and ``INTERNAL_FIELDS``
    for fields that are filled by the loader and never read from JSON.
    """

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=False,
        extra="ignore",
        hide_input_in_errors=True,
        # Validators are built on first use: a config pays only for the models it names
        # (start-up time and memory), not for all ~60.
        defer_build=True,
    )

    IGNORED_KEYS: ClassVar[Mapping[str, str]] = {}
    REFUSED_KEYS: ClassVar[Mapping[str, str]] = {}
    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset()

    _ignored_keys: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @classmethod
    def trusted(cls, **values: object) -> Self:
        """The instance validation would give for ``values`` (none: the defaults),
        for a model whose validators change nothing there, built without its validator.

        A validator is built the first time a model is validated; a default made with
        ``Model()`` pays for that (a few ms each, at every start-up) although there is
        nothing to check. ``tests/test_startup_imports.py`` checks each use is
        equal to ``Model(**values)``.
        """
        return cls.model_construct(None, **values)

    @classmethod
    def _json_names(cls, *, python: bool) -> dict[str, str]:
        """Lower-case key -> exact alias, for every JSON-backed field.

        With ``python`` (construction from Python code, which passes no
        validation context) the snake_case field names are accepted as well.
        """
        names: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            if python:
                names[name] = alias
            if name not in cls.INTERNAL_FIELDS:
                names[alias.lower()] = alias
        return names

    @classmethod
    def normalize(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook for legacy spellings; receives keys already mapped to aliases."""
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _match_keys(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        names = cls._json_names(python=info.context is None)
        mapped: dict[str, Any] = {}
        ignored: list[tuple[str, str]] = []
        for key, value in data.items():
            alias = names.get(key.lower())
            if alias is None and value is not None and key.lower() in cls.REFUSED_KEYS:
                # Fail closed: dropping such a key would change where traffic goes.
                raise fail(f"{cls.REFUSED_KEYS[key.lower()]}; remove it", key)
            if alias is None:
                note = cls.IGNORED_KEYS.get(key.lower(), UNKNOWN_KEY_WARNING)
                ignored.append((key, note))
            elif value is None:
                # Go's decoder leaves a field untouched for JSON null.
                mapped.pop(alias, None)
            else:
                # A later spelling of the same key wins, as with Go.
                mapped[alias] = value
        instance = handler(cls.normalize(mapped))
        if ignored and isinstance(instance, ConfigModel):
            instance._ignored_keys = tuple(ignored)
        return instance


def unknown_key_warnings(value: object, path: str) -> list[str]:
    """Walk a validated model tree and list ``"<path>.<key>: <note>"`` lines."""
    found: list[str] = []
    _walk(value, path, found)
    return found


def _walk(value: object, path: str, found: list[str]) -> None:
    if isinstance(value, ConfigModel):
        for key, note in value._ignored_keys:
            found.append(f"{join_path(path, (key,))}: {note}")
        for name, field in type(value).model_fields.items():
            if name in type(value).INTERNAL_FIELDS:
                continue
            _walk(getattr(value, name), join_path(path, (field.alias or name,)), found)
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            _walk(item, join_path(path, (index,)), found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, join_path(path, (str(key),)), found)


# A key shown as ``.key`` in a path; any other is shown quoted, as ``["a b"]``.
_PLAIN_KEY = re.compile(r"[^\s.\"'\[\]\\]+")


def join_path(prefix: str, loc: Iterable[int | str]) -> str:
    """Append pydantic location parts to a V2Ray-style path (``a.b[0].c``).

    A key with whitespace, dots, quotes, brackets, backslashes or non-printable
    characters, or a long one, is quoted (``a["x\\ny"]``, cut as :func:`quote`
    cuts), so a path is always one short unambiguous line.
    """
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]" or not part:
            continue
        elif len(part) <= MAX_SHOWN_CHARS and _PLAIN_KEY.fullmatch(part) and part.isprintable():
            path = f"{path}.{part}" if path else part
        else:
            path = f"{path}[{quote(part)}]"
    return path


_GENERIC_MESSAGES: dict[str, str] = {
    "missing": "missing; this key is required",
    "model_type": "{value} is not an object",
    "model_attributes_type": "{value} is not an object",
    "dict_type": "{value} is not an object",
    "list_type": "{value} is not a list",
    "tuple_type": "{value} is not a list",
    "int_type": "{value} is not an integer",
    "int_parsing": "{value} is not an integer",
    "bool_type": "{value} is not true or false",
    "string_type": "{value} is not a string",
}


# What to add when a required key is missing, by JSON key.
_MISSING_HINTS: dict[str, str] = {
    "protocol": 'add "protocol", e.g. "vmess", "socks" or "freedom"',
    "id": 'add "id": "<UUID>"',
    "address": 'add "address": the server\'s IP or domain',
    "port": 'add "port": 1-65535',
    "to": 'add "to": "<tag of a vmess inbound>"',
    "strategy": 'add "strategy": "always" or "random"',
    "type": 'add "type", e.g. "none"',
}


def to_config_error(exc: ValidationError, prefix: str) -> ConfigError:
    """Turn the first error of ``exc`` into one ConfigError line under ``prefix``.

    Pydantic's own texts (with their documentation URLs) never reach the user:
    known error types get our wording and anything else a neutral one.
    """
    error = exc.errors(include_url=False, include_context=True, include_input=True)[0]
    loc: list[int | str] = list(error["loc"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if error["type"] == _ERROR_TYPE:
        sub = str(ctx.get("sub", ""))
        message = str(ctx.get("message", "invalid value"))
        path = join_path(join_path(prefix, loc), _split_sub(sub))
        return ConfigError(path, message)
    if error["type"] == "missing":
        hint = _MISSING_HINTS.get(str(loc[-1]) if loc else "", "this key is required")
        return ConfigError(join_path(prefix, loc), f"missing; {hint}")
    template = _GENERIC_MESSAGES.get(error["type"], "{value} is not valid here")
    return ConfigError(join_path(prefix, loc), template.format(value=describe(value)))


def _split_sub(sub: str) -> list[int | str]:
    parts: list[int | str] = []
    for piece in sub.split("."):
        if not piece:
            continue
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return parts


# --------------------------------------------------------------------------
# Value types. Go's encoding/json refuses a string for an integer field, a
# number for a string field and 1.0 for an integer, so these are strict.


def int_in(low: int, high: int) -> Callable[[object], int]:
    """A checker accepting only JSON integers in ``low..high``.

    Use as ``Annotated[int, BeforeValidator(int_in(576, 1460))]``.
    """

    def check(value: object) -> int:
        if isinstance(value, BigNumber):
            raise fail(f"{describe(value)} is out of range; use {low}-{high}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"{describe(value)} is not an integer; use {low}-{high}")
        if not low <= value <= high:
            raise fail(f"{describe(value)} is out of range; use {low}-{high}")
        return value

    return check


def _check_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise fail(f"{describe(value)} is not true or false")
    return value


def _check_str(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a string")
    return value


Uint32 = Annotated[int, BeforeValidator(int_in(0, UINT32_MAX))]
Uint16 = Annotated[int, BeforeValidator(int_in(0, UINT16_MAX))]
Byte = Annotated[int, BeforeValidator(int_in(0, BYTE_MAX))]
Int16 = Annotated[int, BeforeValidator(int_in(INT16_MIN, INT16_MAX))]
Bool = Annotated[bool, BeforeValidator(_check_bool)]
Str = Annotated[str, BeforeValidator(_check_str)]


def _quoted_list(values: Iterable[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def one_of(
    accepted: Mapping[str, str],
    *,
    shown: Iterable[str] | None = None,
    refused: Mapping[str, str] | None = None,
    case_sensitive: bool = False,
) -> Callable[[object], str]:
    """A checker for a string with a fixed set of spellings mapped onto canonical values.

    ``accepted`` maps each accepted spelling (lower-case unless
    ``case_sensitive``) to its canonical value. ``refused`` maps spellings that
    V2Ray knows but v2py rejects to the reason (e.g. "not supported by v2py").
    """
    shown_text = _quoted_list(shown if shown is not None else dict.fromkeys(accepted.values()))
    refusals = dict(refused or {})

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise fail(f"{describe(value)} is not a string; use one of: {shown_text}")
        key = value if case_sensitive else value.lower()
        if key in accepted:
            return accepted[key]
        if key in refusals:
            raise fail(f"{describe(value)} is {refusals[key]}; use one of: {shown_text}")
        raise fail(f"{describe(value)} is not allowed; use one of: {shown_text}")

    return check


def string_list(item: Callable[[str], str], *, what: str) -> Callable[[object], tuple[str, ...]]:
    """V2Ray's ``StringList``: a JSON list of strings or one comma-separated string.

    ``item`` maps one entry to its canonical form or raises :func:`fail`.
    Duplicates are dropped, order is kept.
    """

    def check(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            entries: list[object] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            entries = list(value)
        else:
            raise fail(f"{describe(value)} is not a list of {what} or a comma-separated string")
        result: dict[str, None] = {}
        for entry in entries:
            if not isinstance(entry, str):
                raise fail(f"{describe(entry)} is not a string; expected {what}")
            result[item(entry)] = None
        return tuple(result)

    return check


def ip_address(text: str) -> str | None:
    """Canonical text of an IPv4/IPv6 address (``[::1]`` allowed), or None."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None
