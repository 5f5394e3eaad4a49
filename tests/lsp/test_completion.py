"""Completion over the wire: schema keys with docs, enum values, bottle / skill / secret names,
and new-table snippets, also in half-typed documents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import MANIFEST, open_new, position_of, rng

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def complete(
    client: LanguageClient, uri: str, position: types.Position
) -> list[types.CompletionItem]:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position
        )
    )
    assert isinstance(result, types.CompletionList)
    return list(result.items)


def by_label(items: list[types.CompletionItem]) -> dict[str, types.CompletionItem]:
    return {item.label: item for item in items}


# Completion in MANIFEST with one edit: (old, new, where) -> the items at `where`, a position or
# a (marker, offset) pair: `offset` characters into `marker` in the edited text.
CompleteEdited = Callable[
    [str, str, "tuple[str, int] | types.Position"], Awaitable[list[types.CompletionItem]]
]


@pytest.fixture
def complete_edited(shared_client: LanguageClient, shared_root: Path) -> CompleteEdited:
    """Each call opens its own edited copy of MANIFEST in the shared server."""

    async def run(
        old: str, new: str, where: tuple[str, int] | types.Position
    ) -> list[types.CompletionItem]:
        text = MANIFEST.replace(old, new)
        uri = open_new(shared_client, shared_root, text)
        position = where if isinstance(where, types.Position) else position_of(text, *where)
        return await complete(shared_client, uri, position)

    return run


# The reviewer agent's `bottle = "web"` line, and the cursor just inside its value's quote.
AGENT_BOTTLE = '[agents.reviewer]\nbottle = "web"'
AGENT_BOTTLE_VALUE = types.Position(line=5, character=10)


async def test_keys_of_the_cursors_table_with_docs_and_defaults(
    complete_edited: CompleteEdited,
) -> None:
    items = by_label(
        await complete_edited('backend = "docker"\n', 'backend = "docker"\nru\n', ("ru\n", 2))
    )
    assert "backend" not in items  # already written in this table
    assert {"runtime", "memory", "cpus", "supervise", "dockerfile"} <= set(items)
    assert "prompt_file" not in items  # an agent key, not a bottle key
    runtime = items["runtime"]
    assert runtime.detail == '"auto" | "runc" | "runsc" = "auto"'
    assert runtime.text_edit == types.TextEdit(
        range=rng((10, 0), (10, 2)), new_text='runtime = "${1|auto,runc,runsc|}"'
    )
    assert runtime.insert_text_format == types.InsertTextFormat.Snippet
    assert isinstance(runtime.documentation, types.MarkupContent)
    assert "The OCI runtime for the docker backend." in runtime.documentation.value
    assert items["supervise"].text_edit.new_text == "supervise = ${1|false,true|}"  # type: ignore[union-attr]


async def test_enum_values_inside_quotes(complete_edited: CompleteEdited) -> None:
    items = await complete_edited('backend = "smolmachines"', 'backend = "sm"', ('"sm"', 3))
    assert [(i.label, i.text_edit.new_text, i.text_edit.range) for i in items] == [  # type: ignore[union-attr]
        ("docker", "docker", rng((23, 11), (23, 13))),
        ("smolmachines", "smolmachines", rng((23, 11), (23, 13))),
    ]
    assert items[0].preselect is True  # the schema's default


async def test_enum_values_without_quotes_insert_a_string(complete_edited: CompleteEdited) -> None:
    items = await complete_edited(
        'backend = "smolmachines"', "runtime = ", types.Position(line=23, character=10)
    )
    assert [i.text_edit.new_text for i in items] == ['"auto"', '"runc"', '"runsc"']  # type: ignore[union-attr]


async def test_bottle_names_for_an_agents_bottle(complete_edited: CompleteEdited) -> None:
    # an unterminated string: no parse at all
    items = by_label(
        await complete_edited(AGENT_BOTTLE, '[agents.reviewer]\nbottle = "', AGENT_BOTTLE_VALUE)
    )
    assert list(items) == ["web", "offline"]
    assert items["web"].text_edit == types.TextEdit(range=rng((5, 10), (5, 10)), new_text="web")


async def test_bottle_names_carry_a_summary_when_the_document_parses(
    complete_edited: CompleteEdited,
) -> None:
    items = by_label(
        await complete_edited(AGENT_BOTTLE, '[agents.reviewer]\nbottle = ""', AGENT_BOTTLE_VALUE)
    )
    doc = items["web"].documentation
    assert isinstance(doc, types.MarkupContent)
    assert "- backend: `docker` (runtime `auto`)" in doc.value
    assert "`api.anthropic.com`, `*.npmjs.org`" in doc.value


async def test_skill_names_come_from_the_home_claude_skills_dir(
    complete_edited: CompleteEdited,
) -> None:
    items = by_label(await complete_edited('skills = ["pdf"]', 'skills = ["pdf", ""]', ('""]', 1)))
    assert list(items) == ["pdf", "xlsx"]
    assert items["pdf"].documentation == types.MarkupContent(
        kind=types.MarkupKind.Markdown, value="Read PDFs"
    )


async def test_secret_source_suggests_the_secrets_own_name(complete_edited: CompleteEdited) -> None:
    items = await complete_edited(
        'from_env = "ANTHROPIC_API_KEY"', 'from_env = ""', ('from_env = ""', 12)
    )
    assert [(i.label, i.preselect) for i in items] == [("ANTHROPIC_API_KEY", True)]


async def test_secret_hosts_suggest_the_bottles_allowlist(complete_edited: CompleteEdited) -> None:
    items = await complete_edited(
        'hosts = ["api.anthropic.com"]', 'hosts = [""]', ('hosts = [""]', 10)
    )
    assert [i.label for i in items] == ["api.anthropic.com", "*.npmjs.org"]


async def snippets_at_end(client: LanguageClient, root: Path, text: str) -> dict[str, str]:
    """The new-table snippets offered on the last line of `text` (which ends blank), by label."""
    uri = open_new(client, root, text)
    end = types.Position(line=text.count("\n"), character=0)
    return {
        i.label: i.text_edit.new_text  # type: ignore[union-attr]
        for i in await complete(client, uri, end)
        if i.kind == types.CompletionItemKind.Snippet
    }


async def test_snippets_for_new_agents_bottles_and_git_upstreams(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    snippets = await snippets_at_end(shared_client, shared_root, MANIFEST + "\n")
    assert snippets == {
        "[agents.AGENT]": '[agents.${1:dev}]\nbottle = "${2|web,offline|}"\n$0',
        "[bottles.BOTTLE]": '[bottles.${1:default}]\nbackend = "${2|docker,smolmachines|}"\n$0',
        "[[bottles.BOTTLE.git]]": '[[bottles.${1:offline}.git]]\nname = "$2"\nurl = "$3"\n$0',
    }


async def test_names_from_the_document_are_plain_text_in_a_snippet(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    """A snippet reads `$CLIPBOARD` as the person's clipboard: a bottle name the agent wrote must
    not put it (or the file's path, or a tab stop) into bottle.toml, which the next launch
    copies into the bottle."""
    text = MANIFEST + '\n[bottles."a,b|c"]\n[bottles."x${CLIPBOARD}$TM_FILEPATH"]\n\n'
    snippets = await snippets_at_end(shared_client, shared_root, text)
    # Escaped as VS Code's snippet parser reads them: in a placeholder `\$`, `\}` and `\\`;
    # in a choice (whose text no variable is read in) `\,`, `\|` and `\\`.
    git = snippets["[[bottles.BOTTLE.git]]"]
    assert git.startswith("[[bottles.${1:x\\${CLIPBOARD\\}\\$TM_FILEPATH}.git]]\n"), git
    assert snippets["[agents.AGENT]"] == (
        '[agents.${1:dev}]\nbottle = "${2|web,offline,a\\,b\\|c,x${CLIPBOARD}$TM_FILEPATH|}"\n$0'
    )


async def test_table_names_in_a_half_typed_header(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    text = MANIFEST + "\n[bottles.web.se"
    uri = open_new(shared_client, shared_root, text)
    line = text.count("\n")
    items = by_label(await complete(shared_client, uri, types.Position(line=line, character=15)))
    assert set(items) == {"egress", "secrets", "git"}
    assert items["secrets"].text_edit == types.TextEdit(
        range=rng((line, 13), (line, 15)), new_text="secrets"
    )


async def test_keys_in_a_git_upstream_table(complete_edited: CompleteEdited) -> None:
    found = await complete_edited(
        'url = "ssh://git@example.invalid/me/repo.git"\n', 'url = "x"\npush\n', ("push\n", 4)
    )
    items = by_label([i for i in found if i.kind == types.CompletionItemKind.Property])
    assert set(items) == {
        "identity",
        "known_host_key",
        "push_branches",
        "allow_force_push",
        "allow_delete",
        "allow_manifest_changes",
        "allow_ci_changes",
    }
    assert items["push_branches"].text_edit.new_text == "push_branches = [$1]"  # type: ignore[union-attr]
