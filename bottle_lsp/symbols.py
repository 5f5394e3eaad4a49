"""The outline (agents and bottles as document symbols) and folding ranges."""

from __future__ import annotations

from lsprotocol import types

from bottle_engine.manifest import schema
from bottle_engine.manifest.source import KeyPath, Span
from bottle_lsp.analysis import Analysis
from bottle_lsp.navigation import Symbol, occurrences
from bottle_lsp.outline import Outline
from bottle_lsp.positions import span_range

_KINDS = {"agents": types.SymbolKind.Function, "bottles": types.SymbolKind.Class}


def document_symbols(analysis: Analysis) -> list[types.DocumentSymbol]:
    """`agents` and `bottles`, each with its entries; bottles list their sub-tables."""
    result = []
    for section in ("agents", "bottles"):
        children = [
            symbol
            for name in analysis.table(section)
            if (symbol := _entry(analysis, section, name)) is not None
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


def _entry(analysis: Analysis, section: str, name: str) -> types.DocumentSymbol | None:
    names = occurrences(analysis, Symbol(section, name))  # type: ignore[arg-type]
    spans = _spans(analysis, (section, name))
    if not names or not spans:
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
        children = _sub_tables(analysis, (section, name))
    return types.DocumentSymbol(
        name=name,
        kind=_KINDS[section],
        detail=detail,
        range=_union([span_range(s) for s in spans]),
        selection_range=selection,
        children=children or None,
    )


def _sub_tables(analysis: Analysis, prefix: KeyPath) -> list[types.DocumentSymbol]:
    result = []
    for path, located in analysis.locations.items():
        if path[:2] != prefix or len(path) < 3 or not located.is_header:
            continue
        if isinstance(path[-1], str) and (*path, 0) in analysis.locations:
            continue  # a table array's name; its elements are listed instead
        label = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path[2:])
        label = label.replace(".[", "[")
        result.append(
            types.DocumentSymbol(
                name=label,
                kind=types.SymbolKind.Struct,
                range=_union([span_range(span) for span in _spans(analysis, path)]),
                selection_range=span_range(located.key),
            )
        )
    return result


def _spans(analysis: Analysis, prefix: KeyPath) -> list[Span]:
    """Where everything under `prefix` is written (headers whole, keys with their values)."""
    return [
        located.value if located.is_header else _join(located.key, located.value)
        for path, located in analysis.locations.items()
        if path[: len(prefix)] == prefix
    ]


def _join(a: Span, b: Span) -> Span:
    return Span(a.start, b.end)


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
    for key in outline.keys:
        rest = outline.lines[key.line][key.equals + 1 :].split("#")[0]
        if rest.count("[") > rest.count("]") or rest.count("{") > rest.count("}"):
            closer = next(
                (
                    n
                    for n in range(key.line + 1, len(outline.lines))
                    if outline.lines[n].strip().startswith(("]", "}"))
                ),
                None,
            )
            if closer is not None:
                ranges.append(types.FoldingRange(start_line=key.line, end_line=closer))
        elif key.line + 1 in outline.in_multiline_string:
            last = key.line + 1
            while last + 1 in outline.in_multiline_string:
                last += 1
            ranges.append(types.FoldingRange(start_line=key.line, end_line=last))
    return sorted(ranges, key=lambda r: (r.start_line, r.end_line))
