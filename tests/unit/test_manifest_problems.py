"""Problems as values: their codes, their text and JSON forms, and the key paths they name."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bottle_engine.manifest.problems import CODES, Problem, Severity, format_path
from bottle_engine.manifest.source import Position, Span

PROBLEM = Problem(
    "BB103",
    'bottles.default.backend: "dockr" is not allowed',
    Span(Position(6, 10), Position(6, 17)),
    path=("bottles", "default", "backend"),
    file=Path("/work/bottle.toml"),
)


def test_codes_are_stable_identifiers_with_a_severity_and_a_meaning() -> None:
    for code, (severity, meaning) in CODES.items():
        assert re.fullmatch(r"BB\d{3}", code)
        assert isinstance(severity, Severity) and meaning


def test_text_form_is_path_line_column_severity_code_message() -> None:
    assert PROBLEM.to_text() == (
        '/work/bottle.toml:7:11: error: [BB103] bottles.default.backend: "dockr" is not allowed'
    )


def test_json_form_counts_lines_and_columns_from_one() -> None:
    assert PROBLEM.to_json() == {
        "file": "/work/bottle.toml",
        "line": 7,
        "column": 11,
        "end_line": 7,
        "end_column": 18,
        "severity": "error",
        "code": "BB103",
        "message": 'bottles.default.backend: "dockr" is not allowed',
        "path": "bottles.default.backend",
    }


def test_warnings_are_not_errors() -> None:
    warning = Problem("BB304", "m", PROBLEM.span)
    assert warning.severity is Severity.WARNING and not warning.is_error
    assert PROBLEM.is_error


def test_paths_read_like_toml() -> None:
    assert format_path(("bottles", "default", "egress", "allow", 2)) == (
        "bottles.default.egress.allow[2]"
    )
    assert format_path(("bottles", "b", "git", 0, "name")) == "bottles.b.git[0].name"
    assert format_path(("agents", "my agent", "prompt")) == 'agents."my agent".prompt'
    assert format_path(("agents", "a.b")) == 'agents."a.b"'
    assert format_path(("agents", "é")) == 'agents."é"'
    assert format_path(()) == ""


def _lookup(data: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        assert list(data) == [key]
        data = data[key]
    return data


# Any character, with the ones TOML treats specially made likely.
_KEY = st.text(st.one_of(st.characters(), st.sampled_from('."\\ \x00\x7f\n')), min_size=1)


@given(st.lists(_KEY, min_size=1, max_size=4).map(tuple))
def test_any_key_path_is_a_valid_toml_table_header(keys: tuple[str, ...]) -> None:
    """Paths appear in quick fixes (`[bottles."x.y"]`), so any key must survive the trip."""
    header = format_path(keys)
    assert _lookup(tomllib.loads(f"[{header}]\n"), keys) == {}
