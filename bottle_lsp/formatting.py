"""Formatting that only touches layout: `key = value` spacing, trailing whitespace, runs of
blank lines, the final newline. Comments, key order, quoting and multi-line strings stay as
written, and the result must parse to the same data or nothing is changed."""

from __future__ import annotations

import tomllib

from lsprotocol import types

from bottle_engine.manifest import too_large
from bottle_engine.manifest.source import load_toml
from bottle_lsp.outline import outline


def format_text(text: str) -> str | None:
    """The formatted text, or None when `text` does not parse (nothing to stand on) or is too
    large to read."""
    if too_large(text):
        return None
    try:
        before = load_toml(text)
    except (tomllib.TOMLDecodeError, RecursionError):  # it recurses once per nested bracket
        return None
    found = outline(text)
    equals = {key.line: key.equals for key in found.keys}
    lines: list[str] = []
    for number, line in enumerate(found.lines):
        if number in found.in_multiline_string:
            lines.append(line)
            continue
        if number in equals:
            at = equals[number]
            key, value = line[:at].rstrip(), line[at + 1 :].lstrip()
            line = f"{key} = {value}"
        line = line.rstrip()
        if not line and (not lines or not lines[-1]):
            continue  # at most one blank line in a row, none at the top
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    result = "\n".join(lines) + "\n"
    try:
        same = load_toml(result) == before
    except (tomllib.TOMLDecodeError, RecursionError):
        same = False
    return result if same else None


def formatting_edits(text: str) -> list[types.TextEdit]:
    formatted = format_text(text)
    if formatted is None or formatted == text:
        return []
    lines = text.split("\n")
    whole = types.Range(
        start=types.Position(line=0, character=0),
        end=types.Position(line=len(lines) - 1, character=len(lines[-1])),
    )
    return [types.TextEdit(range=whole, new_text=formatted)]
