"""Go to definition, references and rename for agent and bottle names; `prompt_file` links.

A bottle is *defined* by its `[bottles.NAME]` table and *referenced* by `agents.*.bottle`
values and by the name part of every `[bottles.NAME.…]` header. Agents are referenced only by
their own headers. Work is on the engine's `locations`, so it needs TOML that parses (the
server answers nothing otherwise, rather than guessing an edit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lsprotocol import types
from pygls.uris import from_fs_path

from bottle_engine.manifest import schema
from bottle_engine.manifest.model import resolve_path
from bottle_engine.manifest.problems import format_path, toml_string
from bottle_engine.manifest.schema import Ref
from bottle_engine.manifest.source import Position
from bottle_lsp.analysis import Analysis
from bottle_lsp.completion import skills_dir
from bottle_lsp.cursor import cursor_at, string_at
from bottle_lsp.positions import line_range

Section = Literal["agents", "bottles"]
_AGENT = schema.field_at(("agents", "_"))
assert _AGENT is not None
_AGENT_BOTTLE_KEY = schema.key_referring(_AGENT, Ref.BOTTLE)
_PROMPT_FILE = _AGENT.child("prompt_file")
assert _PROMPT_FILE is not None


@dataclass(frozen=True)
class Symbol:
    section: Section
    name: str


@dataclass(frozen=True)
class Occurrence:
    """One place a name is written; `quoted` when the range covers a whole string literal."""

    range: types.Range
    is_definition: bool
    quoted: bool


def _contains(r: types.Range, position: Position) -> bool:
    return (
        (r.start.line, r.start.character)
        <= (position.line, position.character)
        <= (
            r.end.line,
            r.end.character,
        )
    )


def symbol_at(analysis: Analysis, position: Position) -> Symbol | None:
    """The agent or bottle whose name is under the cursor."""
    cursor = cursor_at(analysis.outline, position)
    if cursor.kind == "header" and cursor.segment is not None and len(cursor.table) == 1:
        section = cursor.table[0]
        if section in ("agents", "bottles"):
            return Symbol(section, cursor.segment.name)  # type: ignore[arg-type]
    if cursor.kind == "value" and schema.refers_to(cursor.key) == Ref.BOTTLE:
        found = string_at(cursor.line_text, position.character)
        if found is not None:
            return Symbol("bottles", found[0])
    return None


def occurrences(analysis: Analysis, symbol: Symbol) -> list[Occurrence]:
    """Every place `symbol`'s name is written, definition first, then in document order.

    Read from the line-based outline (header and dotted-key segments carry their own
    positions), so it does not depend on how the engine spans keys and works while typing.
    """
    return all_occurrences(analysis).get(symbol, [])


def all_occurrences(analysis: Analysis) -> dict[Symbol, list[Occurrence]]:
    """`occurrences` of every agent and bottle, from one pass over the outline (a caller that
    wants them all would otherwise re-read the document once per name)."""
    outline = analysis.outline
    found: dict[Symbol, list[Occurrence]] = {}
    for header in outline.headers:
        names = [s.name for s in header.segments]
        if len(names) >= 2 and names[0] in ("agents", "bottles"):
            segment = header.segments[1]
            defines = len(names) == 2 and not header.is_array
            found.setdefault(Symbol(names[0], names[1]), []).append(  # type: ignore[arg-type]
                Occurrence(line_range(header.line, segment.start, segment.end), defines, False)
            )
    for key in outline.keys:
        table = [part for part in key.table if isinstance(part, str)]
        names = table + [s.name for s in key.segments]
        if len(names) >= 2 and names[0] in ("agents", "bottles") and len(table) < 2:
            segment = key.segments[1 - len(table)]
            found.setdefault(Symbol(names[0], names[1]), []).append(  # type: ignore[arg-type]
                Occurrence(line_range(key.line, segment.start, segment.end), False, False)
            )
        if len(names) == 3 and names[0] == "agents" and names[2] == _AGENT_BOTTLE_KEY:
            line = outline.lines[key.line]
            value = string_at(line, _first_quote(line, key.equals))
            if value is not None:
                found.setdefault(Symbol("bottles", value[0]), []).append(
                    Occurrence(line_range(key.line, value[1], value[2]), False, True)
                )
    return {symbol: _definition_first(places) for symbol, places in found.items()}


def _definition_first(found: list[Occurrence]) -> list[Occurrence]:
    found.sort(key=lambda o: (o.range.start.line, o.range.start.character))
    definitions = [o for o in found if o.is_definition][:1] or found[:1]
    return definitions + [o for o in found if o not in definitions]


def _first_quote(line: str, after: int) -> int:
    quote = min((i for i in (line.find('"', after), line.find("'", after)) if i >= 0), default=-1)
    return quote if quote >= 0 else len(line) + 1


def definition(analysis: Analysis, uri: str, position: Position) -> types.Location | None:
    """A bottle name -> its `[bottles.NAME]` table; a `prompt_file` value or a skill -> the file."""
    target = file_at(analysis, position)
    if target is not None:
        target_uri = from_fs_path(str(target)) or target.as_uri()
        return types.Location(uri=target_uri, range=line_range(0, 0, 0))
    symbol = symbol_at(analysis, position)
    if symbol is None:
        return None
    found = occurrences(analysis, symbol)
    return types.Location(uri=uri, range=found[0].range) if found else None


def file_at(analysis: Analysis, position: Position) -> Path | None:
    """The file a `prompt_file` value or a skill name stands for (a skill's SKILL.md)."""
    cursor = cursor_at(analysis.outline, position)
    field = schema.field_at(cursor.key) if cursor.kind == "value" else None
    is_skill = field is not None and field.refers_to == Ref.SKILL
    if field != _PROMPT_FILE and not is_skill:
        return None
    found = string_at(cursor.line_text, position.character)
    if found is None or not found[0]:
        return None
    if is_skill:
        skill = skills_dir() / found[0] / "SKILL.md"
        return skill if skill.is_file() else None
    return resolve_path(analysis.path.parent, found[0])


def references(
    analysis: Analysis, uri: str, position: Position, include_declaration: bool
) -> list[types.Location]:
    symbol = symbol_at(analysis, position)
    if symbol is None:
        return []
    return [
        types.Location(uri=uri, range=o.range)
        for o in occurrences(analysis, symbol)
        if include_declaration or not o.is_definition
    ]


def prepare_rename(analysis: Analysis, position: Position) -> types.Range | None:
    symbol = symbol_at(analysis, position)
    if symbol is None:
        return None
    for occurrence in occurrences(analysis, symbol):
        if _contains(occurrence.range, position):
            if occurrence.quoted:  # rename the name, not its quotes
                r = occurrence.range
                return line_range(r.start.line, r.start.character + 1, r.end.character - 1)
            return occurrence.range
    return None


def rename(
    analysis: Analysis, uri: str, position: Position, new_name: str
) -> types.WorkspaceEdit | None:
    """Every occurrence of the agent or bottle under the cursor, renamed."""
    symbol = symbol_at(analysis, position)
    if symbol is None:
        return None
    if symbol.section == "agents" and new_name in analysis.names("agents"):
        return None
    # The new name is typed by the person, but may be pasted from the document: one TOML key or
    # string whatever it holds.
    key_text = format_path((new_name,))
    edits = [
        types.TextEdit(range=o.range, new_text=toml_string(new_name) if o.quoted else key_text)
        for o in occurrences(analysis, symbol)
    ]
    return types.WorkspaceEdit(changes={uri: edits}) if edits else None
