"""Protobuf text format as ``v2ctl api`` speaks it (golang/protobuf 1.3
``proto.MarshalTextString`` / ``proto.UnmarshalText``, which 4.34's
``infra/control/api.go`` uses).

Output differs from Python protobuf's ``text_format``: nested messages print as
``name: <`` … ``>``, zero-valued proto3 fields are omitted, and every string byte
that is not printable ASCII is a three-digit octal escape. Scripts (v2-ui) parse
this text with regexes, so it must be byte for byte.

The parser covers what the CLI sends: messages with string, bool and integer
fields, with golang/protobuf's error texts (``line 1.0: unknown field name
"bogus" in command.QueryStatsRequest``).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["TextParseError", "marshal_text", "unmarshal_text"]

_INDENT = "  "
_ESCAPES = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x5C: "\\\\"}
_PRINTABLE = range(0x20, 0x7F)


def _quote(data: bytes) -> str:
    out = ['"']
    for b in data:
        esc = _ESCAPES.get(b)
        if esc is not None:
            out.append(esc)
        elif b in _PRINTABLE:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def _scalar(field: Any, value: object) -> str:
    if field.type == FieldDescriptor.TYPE_STRING:
        assert isinstance(value, str)
        return _quote(value.encode())
    if field.type == FieldDescriptor.TYPE_BYTES:
        assert isinstance(value, bytes)
        return _quote(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert isinstance(value, int) and field.enum_type is not None
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    return str(value)


def _write(message: Message, depth: int, out: list[str]) -> None:
    indent = _INDENT * depth
    for field in message.DESCRIPTOR.fields:  # declaration order, as Go's struct order
        value = getattr(message, field.name)
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if field.is_repeated:
            items = list(value)
        elif is_message:
            items = [value] if message.HasField(field.name) else []
        else:
            items = [value] if value else []  # proto3: zero values are not printed
        for item in items:
            if is_message:
                out.append(f"{indent}{field.name}: <\n")
                _write(item, depth + 1, out)
                out.append(f"{indent}>\n")
            else:
                out.append(f"{indent}{field.name}: {_scalar(field, item)}\n")


def marshal_text(message: Message) -> str:
    """golang/protobuf 1.3 ``MarshalTextString(message)``."""
    out: list[str] = []
    _write(message, 0, out)
    return "".join(out)


class TextParseError(ValueError):
    """A text-format error, worded as golang/protobuf's ``ParseError``."""


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the texts that appear in errors."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_IDENT_EXTRA = frozenset("-+._")
_SYMBOLS = frozenset("<>{}:[];,/")
_SIMPLE_UNESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "?": "?",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


def _unquote(body: str) -> str:
    """C-style unescaping into bytes (an octal or hex escape is one byte, as Go's
    strings are bytes), then UTF-8."""
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        i += 1
        if ch != "\\":
            out += ch.encode()
            continue
        if i >= len(body):
            raise ValueError("unexpected end of string")
        esc = body[i]
        i += 1
        if esc in _SIMPLE_UNESCAPES:
            out += _SIMPLE_UNESCAPES[esc].encode()
        elif esc in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) < 3:
                raise ValueError(f"\\{esc} requires 2 following digits")
            if any(d not in "01234567" for d in digits) or int(digits, 8) > 0xFF:
                raise ValueError(f"\\{digits} contains non-octal digits")
            out.append(int(digits, 8))
            i += 2
        elif esc in "xX":
            digits = body[i : i + 2]
            if len(digits) < 2:
                raise ValueError(f"\\{esc} requires 2 following digits")
            try:
                out.append(int(digits, 16))
            except ValueError:
                raise ValueError(f"\\{esc}{digits} contains non-hexadecimal digits") from None
            i += 2
        else:
            raise ValueError(f"unknown escape \\{esc}")
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise ValueError("proto: bad UTF-8") from None


class _Token:
    __slots__ = ("offset", "line", "unquoted", "value")

    def __init__(self, value: str, offset: int, line: int, unquoted: str | None) -> None:
        self.value = value
        self.offset = offset
        self.line = line
        self.unquoted = unquoted


