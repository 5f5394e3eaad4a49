"""One open document, read once: the engine's parse and problems plus the line-based outline.

Every feature is a pure function of an `Analysis` (and a position); the server keeps one per
document version, so a keystroke costs one parse however many features ask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bottle_engine.manifest import MANIFEST_NAME, load_manifest_text
from bottle_engine.manifest.problems import Problem
from bottle_engine.manifest.source import KeyPath, Located, ParsedToml, parse_toml
from bottle_lsp.outline import Outline, outline

logger = logging.getLogger(__name__)


@dataclass
class Analysis:
    """A document's text with everything the features read from it."""

    text: str
    path: Path  # where the manifest lives (relative paths in it resolve from its directory)
    parsed: ParsedToml
    problems: list[Problem] = field(default_factory=list)
    internal_error: str | None = None  # validation itself failed; reported, never raised

    @cached_property
    def outline(self) -> Outline:
        # The text the engine read: "" for a manifest too large to read (`MAX_MANIFEST_BYTES`).
        return outline(self.parsed.text)

    @property
    def data(self) -> dict[str, Any]:
        return self.parsed.data

    @property
    def locations(self) -> dict[KeyPath, Located]:
        return self.parsed.locations

    def table(self, *path: str) -> dict[str, Any]:
        """The table at `path` in the data, or {} when it is missing or not a table."""
        current: Any = self.parsed.data
        for part in path:
            current = current.get(part) if isinstance(current, dict) else None
        return current if isinstance(current, dict) else {}

    def names(self, section: str) -> list[str]:
        """Agent or bottle names: from the data when the TOML parses, else from the outline."""
        if self.parsed.syntax_error is None:
            return [name for name in self.table(section) if isinstance(name, str)]
        return self.outline.names(section)


def analyze(text: str, path: Path | None = None) -> Analysis:
    """Parse and validate `text` with the engine's own code; never raises."""
    manifest_path = path or Path.cwd() / MANIFEST_NAME
    try:
        loaded = load_manifest_text(text, manifest_path)
        return Analysis(text, manifest_path, loaded.parsed, loaded.problems)
    except Exception as exc:  # an engine bug must not take the editor down with it
        logger.exception("validating %s failed", manifest_path)
        try:
            parsed = parse_toml(text)
        except Exception:
            parsed = ParsedToml(text=text, syntax_error="unreadable")
        return Analysis(
            text, manifest_path, parsed, [], internal_error=f"{type(exc).__name__}: {exc}"
        )
