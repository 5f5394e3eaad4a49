"""Problems found in a manifest: values, not exceptions.

The CLI prints them, the language server publishes them as diagnostics, and quick fixes read
their `fix`. Codes are stable; `CODES` documents each one (the README table is generated from it).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottle_engine.manifest.source import KeyPath, Span


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


CODES: dict[str, tuple[Severity, str]] = {
    "BB001": (Severity.ERROR, "TOML syntax error"),
    "BB002": (Severity.ERROR, "the manifest is larger than bot-bottle reads"),
    "BB003": (Severity.ERROR, "more problems than bot-bottle checks; checking stopped"),
    "BB101": (Severity.ERROR, "unknown key"),
    "BB102": (Severity.ERROR, "wrong type"),
    "BB103": (Severity.ERROR, "value not one of the allowed choices"),
    "BB104": (Severity.ERROR, "required key missing"),
    "BB105": (Severity.ERROR, "number out of range"),
    "BB106": (Severity.ERROR, "malformed memory size"),
    "BB107": (Severity.ERROR, "malformed name"),
    "BB201": (Severity.ERROR, "agent refers to a bottle that does not exist"),
    "BB202": (Severity.ERROR, "agent names no bottle and there is not exactly one"),
    "BB203": (Severity.ERROR, "both `prompt` and `prompt_file` are set"),
    "BB204": (Severity.ERROR, "`prompt_file` does not exist"),
    "BB205": (Severity.WARNING, "the manifest defines no agents"),
    "BB206": (Severity.WARNING, "the Dockerfile or build context does not exist"),
    "BB301": (Severity.ERROR, "malformed egress entry (host pattern, IP, CIDR or port)"),
    "BB302": (Severity.ERROR, "secret has no source, or two"),
    "BB303": (Severity.ERROR, "secret names no hosts"),
    "BB304": (Severity.WARNING, "secret host is not in the egress allowlist"),
    "BB305": (Severity.ERROR, "duplicate git upstream name"),
    "BB306": (Severity.WARNING, "git identity file does not exist"),
    "BB307": (Severity.WARNING, "secret file does not exist"),
    "BB308": (Severity.ERROR, "malformed branch glob"),
    "BB309": (Severity.WARNING, "egress upstream_ca file does not exist"),
    "BB310": (Severity.ERROR, "malformed git url (a leading '-', a space or a control character)"),
    "BB311": (Severity.ERROR, "a one-line value holds a line break or a control character"),
    "BB312": (Severity.ERROR, "a path holds a NUL character"),
    "BB313": (Severity.ERROR, "malformed HTTP header name"),
    "BB314": (Severity.ERROR, "secret names no headers"),
    "BB315": (Severity.ERROR, "git url whose host git, ssh and curl may read differently"),
    "BB316": (Severity.ERROR, "malformed environment variable name"),
}


def codes_markdown() -> str:
    """The diagnostic codes table for the README."""
    lines = ["| code | severity | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{code}` | {sev.value} | {text} |" for code, (sev, text) in CODES.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Fix:
    """A mechanical repair: replace the text in `span` with `replacement`."""

    title: str
    span: Span
    replacement: str


@dataclass(frozen=True)
class Problem:
    """One finding, pointing at the exact key or value it is about."""

    code: str
    message: str
    span: Span
    path: KeyPath = ()
    fixes: tuple[Fix, ...] = ()
    file: Path | None = None

    @property
    def severity(self) -> Severity:
        return CODES[self.code][0]

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_text(self) -> str:
        """`PATH:LINE:COL: error|warning: [CODE] message` with 1-based line and column."""
        where = str(self.file) if self.file else "bottle.toml"
        start = self.span.start
        return (
            f"{where}:{start.line + 1}:{start.character + 1}: "
            f"{self.severity.value}: [{self.code}] {self.message}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file) if self.file else None,
            "line": self.span.start.line + 1,
            "column": self.span.start.character + 1,
            "end_line": self.span.end.line + 1,
            "end_column": self.span.end.character + 1,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "path": format_path(self.path),
        }


def format_path(path: KeyPath) -> str:
    """`("bottles", "default", "egress", "allow", 2)` -> `bottles.default.egress.allow[2]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _is_bare(part) else toml_string(part)
            out += f".{text}" if out else text
    return out


def toml_string(text: str) -> str:
    """`text` as one TOML basic string, whatever it holds: names written back into a manifest
    (quick fixes, renames) come from the document, and a raw quote or line break in one would
    end the string and add keys of the author's choosing."""
    # JSON's string escapes are all valid in a TOML basic string; TOML also bans raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _is_bare(key: str) -> bool:
    """TOML bare keys are ASCII only: `é` must be quoted."""
    return bool(key) and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
