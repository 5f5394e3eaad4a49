"""The outline (agents and bottles as document symbols) and folding ranges.

Names are shown as `safe_editor_text` makes them: they are the manifest's keys, which an agent
may have written, and the outline, breadcrumbs and Go to Symbol show them beside our own text."""

from __future__ import annotations

from lsprotocol import types

from bottle_engine.display import safe_editor_text
from bottle_engine.manifest import schema
from bottle_engine.manifest.source import KeyPath, Span
from bottle_lsp.analysis import Analysis
from bottle_lsp.navigation import Symbol, all_occurrences
from bottle_lsp.outline import Outline
from bottle_lsp.positions import span_range

_KINDS = {"agents": types.SymbolKind.Function, "bottles": types.SymbolKind.Class}


def document_symbols(analysis: Analysis) -> list[types.DocumentSymbol]:
    """`agents` and `bottles`, each with its entries; bottles list their sub-tables."""
    index = _Index(analysis)
    result = []
    for section in ("agents", "bottles"):
        children = [
            symbol
            for name in analysis.table(section)
            if (symbol := _entry(analysis, index, section, name)) is not None
        ]
        if children:
            whole = _union([c.range for c in children])
            result.append(
                types.DocumentSymbol(
                    name=section,
                    kind=types.SymbolKind.Namespace,
                    range=whole,
                    selection_range=children[0].selection_range,
                    children=children,
                )
            )
    return result


class _Index:
    """What the outline needs of the document, gathered in one pass over it.

    Looked up per entry and per sub-table, each answer would re-read the whole document, which
    is quadratic in the number of tables the workspace's bottle.toml declares.
    """

    def __init__(self, analysis: Analysis) -> None:
        self.occurrences = all_occurrences(analysis)
        self.headers: dict[KeyPath, list[KeyPath]] = {}  # (section, name) -> its sub-tables
        self.extent: dict[KeyPath, Span] = {}  # path -> where everything under it is written
        for path, located in analysis.locations.items():
            span = located.value if located.is_header else _join(located.key, located.value)
            for depth in range(2, len(path) + 1):
                self.extent[path[:depth]] = _cover(self.extent.get(path[:depth]), span)
            if len(path) >= 3 and located.is_header:
                self.headers.setdefault(path[:2], []).append(path)


def _entry(
    analysis: Analysis, index: _Index, section: str, name: str
) -> types.DocumentSymbol | None:
    names = index.occurrences.get(Symbol(section, name), [])  # type: ignore[arg-type]
    whole = index.extent.get((section, name))
    if not names or whole is None:
        return None
    selection = next((o.range for o in names if o.is_definition), names[0].range)
    detail = None
    children: list[types.DocumentSymbol] = []
    if section == "agents":
        runs_in = schema.implied_bottle(analysis.table("agents", name), analysis.names("bottles"))
        detail = f"bottle {runs_in}" if runs_in is not None else None
    else:
        bottle = analysis.table("bottles", name)
        detail = str(bottle.get("backend", schema.default_at(("bottles", name, "backend"))))
        children = _sub_tables(analysis, index, (section, name))
    return types.DocumentSymbol(
        name=safe_editor_text(name),
        kind=_KINDS[section],
        detail=safe_editor_text(detail) if detail is not None else None,
        range=span_range(whole),
        selection_range=selection,
        children=children or None,
    )


def _sub_tables(analysis: Analysis, index: _Index, prefix: KeyPath) -> list[types.DocumentSymbol]:
    result = []
    for path in index.headers.get(prefix, []):
        if isinstance(path[-1], str) and (*path, 0) in analysis.locations:
            continue  # a table array's name; its elements are listed instead
        label = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path[2:])
        label = label.replace(".[", "[")
        result.append(
            types.DocumentSymbol(
                name=safe_editor_text(label),
                kind=types.SymbolKind.Struct,
                range=span_range(index.extent[path]),
                selection_range=span_range(analysis.locations[path].key),
            )
        )
    return result


def _join(a: Span, b: Span) -> Span:
    return Span(a.start, b.end)


def _cover(whole: Span | None, part: Span) -> Span:
    """The smallest span holding the start and the end of both (either may be missing)."""
    if whole is None:
        return part
    start = min(whole.start, part.start, key=lambda p: (p.line, p.character))
    end = max(whole.end, part.end, key=lambda p: (p.line, p.character))
    return Span(start, end)


def _union(ranges: list[types.Range]) -> types.Range:
    start = min(ranges, key=lambda r: (r.start.line, r.start.character)).start
    end = max(ranges, key=lambda r: (r.end.line, r.end.character)).end
    return types.Range(start=start, end=end)


def folding_ranges(outline: Outline) -> list[types.FoldingRange]:
    """Each table section, and each multi-line array or string; works on broken TOML too."""
    ranges = []
    for header in outline.headers:
        end = outline.section_end(header)
        if end > header.line:
            ranges.append(types.FoldingRange(start_line=header.line, end_line=end))
    closers = _closing_lines(outline)
    for key in outline.keys:
        rest = outline.lines[key.line][key.equals + 1 :].split("#")[0]
        if rest.count("[") > rest.count("]") or rest.count("{") > rest.count("}"):
            closer = closers[key.line + 1]
            if closer is not None:
                ranges.append(types.FoldingRange(start_line=key.line, end_line=closer))
        elif key.line + 1 in outline.in_multiline_string:
            last = key.line + 1
            while last + 1 in outline.in_multiline_string:
                last += 1
            ranges.append(types.FoldingRange(start_line=key.line, end_line=last))
    return sorted(ranges, key=lambda r: (r.start_line, r.end_line))


def _closing_lines(outline: Outline) -> list[int | None]:
    """For each line, the first line at or below it that starts with `]` or `}`.

    One backward pass: a forward search from each key that opens a bracket is quadratic in a
    document of open brackets that never close."""
    found: list[int | None] = [None] * (len(outline.lines) + 1)
    for number in range(len(outline.lines) - 1, -1, -1):
        closes = outline.lines[number].strip().startswith(("]", "}"))
        found[number] = number if closes else found[number + 1]
    return found
