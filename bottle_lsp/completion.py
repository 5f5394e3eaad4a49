"""Completion: what may be written at the cursor, all of it read from the schema and the document.

Keys come from the schema table the cursor is in, values from the field's enum / kind or from
what the schema says it refers to (bottle names from the manifest, skills from
`~/.claude/skills/`, ...), and new-table snippets from the schema's required keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types

from bottle_engine.manifest import schema
from bottle_engine.manifest.schema import Field, Kind, Ref
from bottle_engine.manifest.source import KeyPath, Position
from bottle_lsp.analysis import Analysis
from bottle_lsp.cursor import Cursor, cursor_at
from bottle_lsp.docs import bottle_summary, default_text, field_markdown, schema_path, toml_literal

# Keys a new table's snippet starts with besides the schema's required ones.
SNIPPET_STARTERS: dict[str, tuple[str, ...]] = {"agents": ("bottle",), "bottles": ("backend",)}


def skills_dir() -> Path:
    """`~/.claude/skills` (HOME is honoured, so tests and sandboxes can move it)."""
    return Path.home() / ".claude" / "skills"


def completions(
    analysis: Analysis, position: Position, skills: Path | None = None
) -> list[types.CompletionItem]:
    cursor = cursor_at(analysis.outline, position)
    if cursor.kind == "header":
        return _header_names(analysis, cursor, position)
    if cursor.kind == "key":
        return [*_keys(analysis, cursor, position), *_snippets(analysis, cursor, position)]
    if cursor.kind == "value":
        return _values(analysis, cursor, position, skills or skills_dir())
    return []


# -- keys ---------------------------------------------------------------------------------------


def _table_field(path: KeyPath) -> Field | None:
    found = schema.field_at(path) if path else schema.ROOT
    return found if found is not None and found.kind == Kind.TABLE else None


def _edit_range(cursor: Cursor, position: Position) -> types.Range:
    end = cursor.segment.end if cursor.segment is not None else position.character
    return types.Range(
        start=types.Position(line=position.line, character=cursor.prefix_start),
        end=types.Position(line=position.line, character=max(end, position.character)),
    )


def _key_snippet(field: Field, stop: int = 1) -> str:
    """`key = <value>` with a tab stop shaped by the field's kind (choices for enums)."""
    default = field.default
    if field.enum:
        ordered = sorted(field.enum, key=lambda value: value != default)
        return f'{field.name} = "${{{stop}|{",".join(ordered)}|}}"'
    if field.kind == Kind.BOOLEAN:
        first, second = ("false", "true") if default is False else ("true", "false")
        return f"{field.name} = ${{{stop}|{first},{second}|}}"
    if field.kind in (Kind.NUMBER, Kind.INTEGER):
        return f"{field.name} = ${{{stop}:{default_text(field) or 0}}}"
    if field.kind == Kind.STRING_LIST:
        return f"{field.name} = [${stop}]"
    if field.kind == Kind.STRING_MAP:
        return f"{field.name} = {{ ${stop} }}"
    return f'{field.name} = "${stop}"'


def _keys(analysis: Analysis, cursor: Cursor, position: Position) -> list[types.CompletionItem]:
    table = _table_field(cursor.table)
    if table is None:
        return []
    has_value = "=" in cursor.line_text[cursor.prefix_start :]
    written = set(analysis.outline.keys_in(cursor.table))
    if cursor.segment is not None:
        written.discard(cursor.segment.name)
    items = []
    for order, child in enumerate(table.children):
        if child.is_table or child.name in written:
            continue
        new_text = child.name if has_value else _key_snippet(child)
        default = default_text(child)
        items.append(
            types.CompletionItem(
                label=child.name,
                kind=types.CompletionItemKind.Property,
                detail=child.type_label + (f" = {default}" if default else ""),
                documentation=types.MarkupContent(
                    kind=types.MarkupKind.Markdown,
                    value=field_markdown(child, schema_path((*cursor.table, child.name))),
                ),
                sort_text=f"{order:03d}",
                text_edit=types.TextEdit(range=_edit_range(cursor, position), new_text=new_text),
                insert_text_format=(
                    types.InsertTextFormat.PlainText
                    if has_value
                    else types.InsertTextFormat.Snippet
                ),
            )
        )
    return items


# -- snippets for new tables ---------------------------------------------------------------------


