"""The pure feature functions, called directly (the wire is tested in tests/lsp)."""

from __future__ import annotations

import asyncio
import threading
import tomllib
from pathlib import Path

import pytest
from lsprotocol import types

from bottle_engine.manifest import schema
from bottle_engine.manifest.source import KeyPath, Position
from bottle_lsp.analysis import analyze
from bottle_lsp.bottles import BottlesCache
from bottle_lsp.commands import agents_of
from bottle_lsp.completion import completions
from bottle_lsp.diagnostics import diagnostics
from bottle_lsp.hover import hover
from bottle_lsp.lenses import code_lenses
from bottle_lsp.navigation import references, rename
from tests.lsp.conftest import MANIFEST

PATH = Path("/nonexistent/project/bottle.toml")


def labels(items: list[types.CompletionItem]) -> list[str]:
    return [item.label for item in items if item.kind != types.CompletionItemKind.Snippet]


def test_every_key_of_every_schema_table_is_offered_in_an_empty_table() -> None:
    tables = 0
    key: KeyPath
    for path, field in schema.walk():
        concrete = path.replace("AGENT", "a").replace("BOTTLE", "b").replace("SECRET", "s")
        concrete = concrete.replace("[]", "")
        if field.kind == schema.Kind.NAMED_TABLES:
            text, key = f"[{concrete}.x]\n\n", (*concrete.split("."), "x")
        elif field.kind == schema.Kind.TABLE_ARRAY:
            text, key = f"[[{concrete}]]\n\n", (*concrete.split("."), 0)
        elif field.kind == schema.Kind.TABLE:
            text, key = f"[{concrete}]\n\n", tuple(concrete.split("."))
        else:
            continue
        table = schema.table_at(key)
        assert table is not None, path
        expected = [child.name for child in table.children if not child.is_table]
        assert labels(completions(analyze(text, PATH), Position(1, 0))) == expected, path
        tables += 1
    assert tables == 5  # agents, bottles, egress, secrets, git


def test_enum_values_come_from_the_schema() -> None:
    text = '[bottles.b]\nruntime = ""\n'
    items = completions(analyze(text, PATH), Position(1, 11))
    field = schema.field_at(("bottles", "b", "runtime"))
    assert field is not None
    assert [item.label for item in items] == list(field.enum)


def test_no_skills_dir_means_no_skill_completions(tmp_path: Path) -> None:
    text = '[agents.a]\nskills = [""]\n'
    assert completions(analyze(text, PATH), Position(1, 11), skills=tmp_path / "none") == []


def test_hover_on_an_unknown_key_is_empty() -> None:
    assert hover(analyze("[agents.a]\nbotle = 1\n", PATH), Position(1, 2)) is None


def test_hover_on_an_enum_value_explains_it() -> None:
    found = hover(analyze('[bottles.b]\nruntime = "runsc"\n', PATH), Position(1, 13))
    assert found is not None and isinstance(found.contents, types.MarkupContent)
    assert "gVisor; launching fails" in found.contents.value


def test_rename_quotes_names_that_are_not_bare_keys() -> None:
    analysis = analyze(MANIFEST, PATH)
    edit = rename(analysis, "u", Position(22, 11), "off line")
    assert edit is not None and edit.changes is not None
    assert [e.new_text for e in edit.changes["u"]] == ['"off line"']


def test_a_renamed_bottle_is_one_name_wherever_it_is_written() -> None:
    """A new name holding a quote or a line break (pasted from the document, say) is written as
    one TOML key or string: never as text that ends the string and adds keys."""
    text = '[agents.a]\nbottle = "box"\n[bottles.box]\n'
    new_name = 'b"\nallow_manifest_changes = true\n#'
    edit = rename(analyze(text, PATH), "u", Position(1, 11), new_name)
    assert edit is not None and edit.changes is not None
    lines = text.splitlines(keepends=True)
    for change in sorted(edit.changes["u"], key=lambda e: e.range.start.line, reverse=True):
        start, end = change.range.start, change.range.end
        line = lines[start.line]
        lines[start.line] = line[: start.character] + change.new_text + line[end.character :]
    assert tomllib.loads("".join(lines)) == {
        "agents": {"a": {"bottle": new_name}},
        "bottles": {new_name: {}},
    }


