"""Property-based tests: no text makes the loader raise, and every span stays in the document.

The language server validates on every keystroke, so half-typed manifests are the normal case:
the loader must turn any text into diagnostics, never an exception. Where the text is valid
TOML, the scanner's spans must agree with `tomllib` about what each value is.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bottle_engine.manifest import load_manifest_text
from bottle_engine.manifest.source import KeyPath, ParsedToml, Position, Span, parse_toml
from tests.unit.test_manifest_source import under

CORPUS = Path(__file__).resolve().parent.parent / "manifests"
MANIFEST = CORPUS / "good" / "bottle.toml"  # anchors relative paths beside the corpus files
SEEDS = [
    (CORPUS / "good" / name).read_text(encoding="utf-8")
    for name in ("full.toml", "inline_and_dotted.toml", "warnings_only.toml", "two_bottles.toml")
]

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Characters that matter to TOML's grammar, so that random edits hit interesting states.
TOML_CHARS = st.sampled_from([*"[]{}=.,\"'#\\\n\r\t *:/0123456789abcxyz-_", '"""', "'''"])


def within(text: str, position: Position) -> bool:
    lines = text.split("\n")
    return 0 <= position.line < len(lines) and 0 <= position.character <= len(lines[position.line])


def ordered(span: Span) -> bool:
    return (span.start.line, span.start.character) <= (span.end.line, span.end.character)


def assert_loads_cleanly(text: str) -> None:
    """Loading never raises; every problem and fix span is an ordered span inside the text."""
    loaded = load_manifest_text(text, MANIFEST)
    for problem in loaded.problems:
        for span in (problem.span, *(fix.span for fix in problem.fixes)):
            assert within(text, span.start), (problem, text)
            assert within(text, span.end), (problem, text)
            assert ordered(span), problem
        assert problem.to_text()
        assert problem.to_json()["line"] >= 1
    if loaded.parsed.syntax_error is not None:
        assert [p.code for p in loaded.problems] == ["BB001"]
    if not loaded.errors:
        assert loaded.manifest is not None


def data_at(data: Any, path: KeyPath) -> Any:
    for step in path:
        data = data[step]
    return data


def paths_of(data: Any, prefix: KeyPath = ()) -> set[KeyPath]:
    """Every key path and array index in the data, e.g. ("bottles", "x", "git", 0, "name")."""
    children: list[tuple[str | int, Any]] = []
    if isinstance(data, dict):
        children = list(data.items())
    elif isinstance(data, list):
        children = list(enumerate(data))
    found: set[KeyPath] = {prefix} if prefix else set()
    for step, child in children:
        found |= paths_of(child, (*prefix, step))
    return found


def assert_spans_agree_with_tomllib(parsed: ParsedToml) -> None:
    """Every key and element is located; the text under each value span is that value."""
    assert paths_of(parsed.data) == set(parsed.locations), parsed.text
    for path, located in parsed.locations.items():
        assert within(parsed.text, located.key.start) and within(parsed.text, located.value.end)
        if located.is_header or (located.key == located.value and isinstance(path[-1], str)):
            continue  # headers and implicit tables (parts of dotted keys) have no value text
        written = under(parsed, located.value)
        assert tomllib.loads(f"v = {written}")["v"] == data_at(parsed.data, path), (path, written)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A corpus manifest after a few random edits: deletions, insertions, swapped lines."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["delete", "insert", "swap", "duplicate"]))
        if edit == "delete" and text:
            start = draw(st.integers(0, len(text) - 1))
            text = text[:start] + text[start + draw(st.integers(1, 8)) :]
        elif edit == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.lists(TOML_CHARS, max_size=4).map("".join)) + text[at:]
        else:
            lines = text.split("\n")
            first = draw(st.integers(0, len(lines) - 1))
            second = draw(st.integers(0, len(lines) - 1))
            if edit == "swap":
                lines[first], lines[second] = lines[second], lines[first]
            else:
                lines.insert(second, lines[first])
            text = "\n".join(lines)
    return text


SNIPPETS = [
    "[agents.dev]",
    '[agents."quoted name"]',
    "[bottles.default]",
    "[bottles.default.egress]",
    "[bottles.default.secrets.TOKEN]",
    "[[bottles.default.git]]",
    'bottle = "default"',
    'prompt = """\nmulti "line" \\"""\n"""',
    "prompt = '''literal\\'''",
    'command = [\n  "claude", # why\n  "--x",\n]',
    "skills = []",
    "copy_cwd = false",
    "cpus = 1.5",
    "cpus = 0",
    'memory = "4g"',
    'memory = "lots"',
    'backend = "dockr"',
    'allow = ["example.com", "*.example.org:8443", "[::1]:80", "10.0.0.0/8"]',
    'allow = ["http://x"]',
    'egress.allow = ["a.example"]',
    'env = { LANG = "C.UTF-8", N = { M = 1 } }',
    'from_env = "TOKEN"',
    'hosts = ["api.example.com"]',
    'name = "origin"',
    'url = "ssh://git@example.com/r.git"',
    'push_branches = ["bot/*"]',
    "agents.x.copy_cwd = true",
    "# a comment",
    "",
]


@given(st.text())
@PROPERTY_SETTINGS
def test_arbitrary_text_never_raises(text: str) -> None:
    assert_loads_cleanly(text)


@given(st.lists(TOML_CHARS, max_size=60).map("".join))
@PROPERTY_SETTINGS
def test_toml_punctuation_soup_never_raises(text: str) -> None:
    assert_loads_cleanly(text)


@given(mutated())
@PROPERTY_SETTINGS
def test_edited_manifests_never_raise(text: str) -> None:
    assert_loads_cleanly(text)


@given(mutated())
@PROPERTY_SETTINGS
def test_spans_of_edited_valid_manifests_agree_with_tomllib(text: str) -> None:
    parsed = parse_toml(text)
    if parsed.syntax_error is None:
        assert_spans_agree_with_tomllib(parsed)


@given(st.lists(st.sampled_from(SNIPPETS), max_size=12).map("\n".join), st.booleans())
@PROPERTY_SETTINGS
def test_snippet_documents_load_and_locate_consistently(text: str, crlf: bool) -> None:
    if crlf:
        text = text.replace("\n", "\r\n")
    assert_loads_cleanly(text)
    parsed = parse_toml(text)
    if parsed.syntax_error is None:
        assert_spans_agree_with_tomllib(parsed)


_SCALARS = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.floats(allow_nan=False))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=6), inner)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(min_size=1, max_size=6), _VALUES, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_documents_written_by_a_toml_library_are_located_consistently(
    data: dict[str, Any],
) -> None:
    """Keys that need quoting, escaped strings, arrays of tables: as another tool writes them."""
    parsed = parse_toml(tomlkit.dumps(data))
    assert parsed.syntax_error is None
    assert_spans_agree_with_tomllib(parsed)


def test_every_seed_is_itself_located_consistently() -> None:
    for seed in SEEDS:
        parsed = parse_toml(seed)
        assert parsed.syntax_error is None
        assert_spans_agree_with_tomllib(parsed)
