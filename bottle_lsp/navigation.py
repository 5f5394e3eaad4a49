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

from bottle_engine.manifest.model import resolve_path
from bottle_engine.manifest.source import Position, Span
from bottle_lsp.analysis import Analysis
from bottle_lsp.completion import AGENT_BOTTLE, _shape
from bottle_lsp.cursor import cursor_at, string_at
from bottle_lsp.outline import split_key

Section = Literal["agents", "bottles"]
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


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


def _range(line: int, start: int, end: int) -> types.Range:
    return types.Range(
        start=types.Position(line=line, character=start),
        end=types.Position(line=line, character=end),
    )


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
    if cursor.kind == "value" and _shape(cursor.key) == AGENT_BOTTLE:
        found = string_at(cursor.line_text, position.character)
        if found is not None:
            return Symbol("bottles", found[0])
    return None


def occurrences(analysis: Analysis, symbol: Symbol) -> list[Occurrence]:
    """Every place `symbol`'s name is written, definition first, in document order after it."""
    found: dict[tuple[int, int, int], Occurrence] = {}
    lines = analysis.text.split("\n")
    for path, located in analysis.locations.items():
        names = [part for part in path if isinstance(part, str)]
        if names[:2] != [symbol.section, symbol.name]:
            continue
        span = located.key
        if span.start.line != span.end.line:
            continue
        text = lines[span.start.line][span.start.character : span.end.character]
        segments = split_key(text, span.start.character)
        index = 1 - (len(names) - len(segments))  # segments spell the tail of the path
        if 0 <= index < len(segments) and segments[index].name == symbol.name:
            segment = segments[index]
            key = (span.start.line, segment.start, segment.end)
            defines = len(names) == 2
            if key not in found or defines:
                found[key] = Occurrence(_range(*key), defines, False)
    if symbol.section == "bottles":
        for agent in analysis.table("agents"):
            reference = analysis.locations.get(("agents", agent, "bottle"))
            if reference is None or analysis.table("agents", agent).get("bottle") != symbol.name:
                continue
            value = reference.value
            key = (value.start.line, value.start.character, value.end.character)
            found[key] = Occurrence(_range(*key), False, True)
    ordered = sorted(found.values(), key=lambda o: (o.range.start.line, o.range.start.character))
    definitions = [o for o in ordered if o.is_definition][:1]
    return definitions + [o for o in ordered if o not in definitions]


def definition(analysis: Analysis, uri: str, position: Position) -> types.Location | None:
    """A bottle name -> its `[bottles.NAME]` table; a `prompt_file` value -> that file."""
    target = prompt_file_at(analysis, position)
    if target is not None:
        target_uri = from_fs_path(str(target)) or target.as_uri()
        return types.Location(uri=target_uri, range=_range(0, 0, 0))
    symbol = symbol_at(analysis, position)
    if symbol is None:
        return None
    definitions = [o for o in occurrences(analysis, symbol) if o.is_definition]
    return types.Location(uri=uri, range=definitions[0].range) if definitions else None


def prompt_file_at(analysis: Analysis, position: Position) -> Path | None:
    cursor = cursor_at(analysis.outline, position)
    if cursor.kind != "value" or _shape(cursor.key) != ("agents", "prompt_file"):
        return None
    found = string_at(cursor.line_text, position.character)
    if found is None or not found[0]:
        return None
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
                return _range(r.start.line, r.start.character + 1, r.end.character - 1)
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
    key_text = new_name if new_name and set(new_name) <= _BARE else _quote(new_name)
    edits = [
        types.TextEdit(range=o.range, new_text=_quote(new_name) if o.quoted else key_text)
        for o in occurrences(analysis, symbol)
    ]
    return types.WorkspaceEdit(changes={uri: edits}) if edits else None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def span_range(span: Span) -> types.Range:
    return types.Range(
        start=types.Position(line=span.start.line, character=span.start.character),
        end=types.Position(line=span.end.line, character=span.end.character),
    )
