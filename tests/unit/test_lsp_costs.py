"""What the language server pays for a hostile bottle.toml, which it re-reads on every keystroke.

Each attack document is timed against a document of the same size that the same code reads in
one pass; only their ratio is asserted, with room for a noisy machine. The documents the attacks
use cost the old code seconds (figures in each test) where the baseline costs milliseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from bottle_engine.manifest.source import TOO_LONG_KEY, Position, parse_toml
from bottle_lsp.analysis import analyze
from bottle_lsp.completion import completions
from bottle_lsp.cursor import string_at, trailing_run
from bottle_lsp.hover import hover
from bottle_lsp.outline import outline
from bottle_lsp.symbols import document_symbols, folding_ranges

ROOM = 20  # a linear reader stays within this factor of its baseline; the old code was 100x+


def cost(work: Callable[[], object]) -> float:
    """The least CPU time of a few runs (the least is the one the scheduler disturbed least)."""
    runs = []
    for _ in range(3):
        start = time.process_time()
        work()
        runs.append(time.process_time() - start)
    return max(min(runs), 1e-4)


def assert_linear(
    attack: Callable[[], object], baseline: Callable[[], object], room: float = ROOM
) -> None:
    assert cost(attack) < room * cost(baseline)


def end_of(text: str) -> Position:
    lines = text.split("\n")
    return Position(len(lines) - 1, len(lines[-1]))


def test_completing_after_a_long_run_of_word_characters_is_linear() -> None:
    # `[A-Za-z0-9_.*:/-]*$` searched from every start: 16 000 characters took 0.52 s a keystroke
    attack = analyze("[bottles.a]\nimage = " + "a" * 16_000 + "!")
    baseline = analyze("[bottles.a]\nimage = " + "a!" * 8_000)
    assert_linear(
        lambda: completions(attack, end_of(attack.text)),
        lambda: completions(baseline, end_of(baseline.text)),
    )


def test_hover_on_a_line_of_unclosed_escaped_quotes_is_linear() -> None:
    # a string regex retried from each quote: 32 000 characters took 3.1 s a hover
    attack = analyze('x = "' + '\\"' * 16_000)
    baseline = analyze('x = "' + "ab" * 16_000)
    where = Position(0, 4)
    assert_linear(lambda: hover(attack, where), lambda: hover(baseline, where))


def test_a_header_of_many_parts_is_outlined_in_linear_time() -> None:
    # every prefix of the path was built and hashed: 32 000 characters took 0.49 s
    assert_linear(lambda: outline("[" + "a." * 16_000), lambda: outline("[a]\n" * 16_000), room=4)


def test_a_dotted_key_of_many_parts_is_refused_before_tomllib_reads_it() -> None:
    # tomllib grows the key a part at a time: 128 000 characters took 1.7 s a parse
    parsed = parse_toml("[bottles.a]\n" + "a." * 64_000 + "a = 1\n")
    assert parsed.syntax_error == TOO_LONG_KEY
    assert parsed.syntax_error_at == Position(1, 0)
    assert parse_toml("a." * 63 + "a = 1\n").syntax_error is None
    assert parse_toml('x = """' + "a." * 100 + '"""\n# ' + "a." * 100).syntax_error is None


def test_the_outline_of_many_bottles_is_linear() -> None:
    # every entry re-read the whole document: 3 000 bottles took 15.6 s a request, 20 times
    # what reading the document cost
    bottles = "".join(f"[bottles.b{i}]\nimage = 'x'\n[bottles.b{i}.git]\n" for i in range(3000))
    analysis = analyze(bottles)
    assert len(document_symbols(analysis)[0].children or []) == 3000
    assert_linear(lambda: document_symbols(analysis), lambda: analyze(bottles), room=3)


def test_folding_many_open_arrays_and_headers_is_linear() -> None:
    # each open bracket and each header searched the rest of the document: 0.2-3.4 s
    opened = outline("[bottles.a]\n" + "x = [\n" * 10_000 + "[bottles.b]\n" * 5_000)
    plain = outline("[bottles.a]\n" + "x = 1\n" * 15_000)
    assert_linear(lambda: folding_ranges(opened), lambda: folding_ranges(plain))


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
