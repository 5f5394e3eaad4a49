"""The language server's readers of a hostile bottle.toml, which it re-reads on every keystroke.

The attacks cost the old readers seconds (a regex retried from every position, the document
read again for every entry); the new ones read in one pass. Here: they answer what the old ones
answered, and what stays refused. What each attack costs, against an ordinary document of its
size, is timed in benchmarks/bench_hostile_inputs.py, not here.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bottle_engine.manifest.source import TOO_LONG_KEY, Position, parse_toml
from bottle_lsp.cursor import string_at, trailing_run


def test_a_dotted_key_of_many_parts_is_refused_before_tomllib_reads_it() -> None:
    # tomllib grows the key a part at a time: 128 000 characters took 1.7 s a parse
    parsed = parse_toml("[bottles.a]\n" + "a." * 64_000 + "a = 1\n")
    assert parsed.syntax_error == TOO_LONG_KEY
    assert parsed.syntax_error_at == Position(1, 0)
    assert parse_toml("a." * 63 + "a = 1\n").syntax_error is None
    assert parse_toml('x = """' + "a." * 100 + '"""\n# ' + "a." * 100).syntax_error is None


_STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'")  # what string_at answered before


def _string_by_regex(text: str, column: int) -> tuple[str, int, int] | None:
    for match in _STRING.finditer(text):
        if match.start() <= column <= match.end():
            if match.group(1) is not None:
                return match.group(1).replace('\\"', '"').replace("\\\\", "\\"), *match.span()
            return match.group(2), *match.span()
        if match.start() > column:
            break
    return None


@given(st.text(alphabet="\"'\\a\n.", max_size=14), st.integers(-1, 16))
def test_string_at_reads_what_the_string_regex_read(text: str, column: int) -> None:
    assert string_at(text, column) == _string_by_regex(text, column)


@given(st.text(alphabet="a.*:!-\n ", max_size=12))
def test_trailing_run_is_what_a_search_for_the_run_at_the_end_finds(text: str) -> None:
    chars = frozenset("a.*:-")
    found = re.search(r"[a.*:-]*$", text)
    assert found is not None
    assert trailing_run(text, chars) == found.group()