class _Parser:
    """golang/protobuf 1.3's ``textParser``: tokens, and errors at the current
    token's line and byte offset."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.pos = 0
        self.line = 1
        self.cur_line = 1
        self.cur_offset = 0
        self.backed: _Token | None = None

    def error(self, message: str) -> TextParseError:
        return TextParseError(f"line {self.cur_line}.{self.cur_offset}: {message}")

    def _skip(self) -> None:
        s = self.s
        while self.pos < len(s) and (s[self.pos] in " \t\n\r#"):
            if s[self.pos] == "#":
                while self.pos < len(s) and s[self.pos] != "\n":
                    self.pos += 1
                continue
            if s[self.pos] == "\n":
                self.line += 1
            self.pos += 1

    def _advance(self) -> _Token | None:
        self._skip()
        s = self.s
        if self.pos >= len(s):
            return None
        start = self.pos
        self.cur_offset, self.cur_line = len(s[:start].encode()), self.line
        ch = s[start]
        if ch in _SYMBOLS:
            self.pos += 1
            return _Token(ch, start, self.line, None)
        if ch in "\"'":
            i = start + 1
            while i < len(s) and s[i] != ch and s[i] != "\n":
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                i += 1
            if i >= len(s) or s[i] != ch:
                raise self.error("unmatched quote")
            try:
                unq = _unquote(s[start + 1 : i])
            except ValueError as exc:
                raise self.error(f"invalid quoted string {s[start : i + 1]}: {exc}") from None
            self.pos = i + 1
            return _Token(s[start : i + 1], start, self.line, unq)
        i = start
        while i < len(s) and (s[i].isascii() and (s[i].isalnum() or s[i] in _IDENT_EXTRA)):
            i += 1
        if i == start:
            raise self.error(f"unexpected byte {ord(ch.encode()[:1]):#x}")
        self.pos = i
        return _Token(s[start:i], start, self.line, None)

    def next(self) -> _Token | None:
        if self.backed is not None:
            backed, self.backed = self.backed, None
            return backed
        tok = self._advance()
        if tok is not None and tok.unquoted is not None:
            # Adjacent quoted strings are one string (errors point at the first).
            where = (self.cur_offset, self.cur_line)
            while True:
                self._skip()
                if self.pos >= len(self.s) or self.s[self.pos] not in "\"'":
                    break
                more = self._advance()
                assert more is not None and more.unquoted is not None
                tok.value += " " + more.value
                tok.unquoted += more.unquoted
            self.cur_offset, self.cur_line = where
        return tok

    def back(self, tok: _Token | None) -> None:
        self.backed = tok


def _go_type_name(message: Message) -> str:
    # golang/protobuf prints the Go type: <last package element>.<Message>.
    full = message.DESCRIPTOR.full_name
    package, _, name = full.rpartition(".")
    return f"{package.rpartition('.')[2]}.{name}"


_TRUE = frozenset({"true", "1", "t", "True"})
_FALSE = frozenset({"false", "0", "f", "False"})
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
}


def _parse_int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def _read_value(p: _Parser, message: Message, field: Any) -> None:
    tok = p.next()
    if tok is None:
        raise p.error("unexpected EOF")
    if field.type == FieldDescriptor.TYPE_STRING:
        if tok.unquoted is None:
            raise p.error(f"invalid string: {tok.value}")
        setattr(message, field.name, tok.unquoted)
        return
    if field.type == FieldDescriptor.TYPE_BOOL:
        if tok.value in _TRUE or tok.value in _FALSE:
            setattr(message, field.name, tok.value in _TRUE)
            return
        raise p.error(f"invalid bool: {tok.value}")
    kind = _INT_TYPES.get(field.type)
    if kind is not None:
        name, lo, hi = kind
        number = _parse_int(tok.value)
        if number is not None and lo <= number <= hi:
            setattr(message, field.name, number)
            return
        raise p.error(f"invalid {name}: {tok.value}")
    raise p.error(f"field {_go_quote(field.name)} is not supported by v2py api")


def unmarshal_text(text: str, message: Message) -> None:
    """Parse ``text`` into ``message`` (cleared first) as golang/protobuf 1.3's
    ``UnmarshalText``; raises :class:`TextParseError` with its wording."""
    message.Clear()
    p = _Parser(text)
    seen: set[str] = set()
    fields = message.DESCRIPTOR.fields_by_name
    while True:
        tok = p.next()
        if tok is None:
            return
        name = tok.value
        field = fields.get(name)
        if field is None:
            raise p.error(f"unknown field name {_go_quote(name)} in {_go_type_name(message)}")
        if name in seen and not field.is_repeated:
            raise p.error(f"non-repeated field {_go_quote(name)} was repeated")
        colon = p.next()
        if colon is None or colon.value != ":":
            raise p.error(f"expected ':', found {_go_quote(colon.value if colon else '')}")
        seen.add(name)
        _read_value(p, message, field)
        sep = p.next()
        if sep is not None and sep.value not in (";", ","):
            p.back(sep)
