"""The line-based outline and cursor context: what the editor features stand on when the TOML
is half typed."""

from __future__ import annotations

import pytest

from bottle_engine.manifest.source import Position
from bottle_lsp.cursor import cursor_at, string_at
from bottle_lsp.outline import outline, split_key

DOC = """\
[agents.dev]
bottle = "we
prompt = \"\"\"
[not.a.header]
\"\"\"
[[bottles.web.git]]
name = "a"
[[bottles.web.git]]
na
[bottles.web.egress]
allow = [
  "x.com",
  "
]
[bottles."my box".secrets.TOKEN]
"""


def test_headers_resolve_table_array_indices_and_skip_multiline_strings() -> None:
    found = outline(DOC)
    assert [(h.line, h.path) for h in found.headers] == [
        (0, ("agents", "dev")),
        (5, ("bottles", "web", "git", 0)),
        (7, ("bottles", "web", "git", 1)),
        (9, ("bottles", "web", "egress")),
        (14, ("bottles", "my box", "secrets", "TOKEN")),
    ]
    assert found.in_multiline_string == frozenset({3, 4})
    assert found.names("bottles") == ["web", "my box"]


def test_split_key_keeps_quotes_in_the_positions() -> None:
    assert [(s.name, s.start, s.end) for s in split_key('bottles."my box".git', 1)] == [
        ("bottles", 1, 8),
        ("my box", 9, 17),
        ("git", 18, 21),
    ]


@pytest.mark.parametrize(
    ("position", "kind", "table", "key", "prefix", "in_string"),
    [
        (Position(1, 12), "value", ("agents", "dev"), ("agents", "dev", "bottle"), "we", True),
        (Position(3, 3), "value", ("agents", "dev"), ("agents", "dev", "prompt"), "", True),
        (Position(8, 2), "key", ("bottles", "web", "git", 1), (), "na", False),
        (
            Position(12, 3),
            "value",
            ("bottles", "web", "egress"),
            ("bottles", "web", "egress", "allow"),
            "",
            True,
        ),
        (Position(14, 12), "header", ("bottles",), (), '"my', False),
        (Position(0, 5), "header", (), (), "agen", False),
    ],
)
def test_cursor_context(
    position: Position,
    kind: str,
    table: tuple[str, ...],
    key: tuple[str, ...],
    prefix: str,
    in_string: bool,
) -> None:
    cursor = cursor_at(outline(DOC), position)
    assert (cursor.kind, cursor.table, cursor.key, cursor.prefix, cursor.in_string) == (
        kind,
        table,
        key,
        prefix,
        in_string,
    )


def test_positions_outside_the_text_are_nothing() -> None:
    assert cursor_at(outline(DOC), Position(999, 0)).kind == "none"
    assert cursor_at(outline(""), Position(0, 40)).kind == "key"


def test_string_at_finds_the_literal_under_the_cursor() -> None:
    assert string_at('bottle = "web" # "x"', 11) == ("web", 9, 14)
    assert string_at("skills = ['a', 'b']", 16) == ("b", 15, 18)
    assert string_at('a = "\\"q\\""', 6) == ('"q"', 4, 11)
    assert string_at("a = 1", 4) is None
