"""JSON with comments, as V2Ray 4.34 reads it (v2ray-core ``infra/conf/json/reader.go``),
decoded as Go's ``encoding/json`` decodes it.

Comments are ``//`` and ``#`` to the end of the line and ``/* ... */`` (not
nested). Markers inside ``"..."`` or ``'...'`` strings are literal, and a
backslash escapes the next character inside a string. Comment text is
replaced by spaces (newlines kept), so the JSON decoder's line and column
still point into the original text. Comments are found with one regular
expression (no per-character Python loop), so a 10 MB string costs what the
JSON decoder costs.

Where Python's ``json`` differs from Go's decoder on hostile input, this module
follows Go:

* Nesting: Go refuses a document nested deeper than 10,000 arrays/objects
  (``exceeded max depth``) [verified: 10,000 levels accepted, 10,001 refused].
  Python's decoder hits the recursion limit near 1,000, so a deeper document
  is decoded on a thread with a large stack and a raised recursion limit.
* A lone UTF-16 surrogate escape (``"\\ud800"``) decodes to U+FFFD, as Go's
  ``unquote`` does; Python would keep an unencodable lone surrogate.
* An integer too long for Python's ``int()`` limit (4,300 digits) decodes to
  :class:`BigNumber`, which no validator accepts (Go cannot store it in any
  field either) and which an unknown key may hold, as with Go.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any

from v2py.errors import ConfigError

__all__ = ["MAX_DEPTH", "BigNumber", "parse_json", "strip_comments"]

#: Go's ``encoding/json`` maxNestingDepth: deeper documents are refused.
MAX_DEPTH = 10_000
#: Integers with more characters than this become :class:`BigNumber` (below CPython's
#: default ``int`` string-conversion limit of 4,300 digits).
MAX_INT_CHARS = 4_000
#: Stack for the thread that decodes a deeply nested document (the C decoder
#: recurses once per level; 10,000 levels need a few MiB).
DEEP_STACK_BYTES = 256 * 1024 * 1024
_DEEP_RECURSION_MARGIN = 2_000

_STRING = r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?' + r"|'[^'\\]*(?:\\[\s\S][^'\\]*)*'?"
# Strings are matched (and kept) so that comment markers inside them stay literal.
_TOKENS = re.compile(
    rf"(?P<string>{_STRING})"
    r"|(?P<line>(?://|\#)[^\n]*)"
    r"|(?P<block>/\*[\s\S]*?\*/)"
    r"|(?P<open>/\*)"
)
_BLANK = re.compile(r"[^\r\n]")
# Structure outside double-quoted strings, for locating a too-deep document.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?|[\[\]{}]')
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]")
# Every backslash escape, so an escaped backslash is never read as the start of \u.
_ESCAPES = re.compile(
    r"\\(?:(?P<pair>u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?P<lone>u[dD][89a-fA-F][0-9a-fA-F]{2})|[\s\S])"
)


class BigNumber:
    """A JSON integer with more than ``MAX_INT_CHARS`` characters (kept as text).

    No field accepts it (the value types check for ``int``), so it fails
    validation with its path; under an unknown key it is ignored like any value.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"a {len(self.text.lstrip('-'))}-digit number"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BigNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


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
    if "/" not in text and "#" not in text:
        return text

    def blank(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "string":
            return match.group()
        if kind == "open":
            line, column = _line_column(text, match.start())
            raise ConfigError(
                _location(name, line, column), "comment opened here is never closed; add */"
            )
        return _BLANK.sub(" ", match.group())

    return _TOKENS.sub(blank, text)


def _refuse_constant(token: str) -> object:
    raise ValueError(f"{token} is not valid JSON")


def _parse_int(text: str) -> int | BigNumber:
    return int(text) if len(text) <= MAX_INT_CHARS else BigNumber(text)


def _replace_lone_surrogates(plain: str) -> str:
    """Turn each lone ``\\uD800``-``\\uDFFF`` escape into ``\\ufffd`` (same length)."""

    def fix(match: re.Match[str]) -> str:
        return "\\ufffd" if match.lastgroup == "lone" else match.group()

    return _ESCAPES.sub(fix, plain)


def _too_deep_at(plain: str) -> int | None:
    """Offset of the first ``[``/``{`` nested deeper than ``MAX_DEPTH``, or None."""
    depth = 0
    for match in _STRUCTURE.finditer(plain):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif char in "]}":
            depth -= 1
    return None


def _loads(plain: str) -> Any:
    return json.loads(plain, parse_constant=_refuse_constant, parse_int=_parse_int)


def _loads_deep(plain: str) -> Any:
    """Decode a document nested up to ``MAX_DEPTH`` levels on a large-stack thread."""
    result: list[Any] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            result.append(_loads(plain))
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size()
    sys.setrecursionlimit(max(old_limit, MAX_DEPTH + _DEEP_RECURSION_MARGIN))
    try:
        threading.stack_size(DEEP_STACK_BYTES)
        try:
            thread = threading.Thread(target=work, name="v2py-deep-json")
        finally:
            threading.stack_size(old_stack)
        thread.start()
        thread.join()
    finally:
        sys.setrecursionlimit(old_limit)
    if error:
        raise error[0]
    return result[0]


def parse_json(text: str, name: str = "") -> object:
    """Decode V2Ray's commented JSON into Python values.

    Raises:
        ConfigError: unclosed comment, malformed JSON or nesting deeper than
            ``MAX_DEPTH``, located as ``<name>:<line>:<column>``.
    """
    text = text.removeprefix("\ufeff")
    plain = strip_comments(text, name)
    if _SURROGATE_HINT.search(plain):
        plain = _replace_lone_surrogates(plain)
    try:
        try:
            return _loads(plain)
        except RecursionError:
            deep_at = _too_deep_at(plain)
            if deep_at is not None:
                line, column = _line_column(plain, deep_at)
                raise ConfigError(
                    _location(name, line, column),
                    f"invalid JSON: nested deeper than {MAX_DEPTH} levels",
                ) from None
            return _loads_deep(plain)
    except json.JSONDecodeError as exc:
        message = exc.msg[0].lower() + exc.msg[1:]
        if exc.msg == "Extra data":
            message = "unexpected text after the end of the JSON document"
        raise ConfigError(
            _location(name, exc.lineno, exc.colno), f"invalid JSON: {message}"
        ) from exc
    except RecursionError as exc:  # only if the raised limit was still not enough
        raise ConfigError(
            _location(name, 1, 1), f"invalid JSON: nested too deeply to decode ({exc})"
        ) from None
    except ValueError as exc:
        raise ConfigError(_location(name, 1, 1), f"invalid JSON: {exc}") from exc
