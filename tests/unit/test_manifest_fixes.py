"""Quick fixes (`Problem.fixes`): applying one to the text makes its problem go away.

The language server offers these as code actions, so each must be a correct edit on its own:
replace the text at `fix.span` with `fix.replacement`, validate again, and the problem is gone
without a new error taking its place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bottle_engine.manifest import load_manifest_text
from bottle_engine.manifest.problems import Fix, Problem, format_path
from tests.unit.test_manifest_source import offset

CORPUS = Path(__file__).resolve().parent.parent / "manifests"


def problems_of(text: str) -> list[Problem]:
    """The problems of `text` as the good corpus manifest (its files exist beside it)."""
    return load_manifest_text(text, CORPUS / "good" / "bottle.toml").problems


def apply(text: str, fix: Fix) -> str:
    start, end = offset(text, fix.span.start), offset(text, fix.span.end)
    return text[:start] + fix.replacement + text[end:]


def fixed_clean(text: str, pick: Callable[[Problem], Fix] = lambda p: p.fixes[0]) -> str:
    """`text` with the fix `pick` chooses for its only problem applied; the result must have
    no problem left (a fix that trades one error for another is no fix)."""
    (problem,) = problems_of(text)
    fixed = apply(text, pick(problem))
    assert problems_of(fixed) == []
    return fixed


def corpus_fixes() -> list[tuple[str, Path, Problem, Fix]]:
    cases = []
    for path in sorted(CORPUS.glob("*/*.toml")):
        loaded = load_manifest_text(path.read_text(encoding="utf-8"), path)
        for problem in loaded.problems:
            for fix in problem.fixes:
                case_id = f"{path.name}:{problem.code}:{format_path(problem.path)}:{fix.title}"
                cases.append((case_id, path, problem, fix))
    return cases


CASES = corpus_fixes()


def test_the_corpus_offers_fixes_for_the_fixable_codes() -> None:
    assert {problem.code for _, _, problem, _ in CASES} >= {
        "BB101",
        "BB103",
        "BB201",
        "BB304",
        "BB305",
    }


@pytest.mark.parametrize(
    ("path", "problem", "fix"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_applying_a_fix_removes_its_problem_and_adds_no_error(
    path: Path, problem: Problem, fix: Fix
) -> None:
    text = path.read_text(encoding="utf-8")
    before = load_manifest_text(text, path)
    after = load_manifest_text(apply(text, fix), path)
    assert after.parsed.syntax_error is None, apply(text, fix)
    # Positions move after an edit, so compare problems by what they are about.
    remaining = {(p.code, p.path) for p in after.problems}
    assert (problem.code, problem.path) not in remaining
    assert len(after.errors) < len(before.errors) or not problem.is_error
    assert len(after.problems) < len(before.problems)


def test_misspelt_key_fix_renames_only_the_key() -> None:
    text = '[agents.dev]\nbotle = "default"\n\n[bottles.default]\n'
    (problem,) = problems_of(text)
    assert [f.replacement for f in problem.fixes] == ["bottle"]
    assert apply(text, problem.fixes[0]) == text.replace("botle", "bottle")


def test_misspelt_dotted_key_fix_keeps_the_parent_part() -> None:
    text = '[agents.dev]\n[bottles.default]\negress.alow = ["example.com"]\n'
    assert fixed_clean(text).endswith('egress.allow = ["example.com"]\n')


def test_misspelt_table_header_fix_keeps_the_rest_of_the_header() -> None:
    text = '[agents.dev]\n[bottles.default.egres]\nallow = ["example.com"]\n'
    assert "[bottles.default.egress]\n" in fixed_clean(text)


def test_enum_fix_offers_the_closest_choice_as_a_quoted_string() -> None:
    text = '[agents.dev]\n[bottles.default]\nbackend = "dockr"\n'
    (problem,) = problems_of(text)
    assert [f.replacement for f in problem.fixes] == ['"docker"']
    assert 'backend = "docker"\n' in apply(text, problem.fixes[0])


def test_enum_without_a_close_choice_offers_every_choice() -> None:
    text = '[agents.dev]\n[bottles.default]\nruntime = "zzz"\n'
    (problem,) = problems_of(text)
    assert [f.replacement for f in problem.fixes] == ['"auto"', '"runc"', '"runsc"']


def test_missing_bottle_fix_can_add_the_table() -> None:
    text = '[agents.dev]\nbottle = "build"\n\n[bottles.default]\n'
    fixed = fixed_clean(text, lambda p: next(f for f in p.fixes if f.title.startswith("Add")))
    assert fixed.endswith("\n[bottles.build]\n")


def test_duplicate_upstream_fix_removes_the_whole_section() -> None:
    path = CORPUS / "bad" / "git_duplicate_names.toml"
    text = path.read_text(encoding="utf-8")
    (problem,) = load_manifest_text(text, path).problems
    fixed = load_manifest_text(apply(text, problem.fixes[0]), path)
    assert fixed.problems == []
    assert fixed.manifest is not None
    upstreams = fixed.manifest.bottles["default"].git
    assert [(g.name, g.url) for g in upstreams] == [
        ("origin", "ssh://git@example.com/a.git"),
        ("mirror", "ssh://git@example.com/b.git"),
    ]


def test_secret_host_fix_extends_the_allowlist() -> None:
    text = (
        "[agents.dev]\n[bottles.default]\n"
        'egress.allow = ["example.com"]\n'
        '[bottles.default.secrets.TOKEN]\nfrom_env = "TOKEN"\nhosts = ["api.example.com"]\n'
    )
    assert [p.code for p in problems_of(text)] == ["BB304"]
    assert 'egress.allow = ["example.com", "api.example.com"]' in fixed_clean(text)


def test_missing_bottle_fix_quotes_a_name_with_a_dot() -> None:
    text = '[agents.dev]\nbottle = "web.v2"\n\n[bottles.default]\n'
    (problem,) = problems_of(text)
    assert len(problem.fixes) == 1  # the one that adds the table
    assert fixed_clean(text).endswith('\n[bottles."web.v2"]\n')


def test_a_suggested_name_is_written_as_one_string_whatever_it_holds() -> None:
    """A bottle name is a table key the document's author chose, quotes and line breaks included:
    "Use bottle" must write it as one TOML string, never as text that adds keys of its own."""
    name = 'abcdefgh"\nx = 1\n#'  # close enough to the typo to be suggested
    header = format_path(("bottles", name))
    text = f'[agents.dev]\ncommand = ["true"]\nbottle = "abcdefgz"\n\n[{header}]\n'
    problem = next(p for p in problems_of(text) if p.code == "BB201")
    (use,) = [fix for fix in problem.fixes if fix.title.startswith("Use bottle")]
    fixed = load_manifest_text(apply(text, use), CORPUS / "good" / "bottle.toml")
    assert fixed.parsed.syntax_error is None
    assert fixed.parsed.data["agents"]["dev"] == {"command": ["true"], "bottle": name}
