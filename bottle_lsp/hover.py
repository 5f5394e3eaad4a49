"""Hover: a field's documentation, type and default from the schema; a bottle's summary on its
name (in `agents.*.bottle` or a `[bottles.NAME]` header)."""

from __future__ import annotations

from lsprotocol import types

from bottle_engine.manifest import schema
from bottle_engine.manifest.source import KeyPath, Position
from bottle_lsp.analysis import Analysis
from bottle_lsp.cursor import cursor_at, string_at
from bottle_lsp.docs import (
    agent_summary,
    bottle_summary,
    enum_value_markdown,
    field_markdown,
    schema_path,
)
from bottle_lsp.positions import line_range


def hover(analysis: Analysis, position: Position) -> types.Hover | None:
    cursor = cursor_at(analysis.outline, position)
    line = position.line
    if cursor.kind in ("header", "key") and cursor.segment is not None:
        path: KeyPath = (*cursor.table, cursor.segment.name)
        span = (cursor.segment.start, cursor.segment.end)
        if cursor.kind == "header" and len(path) == 2 and path[0] == "bottles":
            return _markdown(_bottle(analysis, str(path[1])), line, span)
        if cursor.kind == "header" and len(path) == 2 and path[0] == "agents":
            agent = analysis.table("agents").get(str(path[1]))
            summary = agent_summary(
                str(path[1]),
                agent if isinstance(agent, dict) else None,
                analysis.names("bottles"),
            )
            return _markdown(summary, line, span)
        return _field(path, line, span)
    if cursor.kind == "value":
        found = string_at(cursor.line_text, position.character)
        if found is not None:
            value, start, end = found
            field = schema.field_at(cursor.key)
            if field is not None and field.refers_to == schema.Ref.BOTTLE:
                return _markdown(_bottle(analysis, value), line, (start, end))
            doc = enum_value_markdown(field, value) if field is not None else None
            if doc is not None:
                return _markdown(doc, line, (start, end))
    return None


def _bottle(analysis: Analysis, name: str) -> str:
    bottle = analysis.table("bottles").get(name)
    return bottle_summary(name, bottle if isinstance(bottle, dict) else None)


def _field(path: KeyPath, line: int, span: tuple[int, int]) -> types.Hover | None:
    field = schema.field_at(path)
    if field is None:
        return None
    return _markdown(field_markdown(field, schema_path(path)), line, span)


def _markdown(text: str, line: int, span: tuple[int, int]) -> types.Hover:
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
        range=line_range(line, *span),
    )
