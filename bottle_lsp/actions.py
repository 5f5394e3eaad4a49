"""Quick fixes: the engine's `Problem.fixes`, mapped to workspace edits. The server decides
nothing here; validation computed the fix."""

from __future__ import annotations

from lsprotocol import types

from bottle_lsp.analysis import Analysis
from bottle_lsp.diagnostics import to_diagnostic, to_range


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and (
        b.start.line,
        b.start.character,
    ) <= (a.end.line, a.end.character)


def code_actions(analysis: Analysis, uri: str, selection: types.Range) -> list[types.CodeAction]:
    actions = []
    for problem in analysis.problems:
        diagnostic = to_diagnostic(problem)
        if not problem.fixes or not _overlaps(diagnostic.range, selection):
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
                                types.TextEdit(range=to_range(fix.span), new_text=fix.replacement)
                            ]
                        }
                    ),
                )
            )
    return actions
