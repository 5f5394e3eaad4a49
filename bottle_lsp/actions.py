"""Quick fixes: the engine's `Problem.fixes`, mapped to workspace edits. The server decides
nothing here; validation computed the fix."""

from __future__ import annotations

from lsprotocol import types

from bottle_lsp.analysis import Analysis
from bottle_lsp.diagnostics import to_diagnostic
from bottle_lsp.positions import span_range


def _key(r: types.Range) -> tuple[int, int, int, int]:
    return (r.start.line, r.start.character, r.end.line, r.end.character)


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and (
        b.start.line,
        b.start.character,
    ) <= (a.end.line, a.end.character)


def code_actions(
    analysis: Analysis,
    uri: str,
    selection: types.Range,
    reported: list[tuple[str, types.Range]] | None = None,
) -> list[types.CodeAction]:
    """Fixes for the problems under `selection`, or among the `(code, range)`s the client sent."""
    wanted = set((code, _key(r)) for code, r in reported or [])
    actions = []
    for problem in analysis.problems:
        diagnostic = to_diagnostic(problem)
        asked = (problem.code, _key(diagnostic.range)) in wanted
        if not problem.fixes or not (asked or _overlaps(diagnostic.range, selection)):
            continue
        for index, fix in enumerate(problem.fixes):
            actions.append(
                types.CodeAction(
                    title=fix.title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    is_preferred=(index == 0) or None,
                    edit=types.WorkspaceEdit(
                        changes={
                            uri: [
                                types.TextEdit(range=span_range(fix.span), new_text=fix.replacement)
                            ]
                        }
                    ),
                )
            )
    return actions
