"""Positions and ranges between the engine and the client, converted in one place.

The engine counts code points (`Position`, `Span`); LSP ranges count in the client's position
encoding (UTF-16 by default). The pure features build LSP ranges in code points with
`span_range` / `line_range`; the server converts what goes out (`to_client`) and what comes in
(`to_server`, `range_to_server`).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import attrs
from lsprotocol import types
from pygls.workspace import TextDocument

from bottle_engine.manifest.source import Position, Span

T = TypeVar("T")

# The editor's lines: LSP ends a line at \n, \r\n or \r only. pygls's `TextDocument.lines` is
# `str.splitlines`, which also breaks at U+2028, U+2029, U+0085, \f, \v and \x1c-\x1e (TOML
# allows them in comments and strings): measured on those lines, a range's UTF-16 columns came
# from another line than the editor shows, and a bottle.toml moved its diagnostics, and the edits
# of quick fixes and renames, onto other characters of their line.
_LSP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def lsp_lines(text: str) -> list[str]:
    """`text` as the editor numbers its lines, each with its line end."""
    return _LSP_LINE.findall(text)


def span_range(span: Span) -> types.Range:
    """An engine span as an LSP range (still in code points)."""
    return types.Range(start=lsp_position(span.start), end=lsp_position(span.end))


def line_range(line: int, start: int, end: int) -> types.Range:
    """Characters `start`..`end` of one line (code points)."""
    return types.Range(
        start=types.Position(line=line, character=start),
        end=types.Position(line=line, character=end),
    )


def lsp_position(position: Position) -> types.Position:
    return types.Position(line=position.line, character=position.character)


def to_server(document: TextDocument, position: types.Position) -> Position:
    """A client position (UTF-16 by default) as the code-point position the engine uses."""
    lines = lsp_lines(document.source)
    converted = document.position_codec.position_from_client_units(lines, position)
    return Position(converted.line, converted.character)


def range_to_server(document: TextDocument, client_range: types.Range) -> types.Range:
    """A client range in code points, to compare with ranges the features built."""
    return types.Range(
        start=lsp_position(to_server(document, client_range.start)),
        end=lsp_position(to_server(document, client_range.end)),
    )


def to_client(document: TextDocument, result: T) -> T:
    """Every range in `result` (engine code points) in the client's position encoding."""
    if document.source.isascii():
        return result
    lines = lsp_lines(document.source)

    def convert(value: Any) -> Any:
        if isinstance(value, types.Range):
            return document.position_codec.range_to_client_units(lines, value)
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if attrs.has(type(value)):
            changes = {f.name: convert(getattr(value, f.name)) for f in attrs.fields(type(value))}
            return attrs.evolve(value, **{k.lstrip("_"): v for k, v in changes.items()})
        return value

    converted: T = convert(result)
    return converted
