"""The schema is the single source of truth: docs, the typed model, JSON Schema and README agree."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bottle_engine.manifest import load_manifest_file
from bottle_engine.manifest.model import Agent, Bottle, Egress, GitUpstream, Secret
from bottle_engine.manifest.problems import CODES, codes_markdown
from bottle_engine.manifest.schema import (
    AGENT_FIELDS,
    BOTTLE_FIELDS,
    FORMAT_PATTERNS,
    GIT_FIELDS,
    MISSING,
    ROOT,
    SECRET_FIELDS,
    Field,
    Format,
    Ref,
    default_at,
    defaults_of,
    field_at,
    format_match,
    implied_bottle,
    key_referring,
    markdown_reference,
    table_at,
    to_json_schema,
    walk,
)

REPO = Path(__file__).resolve().parent.parent.parent
CORPUS = REPO / "tests" / "manifests"
GOOD = sorted((CORPUS / "good").glob("*.toml"))
FIELDS = list(walk())


def names(fields: tuple[Field, ...]) -> set[str]:
    return {f.name for f in fields}


def dataclass_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# -- documentation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[path for path, _ in FIELDS])
def test_every_field_is_documented(path: str, field: Field) -> None:
    assert len(field.doc) > 20 and field.doc.endswith((".", ")")), path
    assert len(field.enum_docs) == len(field.enum), "one line of documentation per choice"


@pytest.mark.parametrize(
    ("path", "field"),
    [(p, f) for p, f in FIELDS if f.example],
    ids=[p for p, f in FIELDS if f.example],
)
def test_every_example_is_valid_toml_for_its_own_field(path: str, field: Field) -> None:
    assert field.example is not None
    (key, value), *rest = tomllib.loads(field.example).items()
    assert key == field.name and not rest
    # The example's value is accepted by the field's own JSON Schema.
    jsonschema.validate(value, _json_of(path))


def test_required_fields_have_no_default() -> None:
    for path, field in FIELDS:
        if field.required:
            assert field.default is MISSING, path


# -- one source of truth for names -----------------------------------------------------------------


def test_model_dataclasses_have_exactly_the_schema_fields() -> None:
    """Each dataclass holds the schema's keys plus, for named tables, the table's own name."""
    egress = field_at(("bottles", "x", "egress"))
    assert egress is not None
    assert dataclass_names(Agent) == names(AGENT_FIELDS) | {"name"}
    assert dataclass_names(Bottle) == names(BOTTLE_FIELDS) | {"name"}
    assert dataclass_names(Secret) == names(SECRET_FIELDS) | {"name"}
    assert dataclass_names(GitUpstream) == names(GIT_FIELDS)
    assert dataclass_names(Egress) == names(egress.children)


def test_model_defaults_come_from_the_schema() -> None:
    manifest = load_manifest_file(CORPUS / "good" / "minimal.toml").require()
    agent, bottle = manifest.agents["dev"], manifest.bottles["default"]
    agent_defaults = defaults_of(field_at(("agents", "dev")) or ROOT)
    assert list(agent.command) == agent_defaults["command"]
    assert list(agent.skills) == agent_defaults["skills"]
    assert agent.copy_cwd == agent_defaults["copy_cwd"]
    bottle_defaults = defaults_of(field_at(("bottles", "default")) or ROOT)
    for key in ("backend", "runtime", "memory", "supervise", "env", "build_args"):
        assert getattr(bottle, key) == bottle_defaults[key], key
    assert bottle.cpus == bottle_defaults["cpus"]
    assert bottle.dockerfile == CORPUS / "good" / bottle_defaults["dockerfile"]
    assert bottle.egress.allow == ()


def test_defaults_are_fresh_copies() -> None:
    table = field_at(("agents", "dev"))
    assert table is not None
    defaults_of(table)["command"].append("--oops")
    assert defaults_of(table)["command"] == ["claude"]


# -- walking the schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("agents",), "agents"),
        (("agents", "dev"), "AGENT"),
        (("agents", "dev", "prompt_file"), "prompt_file"),
        (("agents", "dev", "command", 2), "command"),
        (("bottles", "b", "egress", "allow", 0), "allow"),
        (("bottles", "b", "env", "LANG"), "env"),
        (("bottles", "b", "secrets", "TOKEN"), "SECRET"),
        (("bottles", "b", "secrets", "TOKEN", "hosts"), "hosts"),
        (("bottles", "b", "git", 3, "url"), "url"),
        (("bottles", "b", "git", 0), "NAME"),
    ],
)
def test_field_at_resolves_names_and_indices(path: tuple[str | int, ...], expected: str) -> None:
    found = field_at(path)
    assert found is not None and found.name == expected


@pytest.mark.parametrize(
    "path",
    [("agent",), ("agents", "dev", "image"), ("bottles", "b", "git", "url"), ("agents", 0)],
)
def test_field_at_returns_none_off_the_schema(path: tuple[str | int, ...]) -> None:
    assert field_at(path) is None


def test_table_at_gives_the_keys_that_may_be_written_there() -> None:
    assert table_at(()) is ROOT
    agent_table = table_at(("agents", "dev"))
    assert agent_table is not None and names(agent_table.children) == names(AGENT_FIELDS)
    git_table = table_at(("bottles", "b", "git", 0))
    assert git_table is not None and names(git_table.children) == names(GIT_FIELDS)
    assert table_at(("bottles", "b", "memory")) is None


# -- JSON Schema -----------------------------------------------------------------------------------


def _json_of(display_path: str) -> dict[str, Any]:
    """The JSON Schema of one field, found by its `walk()` display path."""
    node: dict[str, Any] = to_json_schema()
    for part in re.findall(r"[^.\[\]]+|\[\]", display_path):
        if part == "[]":
            node = node["items"]
        elif part.isupper():  # AGENT, BOTTLE, SECRET: the named table's item
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


def test_json_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = to_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_json_schema_accepts_the_good_corpus(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(to_json_schema()).validate(data)


@pytest.mark.parametrize(
    "name",
    [
        "unknown_keys.toml",
        "unknown_table.toml",
        "wrong_types.toml",
        "bad_enums.toml",
        "egress_intercept_unknown.toml",
        "missing_required.toml",
        "memory_malformed.toml",
        "top_level_typo.toml",
    ],
)
def test_json_schema_rejects_what_the_validator_rejects_by_shape(name: str) -> None:
    data = tomllib.loads((CORPUS / "bad" / name).read_text(encoding="utf-8"))
    assert not jsonschema.Draft202012Validator(to_json_schema()).is_valid(data)


def test_json_schema_rejects_an_unknown_key_anywhere() -> None:
    validator = jsonschema.Draft202012Validator(to_json_schema())
    good = {"agents": {"dev": {}}, "bottles": {"default": {"egress": {"allow": []}}}}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "colour": "red"})
    assert not validator.is_valid({"agents": {"dev": {"imge": "x"}}})
    assert not validator.is_valid({"bottles": {"b": {"egress": {"alow": []}}}})
    assert not validator.is_valid({"bottles": {"b": {"git": [{"name": "o", "url": "u", "x": 1}]}}})


def test_json_schema_carries_docs_defaults_and_enums() -> None:
    backend = _json_of("bottles.BOTTLE.backend")
    assert backend["enum"] == ["docker", "smolmachines"]
    assert backend["default"] == "docker"
    assert backend["description"]
    assert _json_of("bottles.BOTTLE.git[].url")["type"] == "string"
    assert _json_of("bottles.BOTTLE.git")["items"]["required"] == ["name", "url"]


# -- the README ------------------------------------------------------------------------------------


def test_reference_lists_every_field_once() -> None:
    table = markdown_reference()
    for path, field in FIELDS:
        cell = f"`[{path}]`" if field.is_table else f"`{path}`"
        assert table.count(f"| {cell} |") == 1, path


def test_reference_rows_have_four_cells() -> None:
    """A bare `|` inside a cell (e.g. in an enum's type) would add columns."""
    for row in markdown_reference().splitlines():
        assert len(re.findall(r"(?<!\\)\|", row)) == 5, row


def _readme_block(marker: str) -> str:
    readme = REPO / "README.md"
    if not readme.exists():
        pytest.skip("README.md does not exist yet; the generated reference lives there")
    text = readme.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert found, f"README.md has no <!-- {marker}:start/end --> block"
    return found.group(1)


def test_readme_manifest_reference_is_the_generated_one() -> None:
    assert _readme_block("manifest-reference") == markdown_reference(), (
        "README.md is stale: run scripts/update-readme"
    )


def test_readme_lists_every_problem_code() -> None:
    assert _readme_block("problem-codes") == codes_markdown(), "run scripts/update-readme"


def test_codes_table_has_one_row_per_code() -> None:
    rows = codes_markdown().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(CODES)


@pytest.mark.parametrize(
    ("agent", "bottles", "expected"),
    [
        ({"bottle": "web"}, ["web", "db"], "web"),
        ({"bottle": "ghost"}, ["web"], "ghost"),  # named, even if missing: validation says so
        ({}, ["only"], "only"),
        ({}, ["web", "db"], None),
        ({}, [], None),
        ({"bottle": 3}, ["only"], None),  # a wrong type decides nothing
    ],
)
def test_implied_bottle_is_the_named_one_or_the_only_one(
    agent: dict[str, Any], bottles: list[str], expected: str | None
) -> None:
    assert implied_bottle(agent, bottles) == expected


def test_references_and_defaults_are_read_from_the_fields() -> None:
    agent = field_at(("agents", "dev"))
    assert agent is not None and key_referring(agent, Ref.BOTTLE) == "bottle"
    assert field_at(("agents", "dev", "skills", 0)).refers_to == Ref.SKILL  # type: ignore[union-attr]
    assert default_at(("bottles", "web", "dockerfile")) == "Dockerfile"
    assert default_at(("bottles", "web", "context")) == "."
    assert default_at(("bottles", "web", "nope")) is MISSING


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        (Format.NAME, "web-1.x_y", "-web"),
        (Format.MEMORY, "1.5g", "4 gb"),
        (Format.BRANCH_GLOB, "bot/*", "bot branch"),
    ],
)
def test_validation_and_the_json_schema_use_the_same_pattern(
    fmt: Format, good: str, bad: str
) -> None:
    """The JSON Schema (for editors without the language server) says what validation says."""
    assert format_match(fmt, good) and not format_match(fmt, bad)
    exported = json.dumps(to_json_schema())
    assert json.dumps(FORMAT_PATTERNS[fmt]) in exported
