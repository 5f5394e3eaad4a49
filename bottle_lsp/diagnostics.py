"""Engine problems -> LSP diagnostics. The problems come from `bottle_engine.manifest.validate`,
the same function `bottle-engine validate` prints, so codes and messages are identical."""

from __future__ import annotations

from lsprotocol import types

from bottle_engine.manifest.problems import Problem, Severity
from bottle_lsp.analysis import Analysis
from bottle_lsp.positions import line_range, span_range

SOURCE = "bottle"

_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
}


def to_diagnostic(problem: Problem) -> types.Diagnostic:
    return types.Diagnostic(
        range=span_range(problem.span),
        message=problem.message,
        severity=_SEVERITY[problem.severity],
        code=problem.code,
        source=SOURCE,
    )


def diagnostics(analysis: Analysis) -> list[types.Diagnostic]:
    """Everything wrong with the document, in document order."""
    found = [to_diagnostic(problem) for problem in analysis.problems]
    if analysis.internal_error is not None:
        found.append(
            types.Diagnostic(
                range=line_range(0, 0, 0),
                message=f"bottle-lsp could not validate this document ({analysis.internal_error}); "
                "run `bottle-engine validate` and report the error",
                severity=types.DiagnosticSeverity.Error,
                source=SOURCE,
            )
        )
    return found
