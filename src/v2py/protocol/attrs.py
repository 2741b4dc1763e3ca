"""Routing rules' ``attrs``: a Starlark expression over the request attributes.

4.34 (``app/router/condition.go`` ``AttributeMatcher``) compiles ``satisfied=(CODE)``
with Starlark, the dict ``attrs`` predeclared, and a rule matches when ``satisfied`` is
true; an evaluation error (a missing key, comparing a string with a number) counts as
false. Only the HTTP inbound gives a session attributes (a plain HTTP request:
``:method`` upper-cased, ``:path`` the decoded URL path, every header left after the
hop-by-hop ones are removed, lower-cased name -> first value, ``user-agent`` always
present); every other session has none and the condition never matches.

v2py evaluates the part of Starlark whose meaning Python shares exactly: ``and``,
``or``, ``not``, one comparison (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``,
``not in``; Starlark refuses chains), indexing, string / int / bool / None literals and
list / tuple literals, ``len(...)``, ``attrs.get(...)`` and the string methods in
:data:`METHODS`. Anything else is refused when the config is loaded (one line naming
``attrs``), never guessed. The checked expression is compiled once and evaluated with
no builtins but ``len``; no attribute other than those methods is reachable.

Starlark strings are bytes: the header values are the request's bytes read as UTF-8
(anything else kept as surrogate escapes), so a UTF-8 literal compares as in 4.34, and
``len`` of a string counts its UTF-8 bytes. Left different: indexing a non-ASCII string
gives a character where Starlark gives a byte.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping
from types import CodeType

__all__ = ["METHODS", "AttrsMatcher", "compile_attrs"]

log = logging.getLogger(__name__)


def _starlark_len(value: object) -> int:
    """Starlark's ``len``: a string's length is its UTF-8 bytes (header bytes that are
    not UTF-8 were kept as surrogate escapes), anything else counts its elements."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogateescape"))
    return len(value)  # type: ignore[arg-type]


#: Methods callable in an expression: Starlark's dict ``get`` and string methods whose
#: results are the same in Python for the same arguments.
METHODS = frozenset(
    {
        "get",
        "startswith",
        "endswith",
        "lower",
        "upper",
        "strip",
        "lstrip",
        "rstrip",
        "find",
        "rfind",
        "count",
        "split",
    }
)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_NAMES = frozenset({"attrs", "len"})
_MAX_CODE_CHARS = 4096


def _describe(node: ast.AST) -> str:
    return type(node).__name__


def _check(node: ast.AST) -> None:
    """Raise ValueError unless ``node`` is in the supported subset."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.Not):
            raise ValueError(f"the operator {_describe(node.op)} is not supported by v2py")
        _check(node.operand)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise ValueError("chained comparisons are not Starlark (one operator at a time)")
        if not isinstance(node.ops[0], _COMPARISONS):
            raise ValueError(f"the operator {_describe(node.ops[0])} is not Starlark")
        for operand in (node.left, node.comparators[0]):
            if isinstance(operand, ast.Constant) and isinstance(operand.value, bool):
                # Starlark's True is no 1 (Python's is): compare the value itself instead
                raise ValueError("comparing with True or False is not supported by v2py")
            _check(operand)
    elif isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Slice):
            raise ValueError("slices are not supported by v2py")
        _check(node.value)
        _check(node.slice)
    elif isinstance(node, ast.Constant):
        if node.value is not None and type(node.value) not in (str, int, bool):
            raise ValueError(f"the literal {node.value!r} is not supported by v2py")
    elif isinstance(node, ast.Name):
        if node.id not in _NAMES and node.id not in ("True", "False", "None"):
            raise ValueError(f"unknown name {node.id!r} (only attrs and len)")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            _check(element)
    elif isinstance(node, ast.Call):
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ValueError("keyword and * arguments are not supported by v2py")
        func = node.func
        if isinstance(func, ast.Name):
            if func.id != "len":
                raise ValueError(f"the function {func.id!r} is not supported by v2py")
        elif isinstance(func, ast.Attribute):
            if func.attr not in METHODS:
                raise ValueError(f"the method {func.attr!r} is not supported by v2py")
            _check(func.value)
        else:
            raise ValueError("only len(...) and methods can be called")
        for arg in node.args:
            _check(arg)
    else:
        raise ValueError(f"{_describe(node)} is not supported in attrs by v2py")


def compile_attrs(code: str) -> AttrsMatcher:
    """Check and compile ``code``; raises ValueError (one line) when it is not a
    supported expression."""
    if len(code) > _MAX_CODE_CHARS:
        raise ValueError(f"longer than {_MAX_CODE_CHARS} characters")
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a valid expression: {exc.msg}") from None
    _check(tree.body)
    return AttrsMatcher(code, compile(tree, "<attrs>", "eval"))


class AttrsMatcher:
    """A compiled ``attrs`` condition (see the module docstring)."""

    __slots__ = ("_code", "code")

    def __init__(self, code: str, compiled: CodeType) -> None:
        self.code = code
        self._code = compiled

    def matches(self, attributes: Mapping[str, str] | None) -> bool:
        """True when the session has attributes and the expression is true for them."""
        if attributes is None:
            return False
        try:
            # The tree was checked: only the names and methods above are reachable.
            result = eval(  # noqa: S307
                self._code, {"__builtins__": {}, "len": _starlark_len}, {"attrs": attributes}
            )
        except Exception as exc:  # a Starlark evaluation error: not satisfied (4.34)
            log.info("router: attr matcher > %s", exc)
            return False
        return bool(result)
