"""The manifest corpus: every file states its exact diagnostics, and the validator must agree.

Each file under `tests/manifests/{good,bad}/` begins with one comment line per expected problem:

    # expect: BB101 error 3:1 agents.reviewer.botle

(code, severity, 1-based line:column of the start, key path; the path is left out for problems
about the whole document). The list must match exactly and in order. Good files may only
expect warnings; bad files expect at least one error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottle_engine.manifest import load_manifest_file
from bottle_engine.manifest.problems import CODES, Problem, format_path

CORPUS = Path(__file__).resolve().parent.parent / "manifests"
GOOD = sorted((CORPUS / "good").glob("*.toml"))
BAD = sorted((CORPUS / "bad").glob("*.toml"))

_EXPECT = re.compile(r"^# expect: (BB\d{3}) (error|warning) (\d+):(\d+)(?: (.+))?$")


@dataclass(frozen=True)
class Expected:
    code: str
    severity: str
    line: int
    column: int
    path: str

    @classmethod
    def of(cls, problem: Problem) -> Expected:
        start = problem.span.start
        return cls(
            problem.code,
            problem.severity.value,
            start.line + 1,
            start.character + 1,
            format_path(problem.path),
        )


def expectations(path: Path) -> list[Expected]:
    """The `# expect:` header of a corpus file; a malformed header line fails loudly."""
    expected = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# expect:"):
            break
        found = _EXPECT.match(line)
        assert found, f"{path.name}: malformed expectation line {line!r}"
        code, severity, row, column, key_path = found.groups()
        expected.append(Expected(code, severity, int(row), int(column), key_path or ""))
    return expected


def _ids(paths: list[Path]) -> list[str]:
    return [f"{path.parent.name}/{path.name}" for path in paths]


@pytest.mark.parametrize("path", GOOD + BAD, ids=_ids(GOOD + BAD))
def test_manifest_has_exactly_its_stated_problems(path: Path) -> None:
    loaded = load_manifest_file(path)
    expected = expectations(path)
    assert [Expected.of(p) for p in loaded.problems] == expected
    # Good files may only expect warnings and yield the typed model; bad ones expect an error.
    is_bad = path.parent.name == "bad"
    assert any(e.severity == "error" for e in expected) == is_bad
    assert (loaded.manifest is None) == is_bad


def test_corpus_covers_every_problem_code() -> None:
    stated = {e.code for path in GOOD + BAD for e in expectations(path)}
    # BB002 needs a file over 256 KiB: test_manifest_size.py writes its own. BB003 needs more
    # problems than a corpus file should list: test_manifest_attacks.py makes them.
    assert stated | {"BB002", "BB003"} == set(CODES)


def test_severity_in_corpus_matches_the_code_table() -> None:
    for path in GOOD + BAD:
        for expected in expectations(path):
            assert expected.severity == CODES[expected.code][0].value, path.name


@pytest.mark.parametrize("path", BAD, ids=_ids(BAD))
def test_every_message_names_its_key_path(path: Path) -> None:
    for problem in load_manifest_file(path).problems:
        assert format_path(problem.path) in problem.message


@pytest.mark.parametrize("path", BAD, ids=_ids(BAD))
def test_problems_point_at_text_not_at_nothing(path: Path) -> None:
    """Apart from whole-document ones, every problem's span covers some of the text."""
    for problem in load_manifest_file(path).problems:
        if problem.code in ("BB001", "BB205"):
            continue
        start, end = problem.span.start, problem.span.end
        assert (end.line, end.character) > (start.line, start.character), problem


def test_bad_corpus_values_are_underlined_exactly() -> None:
    """A value problem's span is the TOML value itself, quotes included."""
    path = CORPUS / "bad" / "bad_enums.toml"
    lines = path.read_text(encoding="utf-8").split("\n")
    spans = {
        format_path(p.path): lines[p.span.start.line][p.span.start.character : p.span.end.character]
        for p in load_manifest_file(path).problems
    }
    assert spans == {
        "bottles.default.backend": '"dockr"',
        "bottles.default.runtime": '"kata"',
    }


def test_syntax_error_message_carries_no_position_noise() -> None:
    for name in ("syntax_missing_value.toml", "syntax_unterminated_string.toml"):
        (problem,) = load_manifest_file(CORPUS / "bad" / name).problems
        assert "(at " not in problem.message
        assert problem.message.startswith("TOML syntax error: ")


def test_unknown_key_suggests_the_closest_schema_key() -> None:
    problems = load_manifest_file(CORPUS / "bad" / "unknown_keys.toml").problems
    messages = {format_path(p.path): p.message for p in problems}
    assert "did you mean 'bottle'?" in messages["agents.reviewer.botle"]
    assert "did you mean 'allow'?" in messages["bottles.default.egress.alow"]
    # No close match: the message lists what is allowed instead.
    assert "expected one of 'agents', 'bottles'" in messages["colour"]


def test_missing_bottle_lists_the_defined_bottles_and_suggests_one() -> None:
    problems = load_manifest_file(CORPUS / "bad" / "missing_bottle.toml").problems
    assert "did you mean 'default'?" in problems[0].message
    assert "defined: 'default'" in problems[1].message
