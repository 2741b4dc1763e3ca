"""JSON with comments, as V2Ray 4.34 reads it (v2ray-core ``infra/conf/json/reader.go``).

Comments are ``//`` and ``#`` to the end of the line and ``/* ... */`` (not
nested). Markers inside ``"..."`` or ``'...'`` strings are literal, and a
backslash escapes the next character inside a string. Comment text is
replaced by spaces (newlines kept), so the JSON decoder's line and column
still point into the original text.
"""

from __future__ import annotations

import json
from enum import Enum

from v2py.errors import ConfigError

__all__ = ["parse_json", "strip_comments"]


class _State(Enum):
    CONTENT = "content"
    STRING = "string"
    STRING_ESCAPE = "string-escape"
    LINE_COMMENT = "line-comment"
    BLOCK_COMMENT = "block-comment"


def _location(name: str, line: int, column: int) -> str:
    return f"{name}:{line}:{column}" if name else f"{line}:{column}"


def _line_column(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def strip_comments(text: str, name: str = "") -> str:
    """Return ``text`` with comments blanked out.

    Raises:
        ConfigError: a ``/*`` comment is never closed; the path is
            ``<name>:<line>:<column>`` of the opening ``/*``.
    """
    out: list[str] = []
    state = _State.CONTENT
    quote = ""
    block_start = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if state is _State.CONTENT:
            if char in "\"'":
                state, quote = _State.STRING, char
                out.append(char)
            elif char == "#":
                state = _State.LINE_COMMENT
                out.append(" ")
            elif char == "/" and index + 1 < length and text[index + 1] in "/*":
                state = _State.LINE_COMMENT if text[index + 1] == "/" else _State.BLOCK_COMMENT
                block_start = index
                out.append("  ")
                index += 1
            else:
                out.append(char)
        elif state is _State.STRING:
            if char == "\\":
                state = _State.STRING_ESCAPE
            elif char == quote:
                state = _State.CONTENT
            out.append(char)
        elif state is _State.STRING_ESCAPE:
            state = _State.STRING
            out.append(char)
        elif state is _State.LINE_COMMENT:
            if char == "\n":
                state = _State.CONTENT
            out.append(char if char in "\r\n" else " ")
        else:  # block comment
            if char == "*" and index + 1 < length and text[index + 1] == "/":
                state = _State.CONTENT
                out.append("  ")
                index += 1
            else:
                out.append(char if char in "\r\n" else " ")
        index += 1
    if state is _State.BLOCK_COMMENT:
        line, column = _line_column(text, block_start)
        raise ConfigError(
            _location(name, line, column), "comment opened here is never closed; add */"
        )
    return "".join(out)


def _refuse_constant(token: str) -> object:
    raise ValueError(f"{token} is not valid JSON")


def parse_json(text: str, name: str = "") -> object:
    """Decode V2Ray's commented JSON into Python values.

    Raises:
        ConfigError: unclosed comment or malformed JSON, located as
            ``<name>:<line>:<column>``.
    """
    text = text.removeprefix("\ufeff")
    plain = strip_comments(text, name)
    try:
        return json.loads(plain, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        message = exc.msg[0].lower() + exc.msg[1:]
        if exc.msg == "Extra data":
            message = "unexpected text after the end of the JSON document"
        raise ConfigError(
            _location(name, exc.lineno, exc.colno), f"invalid JSON: {message}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(_location(name, 1, 1), f"invalid JSON: {exc}") from exc
