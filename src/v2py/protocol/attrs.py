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
(anything else kept as surrogate escapes), so a UTF-8 literal compares as in 4.34;
``len`` of a string counts its UTF-8 bytes, indexing a string gives the one-byte string
at that byte (negative indices from the end), and ``find`` / ``rfind`` give byte
offsets, as Starlark's do. A string literal with a byte escape above 0x7F (``"\xc3"``,
``"\303"``), which is one byte in Starlark and a character in Python, is refused.
"""

from __future__ import annotations

import ast
import logging
import re
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


def _utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _starlark_index(container: object, key: object) -> object:
    """``container[key]``: a string indexes its UTF-8 bytes (Starlark), anything else as
    Python (a dict by key, a list or tuple by position)."""
    if isinstance(container, str):
        if not isinstance(key, int) or isinstance(key, bool):
            raise TypeError("string index: want int")
        data = _utf8(container)
        index = key + len(data) if key < 0 else key
        if not 0 <= index < len(data):
            raise IndexError(f"index {key} out of range: string has {len(data)} bytes")
        return _text(data[index : index + 1])
    if isinstance(key, bool) and isinstance(container, (list, tuple)):
        raise TypeError("index: want int, got bool")
    return container[key]  # type: ignore[index]


def _starlark_call(target: object, method: str, *args: object) -> object:
    """``target.method(*args)`` (a method of :data:`METHODS`); a string's ``find`` and
    ``rfind`` count bytes, as Starlark's."""
    if isinstance(target, str) and method in ("find", "rfind"):
        if not args or not isinstance(args[0], str):
            raise TypeError(f"{method}: want string")
        data = _utf8(target)
        bounds = args[1:]
        if any(b is not None and (not isinstance(b, int) or isinstance(b, bool)) for b in bounds):
            raise TypeError(f"{method}: start and end must be ints or None")
        found = getattr(data, method)(_utf8(args[0]), *bounds)
        return int(found)
    return getattr(target, method)(*args)


class _ToStarlark(ast.NodeTransformer):
    """Indexing and method calls go through :func:`_starlark_index` / :func:`_starlark_call`."""

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        call = ast.Call(
            func=ast.Name(id="_index", ctx=ast.Load()), args=[node.value, node.slice], keywords=[]
        )
        return ast.copy_location(call, node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Attribute):
            args = [node.func.value, ast.Constant(node.func.attr), *node.args]
            call = ast.Call(func=ast.Name(id="_call", ctx=ast.Load()), args=args, keywords=[])
            return ast.copy_location(call, node)
        return node


#: Byte escapes above 0x7F: one byte in a Starlark string, a character in Python's.
_HIGH_BYTE_ESCAPE = re.compile(r"\\(?:x[89a-fA-F][0-9a-fA-F]|[23][0-7]{2})")

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
    if _HIGH_BYTE_ESCAPE.search(code):
        raise ValueError("byte escapes above \\x7f in strings are not supported by v2py")
    tree = ast.fix_missing_locations(_ToStarlark().visit(tree))
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
                self._code, _GLOBALS, {"attrs": attributes}
            )
        except Exception as exc:  # a Starlark evaluation error: not satisfied (4.34)
            log.info("router: attr matcher > %s", exc)
            return False
        return bool(result)


_GLOBALS: dict[str, object] = {
    "__builtins__": {},
    "len": _starlark_len,
    "_index": _starlark_index,
    "_call": _starlark_call,
}