def _snippet_body(
    table: Field, starters: tuple[str, ...], first_stop: int, choices: dict[str, list[str]]
) -> list[str]:
    lines = []
    stop = first_stop
    wanted = [c for c in table.children if c.required or c.name in starters]
    for child in wanted:
        if choices.get(child.name):
            options = ",".join(_choice_text(choice) for choice in choices[child.name])
            lines.append(f'{child.name} = "${{{stop}|{options}|}}"')
        else:
            lines.append(_key_snippet(child, stop))
        stop += 1
    return lines


def _snippets(analysis: Analysis, cursor: Cursor, position: Position) -> list[types.CompletionItem]:
    if cursor.line_text[: cursor.prefix_start].strip() or "=" in cursor.line_text:
        return []
    bottles = analysis.names("bottles")
    current_bottle = _current_bottle(cursor.table) or (bottles[0] if bottles else "default")
    items: list[tuple[str, str, str]] = []
    for section in ("agents", "bottles"):
        collection = schema.ROOT.child(section)
        assert collection is not None
        item = schema.field_at((section, "NAME"))
        assert item is not None
        choices = {"bottle": bottles}
        body = _snippet_body(item, SNIPPET_STARTERS.get(section, ()), 2, choices)
        placeholder = "dev" if section == "agents" else "default"
        label = f"[{section}.{collection.item_name}]"
        items.append(
            (label, "\n".join([f"[{section}.${{1:{placeholder}}}]", *body, "$0"]), collection.doc)
        )
    git = schema.field_at(("bottles", "NAME", "git"))
    git_item = schema.field_at(("bottles", "NAME", "git", 0))
    assert git is not None and git_item is not None
    body = _snippet_body(git_item, (), 2, {})
    items.append(
        (
            "[[bottles.BOTTLE.git]]",
            "\n".join([f"[[bottles.${{1:{_placeholder_text(current_bottle)}}}.git]]", *body, "$0"]),
            git.doc,
        )
    )
    return [
        types.CompletionItem(
            label=label,
            kind=types.CompletionItemKind.Snippet,
            detail="new table",
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=doc),
            filter_text=label,
            sort_text=f"z{index}",
            text_edit=types.TextEdit(range=_edit_range(cursor, position), new_text=text),
            insert_text_format=types.InsertTextFormat.Snippet,
        )
        for index, (label, text, doc) in enumerate(items)
    ]


def _placeholder_text(text: str) -> str:
    """`text` from the document as a snippet placeholder's plain text: unescaped, `$CLIPBOARD`
    or `${TM_FILEPATH}` in a name the agent wrote would insert the person's clipboard or path."""
    return re.sub(r"([$}\\])", r"\\\1", text)


def _choice_text(text: str) -> str:
    """`text` as one element of a snippet choice (read literally, split at `,` and `|`)."""
    return re.sub(r"([,|\\])", r"\\\1", text)


def _current_bottle(table: KeyPath) -> str | None:
    if len(table) >= 2 and table[0] == "bottles" and isinstance(table[1], str):
        return table[1]
    return None


# -- header names ---------------------------------------------------------------------------------


def _header_names(
    analysis: Analysis, cursor: Cursor, position: Position
) -> list[types.CompletionItem]:
    parents = cursor.table
    field = schema.field_at(parents) if parents else schema.ROOT
    if field is None:
        return []
    edit_range = _edit_range(cursor, position)
    if field.kind == Kind.TABLE:
        return [
            types.CompletionItem(
                label=child.name,
                kind=types.CompletionItemKind.Module,
                detail=child.kind.value,
                documentation=types.MarkupContent(
                    kind=types.MarkupKind.Markdown,
                    value=field_markdown(child, schema_path((*parents, child.name))),
                ),
                text_edit=types.TextEdit(range=edit_range, new_text=child.name),
            )
            for child in field.children
            if child.is_table
        ]
    if field.kind == Kind.NAMED_TABLES:
        if parents == ("agents",) or parents == ("bottles",):
            names = analysis.names(str(parents[0]))
        else:
            names = _secret_names(analysis)
        return [
            types.CompletionItem(
                label=name,
                kind=types.CompletionItemKind.Reference,
                detail=field.item_name.lower(),
                text_edit=types.TextEdit(range=edit_range, new_text=name),
            )
            for name in names
        ]
    return []


def _secret_names(analysis: Analysis) -> list[str]:
    found: dict[str, None] = {}
    for header in analysis.outline.headers:
        path = header.path
        is_secret = len(path) >= 4 and path[0] == "bottles" and path[2] == "secrets"
        if is_secret and isinstance(path[3], str) and path[3]:
            found.setdefault(path[3], None)
    for bottle in analysis.table("bottles").values():
        secrets = bottle.get("secrets") if isinstance(bottle, dict) else None
        for name in secrets if isinstance(secrets, dict) else {}:
            found.setdefault(name, None)
    return list(found)