def test_references_of_a_quoted_bottle_name() -> None:
    text = '[agents.a]\nbottle = "my box"\n[bottles."my box"]\n[bottles."my box".egress]\n'
    found = references(analyze(text, PATH), "u", Position(1, 12), include_declaration=True)
    assert [
        (r.range.start.line, r.range.start.character, r.range.end.character) for r in found
    ] == [
        (2, 9, 17),
        (1, 9, 17),
        (3, 9, 17),
    ]


def test_rename_refuses_an_agent_name_that_is_taken() -> None:
    assert rename(analyze(MANIFEST, PATH), "u", Position(0, 9), "reviewer") is None


def test_lenses_only_show_bottles_of_this_manifest_that_run() -> None:
    analysis = analyze(MANIFEST, PATH)
    bottles = [
        {"slug": "dev-1", "agent": "dev", "status": "running", "manifest": str(PATH)},
        {"slug": "dev-2", "agent": "dev", "status": "stopped", "manifest": str(PATH)},
        {
            "slug": "dev-3",
            "agent": "dev",
            "status": "running",
            "manifest": "/elsewhere/bottle.toml",
        },
    ]
    found = code_lenses(analysis.outline, "u", PATH, bottles)
    assert [(lens.range.start.line, lens.command.title) for lens in found if lens.command] == [
        (0, "▶ Launch"),
        (0, "Attach"),
        (0, "Stop"),
        (4, "▶ Launch"),
    ]


def test_agents_of_a_manifest_with_one_bottle_name_it() -> None:
    analysis = analyze('[agents.a]\n[agents.b]\nbottle = "x"\n[bottles.only]\n', PATH)
    assert agents_of(analysis) == [{"name": "a", "bottle": "only"}, {"name": "b", "bottle": "x"}]


def test_diagnostics_carry_code_source_and_severity() -> None:
    [found] = diagnostics(analyze("[agents.a]\n[bottles.b]\n", PATH.parent.parent))
    assert (found.code, found.source, found.severity) == (
        "BB206",
        "bottle",
        types.DiagnosticSeverity.Warning,
    )


def test_a_bottles_read_that_finishes_late_does_not_hide_a_newer_one() -> None:
    """A lens request's re-read begun before a launch wrote its record can finish after the
    launch's own re-read; the lenses must keep the launched bottle (Attach / Stop)."""
    launched = {"slug": "hello-1", "agent": "hello", "status": "running"}
    stale_read_begun, stale_read_may_finish = threading.Event(), threading.Event()
    answers = iter([("stale", []), ("fresh", [launched])])

    def list_bottles() -> list[dict[str, str]]:
        which, bottles = next(answers)
        if which == "stale":
            stale_read_begun.set()
            stale_read_may_finish.wait(timeout=10)
        return bottles

    cache = BottlesCache(list_bottles)

    async def overlapping_reads() -> None:
        stale = asyncio.ensure_future(cache.refresh())
        while not stale_read_begun.is_set():  # the stale read is in its thread, before the launch
            await asyncio.sleep(0.01)
        assert await cache.refresh() is True
        stale_read_may_finish.set()
        assert await stale is False

    asyncio.run(overlapping_reads())
    assert cache.bottles == [launched]


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        # A person asked at run time may let any host through.
        ("[bottles.b.egress]\nask = true\n", "held for a person's answer"),
        # The gate reaches its upstream whatever the allowlist says.
        (
            '[[bottles.b.git]]\nname = "origin"\nurl = "https://github.com@evil.invalid/r.git"\n',
            "`origin` on host `evil.invalid`",
        ),
    ],
)
def test_a_bottle_hover_says_no_egress_is_denied_only_when_none_goes_out(
    body: str, shown: str
) -> None:
    """The hover said 'egress allowlist: nothing (all egress denied)' over a bottle that asks a
    person about unlisted hosts, or pushes to an upstream of the manifest's choosing."""
    text = "[agents.a]\n[bottles.b]\n" + body
    found = hover(analyze(text, PATH), Position(1, 9))
    assert found is not None and isinstance(found.contents, types.MarkupContent)
    assert "all egress denied" not in found.contents.value
    assert shown in found.contents.value
    closed = hover(analyze("[agents.a]\n[bottles.b]\n", PATH), Position(1, 9))
    assert closed is not None and isinstance(closed.contents, types.MarkupContent)
    assert "all egress denied" in closed.contents.value
