"""Where the cursor stands: in a table header, on a key, or in a key's value.

Built on the line-based `Outline`, so it answers for half-typed documents too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bottle_engine.manifest.source import KeyPath, Position
from bottle_lsp.outline import KeyLine, Outline, Segment, split_key

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_WORD_CHARS = _KEY_CHARS | frozenset(".*:/")

CursorKind = Literal["header", "key", "value", "none"]


@dataclass(frozen=True)
class Cursor:
    """What the cursor is in.

    kind "header": `table` holds the header's segments before the one being typed;
    kind "key": `table` is the table whose key is being typed (dotted parts already typed are
    appended);
    kind "value": `key` is the full path of the key whose value holds the cursor.
    `prefix` is what was typed of the current word, starting at character `prefix_start`.
    """

    kind: CursorKind
    table: KeyPath
    key: KeyPath
    prefix: str
    prefix_start: int
    in_string: bool = False
    header_array: bool = False
    line_text: str = ""
    segment: Segment | None = None  # the key or header segment under the cursor, if any


def cursor_at(outline: Outline, position: Position) -> Cursor:
    if not 0 <= position.line < len(outline.lines):
        return Cursor("none", (), (), "", position.character)
    text = outline.lines[position.line]
    column = min(max(position.character, 0), len(text))
    before = text[:column]
    if position.line in outline.in_multiline_string:
        return _multiline_value(outline, position.line, column)
    header = next((h for h in outline.headers if h.line == position.line), None)
    if header is not None:
        segments = [s for s in header.segments if s.start <= column]
        current = next((s for s in header.segments if s.start <= column <= s.end), None)
        parents = tuple(s.name for s in segments[:-1]) if segments else ()
        start = current.start if current else column
        return Cursor(
            "header",
            parents,
            (),
            text[start:column],
            start,
            header_array=header.is_array,
            line_text=text,
            segment=current,
        )
    table = outline.table_at(position.line)
    key_line = next((k for k in outline.keys if k.line == position.line), None)
    if key_line is not None and column > key_line.equals:
        return _value(table, key_line, text, column)
    if key_line is not None:
        current = next((s for s in key_line.segments if s.start <= column <= s.end), None)
        typed = [s.name for s in key_line.segments if s.end < column]
        start = current.start if current else column
        return Cursor(
            "key",
            (*table, *typed),
            (),
            text[start:column],
            start,
            line_text=text,
            segment=current,
        )
    owner = _open_array_owner(outline, position.line, column)
    if owner is not None:
        return _value(owner.table, owner, text, column, continued=True)
    stripped = before.lstrip()
    if "=" in stripped or "#" in stripped:
        return Cursor("none", table, (), "", column, line_text=text)
    typed_key = split_key(stripped, len(before) - len(stripped)) if stripped else ()
    prefix = trailing_run(before, _KEY_CHARS)
    parents = tuple(s.name for s in typed_key[:-1])
    return Cursor(
        "key", (*table, *parents), (), prefix, column - len(prefix), line_text=text, segment=None
    )


def _value(
    table: KeyPath, key_line: KeyLine, text: str, column: int, *, continued: bool = False
) -> Cursor:
    key = (*table, *(s.name for s in key_line.segments))
    start_of_value = 0 if continued else key_line.equals + 1
    typed = text[start_of_value:column]
    in_string = _open_quote(typed) is not None
    if in_string:
        quote_at = _open_quote(typed)
        assert quote_at is not None
        prefix_start = start_of_value + quote_at + 1
    else:
        prefix_start = column - len(trailing_run(typed, _WORD_CHARS))
    return Cursor(
        "value",
        table,
        key,
        text[prefix_start:column],
        prefix_start,
        in_string=in_string,
        line_text=text,
    )


def trailing_run(text: str, chars: frozenset[str]) -> str:
    """The characters from `chars` that end `text` (before one final newline, as a regex `$`).

    Walked back from the end: a search for `[chars]*$` retries from every start on a line the
    workspace writes, which is quadratic in its length on each keystroke.
    """
    end = len(text) - 1 if text.endswith("\n") else len(text)
    start = end
    while start > 0 and text[start - 1] in chars:
        start -= 1
    return text[start:end]


def _open_quote(text: str) -> int | None:
    """Where the string that is still open at the end of `text` starts, if one is."""
    quote: str | None = None
    opened = -1
    index = 0
    while index < len(text):
        char = text[index]
        if quote is None:
            if char in "\"'":
                quote, opened = char, index
            elif char == "#":
                return None
        elif char == "\\" and quote == '"':
            index += 1
        elif char == quote:
            quote = None
        index += 1
    return opened if quote is not None else None


def _depth(text: str) -> int:
    """Bracket depth at the end of `text`, ignoring brackets inside strings and comments."""
    depth = 0
    quote: str | None = None
    index = 0
    while index < len(text):
        char = text[index]
        if quote is None:
            if char in "\"'":
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            elif char == "#":
                end = text.find("\n", index)
                if end < 0:
                    break
                index = end
        elif char == "\\" and quote == '"':
            index += 1
        elif char == quote or char == "\n":
            quote = None
        index += 1
    return depth


def _open_array_owner(outline: Outline, line: int, column: int) -> KeyLine | None:
    """The `key = [` line whose multi-line array is still open at (line, column)."""
    header_line = outline.header_above(line)
    floor = header_line.line if header_line else -1
    for key_line in reversed(outline.keys):
        if key_line.line >= line:
            continue
        if key_line.line <= floor:
            return None
        start = outline.lines[key_line.line][key_line.equals + 1 :]
        middle = outline.lines[key_line.line + 1 : line]
        text = "\n".join([start, *middle, outline.lines[line][:column]])
        return key_line if _depth(text) > 0 else None
    return None


def _multiline_value(outline: Outline, line: int, column: int) -> Cursor:
    owner = next((k for k in reversed(outline.keys) if k.line < line), None)
    if owner is None:
        return Cursor("none", (), (), "", column)
    key = (*owner.table, *(s.name for s in owner.segments))
    return Cursor("value", owner.table, key, "", column, in_string=True)


def string_at(text: str, column: int) -> tuple[str, int, int] | None:
    """The quoted string on `text` that holds `column`: its value and [start, end) with quotes.

    Strings are read left to right as a regex search would find them (an opening quote with no
    close is skipped and the search resumes after it), but each position is looked at a bounded
    number of times: `_basic_string_ends` answers "where does a string opened here close" for
    every position in one backward pass, where a regex retried from each skipped quote re-reads
    the rest of the line every time.
    """
    closes = _basic_string_ends(text)
    start = 0
    while start <= min(column, len(text) - 1):
        quote = text[start]
        if quote == '"':
            close = closes[start + 1]
        elif quote == "'":
            found = text.find("'", start + 1)
            close = found if found >= 0 else None
        else:
            close = None
        if close is None:
            start += 1
            continue
        if column <= close + 1:
            raw = text[start + 1 : close]
            value = raw.replace('\\"', '"').replace("\\\\", "\\") if quote == '"' else raw
            return value, start, close + 1
        start = close + 1
    return None


def _basic_string_ends(text: str) -> list[int | None]:
    """For each position, where a double-quoted string whose body starts there closes.

    The body is characters other than a quote or backslash, and backslash escapes of any one
    character but a newline; `None` where no closing quote follows.
    """
    ends: list[int | None] = [None] * (len(text) + 2)
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        if char == '"':
            ends[index] = index
        elif char == "\\":
            escapable = index + 1 < len(text) and text[index + 1] != "\n"
            ends[index] = ends[index + 2] if escapable else None
        else:
            ends[index] = ends[index + 1]
    return ends