# -- values ---------------------------------------------------------------------------------------


def _value_item(
    cursor: Cursor,
    position: Position,
    label: str,
    *,
    quoted: bool,
    kind: types.CompletionItemKind,
    detail: str,
    doc: str | None = None,
    preselect: bool = False,
) -> types.CompletionItem:
    new_text = label if (cursor.in_string or not quoted) else toml_literal(label)
    return types.CompletionItem(
        label=label,
        kind=kind,
        detail=detail,
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=doc)
        if doc
        else None,
        preselect=preselect or None,
        text_edit=types.TextEdit(range=_edit_range(cursor, position), new_text=new_text),
    )


@dataclass(frozen=True)
class _Choices:
    """The values a field may take at the cursor, and how the editor shows them."""

    kind: types.CompletionItemKind
    detail: str
    quoted: bool  # written as a TOML string
    values: Sequence[tuple[str, str | None, bool]]  # (value, documentation, preselect)


def _values(
    analysis: Analysis, cursor: Cursor, position: Position, skills: Path
) -> list[types.CompletionItem]:
    field = schema.field_at(cursor.key)
    choices = _choices(field, analysis, cursor, skills) if field is not None else None
    if choices is None:
        return []
    return [
        _value_item(
            cursor,
            position,
            value,
            quoted=choices.quoted,
            kind=choices.kind,
            detail=choices.detail,
            doc=doc,
            preselect=preselect,
        )
        for value, doc, preselect in choices.values
    ]


def _choices(field: Field, analysis: Analysis, cursor: Cursor, skills: Path) -> _Choices | None:
    """What `field` may hold: the names it refers to, its enum, or true/false."""
    if field.refers_to is not None:
        kind = (
            types.CompletionItemKind.Variable
            if field.refers_to == Ref.ENV_VAR
            else types.CompletionItemKind.Reference
        )
        named = _referenced(field.refers_to, analysis, cursor, skills)
        return _Choices(kind, field.refers_to.value, True, named)
    if field.enum:
        docs = field.enum_docs or ("",) * len(field.enum)
        enum = [(v, doc, v == field.default) for v, doc in zip(field.enum, docs, strict=True)]
        return _Choices(types.CompletionItemKind.EnumMember, field.name, True, enum)
    if field.kind == Kind.BOOLEAN and not cursor.in_string:
        literals = [
            (lit, None, (lit == "true") == bool(field.default)) for lit in ("true", "false")
        ]
        return _Choices(types.CompletionItemKind.Value, field.name, False, literals)
    return None


def _referenced(
    ref: Ref, analysis: Analysis, cursor: Cursor, skills: Path
) -> Sequence[tuple[str, str | None, bool]]:
    """The names a value that refers to `ref` may take: (name, documentation, preselect)."""
    if ref == Ref.BOTTLE:
        tables = analysis.table("bottles")
        summaries = {name: tables.get(name) for name in analysis.names("bottles")}
        return [
            (name, bottle_summary(name, table if isinstance(table, dict) else None), False)
            for name, table in summaries.items()
        ]
    if ref == Ref.SKILL:
        return [(name, doc, False) for name, doc in installed_skills(skills)]
    if ref == Ref.ENV_VAR:  # the secret's own name first: the usual choice
        own = str(cursor.key[3])
        others = [name for name in _secret_names(analysis) if name != own]
        return [(name, None, name == own) for name in [own, *others]]
    bottle = analysis.table("bottles", str(cursor.key[1]))  # Ref.ALLOWED_HOST
    egress = bottle.get("egress")
    allow = egress.get("allow", []) if isinstance(egress, dict) else []
    return [(entry, None, False) for entry in allow if isinstance(entry, str)]


_DESCRIPTION = re.compile(r"^description:\s*(.+)$", re.MULTILINE)


def installed_skills(directory: Path) -> list[tuple[str, str | None]]:
    """Skill names (sub-directories) with the description from their SKILL.md, if any."""
    try:
        entries = sorted(entry for entry in directory.iterdir() if entry.is_dir())
    except OSError:
        return []
    found = []
    for entry in entries:
        doc = None
        try:
            match = _DESCRIPTION.search((entry / "SKILL.md").read_text(encoding="utf-8")[:4000])
            doc = match.group(1).strip().strip("\"'") if match else None
        except (OSError, UnicodeDecodeError):
            pass
        found.append((entry.name, doc))
    return found
