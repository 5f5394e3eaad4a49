"""Any text, any edit, any position: the pure feature functions answer and never raise."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from bottle_engine.manifest.source import Position
from bottle_lsp.actions import code_actions
from bottle_lsp.analysis import analyze
from bottle_lsp.completion import completions
from bottle_lsp.diagnostics import diagnostics
from bottle_lsp.formatting import formatting_edits
from bottle_lsp.hover import hover
from bottle_lsp.lenses import code_lenses
from bottle_lsp.navigation import definition, prepare_rename, references, rename
from bottle_lsp.symbols import document_symbols, folding_ranges
from tests.lsp.conftest import MANIFEST

PATH = Path("/nonexistent/bottle.toml")
TOML_ALPHABET = st.sampled_from(
    [*list("[]{}\"'=.,#\n \t-_aAbz019"), "é", "中", "\x00", "\\", '"""']
)

edits = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1),  # where, as a fraction of the text
        st.integers(min_value=0, max_value=12),  # how much to delete
        st.lists(TOML_ALPHABET, max_size=10).map("".join),  # what to insert
    ),
    max_size=6,
)


def apply(text: str, changes: list[tuple[float, int, str]]) -> str:
    for where, delete, insert in changes:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + delete :]
    return text


def exercise(text: str, positions: list[tuple[int, int]]) -> None:
    analysis = analyze(text, PATH)
    assert analysis.internal_error is None
    diagnostics(analysis)
    document_symbols(analysis)
    folding_ranges(analysis.outline)
    code_lenses(analysis.outline, "u", PATH, [])
    formatting_edits(text)
    everywhere = types.Range(start=types.Position(0, 0), end=types.Position(10_000, 0))
    code_actions(analysis, "u", everywhere)
    for line, character in positions:
        position = Position(line, character)
        completions(analysis, position)
        hover(analysis, position)
        definition(analysis, "u", position)
        references(analysis, "u", position, True)
        prepare_rename(analysis, position)
        rename(analysis, "u", position, "renamed")


positions = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 60)), max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=edits, where=positions)
def test_random_edits_of_a_manifest_never_raise(
    changes: list[tuple[float, int, str]], where: list[tuple[int, int]]
) -> None:
    exercise(apply(MANIFEST, changes), where)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), where=positions)
def test_arbitrary_text_never_raises(text: str, where: list[tuple[int, int]]) -> None:
    exercise(text, where)


def test_every_position_of_the_example_manifest() -> None:
    lines = MANIFEST.split("\n")
    exercise(MANIFEST, [(n, c) for n, line in enumerate(lines) for c in range(len(line) + 1)])
