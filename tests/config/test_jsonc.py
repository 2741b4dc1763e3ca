"""Commented JSON (v2ray-core infra/conf/json/reader.go behaviour)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.config.jsonc import parse_json, strip_comments
from v2py.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1} // tail', {"a": 1}),
        ('# first line\n{"a": 1}', {"a": 1}),
        ('{"a": /* inline */ 1}', {"a": 1}),
        ('{"a":\n/* spanning\n lines */ 1}', {"a": 1}),
        ('{"a": "x // y # z /* w */"}', {"a": "x // y # z /* w */"}),
        ('{"a": "quote \\" // still string"}', {"a": 'quote " // still string'}),
        ('{"a": "back\\\\"} // comment', {"a": "back\\"}),
        ('{"a": 1 /* ** */}', {"a": 1}),
        ('{"a": 1 /***/}', {"a": 1}),
        ('\ufeff{"a": 1}', {"a": 1}),
        ('{"a": [1, 2] # x\n}', {"a": [1, 2]}),
    ],
)
def test_comments_are_removed(text: str, expected: object) -> None:
    assert parse_json(text, "c.json") == expected


def test_single_quoted_strings_protect_markers() -> None:
    assert strip_comments("'a // b' // c") == "'a // b'     "


def test_positions_are_kept() -> None:
    text = '{\n  /* x */ "a": 1, # y\n  "b": // z\n 2}'
    stripped = strip_comments(text)
    assert len(stripped) == len(text)
    assert stripped.count("\n") == text.count("\n")
    assert json.loads(stripped) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/* open", "c.json:1:1"),
        ('{\n "a": 1 /* open\n}', "c.json:2:9"),
        ('{"a": 1} /* "*/ /*', "c.json:1:17"),
    ],
)
def test_unclosed_block_comment(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_json(text, "c.json")
    assert info.value.path == path
    assert "never closed" in info.value.message


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("", "c.json:1:1"),
        ('{"a": }', "c.json:1:7"),
        ('{"a": 1}}', "c.json:1:9"),
        ('{"a": 1,}', "c.json:1:9"),
        ("{\n\n  'a': 1}", "c.json:3:3"),
    ],
)
def test_bad_json_has_line_and_column(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_json(text, "c.json")
    assert info.value.path == path
    assert info.value.message.startswith("invalid JSON: ")
    assert "\n" not in str(info.value)


def test_location_without_a_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_json("[", "")
    assert info.value.path == "1:2"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_plain_json_passes_through(value: object) -> None:
    text = json.dumps(value)
    assert parse_json(text) == value
    assert strip_comments(text) == text


@given(_json_values, st.text(alphabet=st.characters(blacklist_characters="\r\n")))
def test_line_comment_after_any_document_is_ignored(value: object, comment: str) -> None:
    text = json.dumps(value, indent=1)
    assert parse_json(f"{text} // {comment}\n# {comment}") == value
