"""TOML text -> data plus the source span of every key and value.

`tomllib` gives the data and precise syntax errors but no positions; this module re-reads text
that `tomllib` already accepted and records, for every key path, where its key and its value
stand. Paths are tuples of table keys and array indices:
``("bottles", "default", "egress", "allow", 2)`` or ``("bottles", "default", "git", 0, "url")``.
Because the text is known to be valid TOML, the scanner only has to find boundaries, not judge.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 0-based line and character, as the language server protocol counts them."""

    line: int
    character: int


@dataclass(frozen=True)
class Span:
    """A half-open stretch of the text, [start, end)."""

    start: Position
    end: Position


@dataclass(frozen=True)
class Located:
    """Where one entry of the document stands: its key (or table header) and its value."""

    key: Span
    value: Span
    is_header: bool = False  # a `[table]` or `[[array]]` header rather than `key = value`


@dataclass
class ParsedToml:
    """The outcome of reading a document: data and positions, or a syntax error."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)
    locations: dict[KeyPath, Located] = field(default_factory=dict)
    syntax_error: str | None = None
    syntax_error_at: Position | None = None

    def span_of(self, path: KeyPath, *, value: bool = False) -> Span:
        """The span of `path`'s key (or value), falling back to the nearest located parent."""
        for end in range(len(path), 0, -1):
            located = self.locations.get(path[:end])
            if located is not None:
                if end == len(path):
                    return located.value if value else located.key
                return located.key
        return Span(Position(0, 0), Position(0, 0))

    def section_span(self, path: KeyPath) -> Span:
        """A `[table]` or `[[array]]` section: from its header to the next header (or the end)."""
        header = self.locations[path].value
        following = [
            located.value.start
            for located in self.locations.values()
            if located.is_header and _after(located.value.start, header.start)
        ]
        return Span(header.start, min(following, key=_order) if following else self.end())

    def end(self) -> Position:
        lines = self.text.split("\n")
        return Position(len(lines) - 1, len(lines[-1]))


def _order(position: Position) -> tuple[int, int]:
    return (position.line, position.character)


def _after(a: Position, b: Position) -> bool:
    return _order(a) > _order(b)


TOO_DEEP = "arrays or inline tables nested too deeply to read"
MAX_KEY_PARTS = 64
TOO_LONG_KEY = f"a dotted key of more than {MAX_KEY_PARTS} parts"


def _overlong_key(text: str) -> int | None:
    """Where the first dotted key of more than `MAX_KEY_PARTS` parts starts, if one does.

    `tomllib` grows a key's tuple one part at a time, which is quadratic in the number of parts;
    a document can hold one key of a hundred thousand parts. Outside strings and comments only
    keys chain dots (a float or a time has one), so counting the dots in each run of bare
    characters, blanks and quoted parts finds every long key in one pass.
    """
    if text.count(".") < MAX_KEY_PARTS:
        return None
    dots, run_start = 0, 0
    offset = 0
    while offset < len(text):
        char = text[offset]
        if char in "\"'":
            delimiter = text[offset : offset + 3] if text.startswith(char * 3, offset) else char
            offset = _string_end(text, offset + len(delimiter), delimiter)
            continue
        if char == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                return run_start
        elif not (char.isascii() and (char.isalnum() or char in "_- \t")):
            dots, run_start = 0, offset + 1
            if char == "#":
                newline = text.find("\n", offset)
                offset = len(text) if newline < 0 else newline
                continue
        offset += 1
    return None


def load_toml(text: str) -> dict[str, Any]:
    """`tomllib.loads`, refusing first (as `TOMLDecodeError`) a key too long for it to read fast."""
    if _overlong_key(text) is not None:
        raise tomllib.TOMLDecodeError(TOO_LONG_KEY)
    return tomllib.loads(text)


def _string_end(text: str, offset: int, delimiter: str) -> int:
    """Just after the string whose body starts at `offset`; a basic string's escapes skipped."""
    while offset < len(text):
        if text.startswith(delimiter, offset):
            return offset + len(delimiter)
        if delimiter[0] == '"' and text[offset] == "\\":
            offset += 1
        elif len(delimiter) == 1 and text[offset] == "\n":
            return offset  # an unterminated one-line string; tomllib reports it
        offset += 1
    return offset


def _position_of(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset)
    return Position(line, offset - (text.rfind("\n", 0, offset) + 1))


def _deepest_opening(text: str) -> Position:
    """Where a document too deeply nested for `tomllib` reaches its deepest bracket or brace.

    A rough count (strings and comments skipped, escapes not) that only has to point the person
    at the right line; the document is not valid TOML anyway."""
    depth, deepest, at = 0, 0, 0
    quote: str | None = None
    offset = 0
    while offset < len(text):
        char = text[offset]
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            newline = text.find("\n", offset)
            offset = len(text) if newline < 0 else newline
            continue
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, offset
        elif char in "]}":
            depth = max(depth - 1, 0)
        offset += 1
    return _position_of(text, at)


_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_SYNTAX_AT_END = "(at end of document)"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_toml(text: str) -> ParsedToml:
    """Parse `text`; never raises for any input."""
    result = ParsedToml(text=text)
    overlong = _overlong_key(text)
    if overlong is not None:
        result.syntax_error = TOO_LONG_KEY
        result.syntax_error_at = _position_of(text, overlong)
        return result
    try:
        result.data = tomllib.loads(text)
    except RecursionError:  # tomllib descends once per nested array or inline table
        result.syntax_error = TOO_DEEP
        result.syntax_error_at = _deepest_opening(text)
        return result
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _SYNTAX_POSITION.search(message)
        result.syntax_error = _SYNTAX_POSITION.sub("", message).replace(_SYNTAX_AT_END, "").strip()
        if found:
            result.syntax_error_at = Position(int(found.group(1)) - 1, int(found.group(2)) - 1)
        elif _SYNTAX_AT_END in message:  # an unterminated string, array or table
            result.syntax_error_at = result.end()
        else:
            result.syntax_error_at = Position(0, 0)
        return result
    try:
        result.locations = _Scanner(text).scan()
    except (IndexError, ValueError):  # pragma: no cover - a scanner gap must never crash callers
        result.locations = {}
    return result


class _Scanner:
    """Finds key and value boundaries in text that is already known to be valid TOML."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.locations: dict[KeyPath, Located] = {}
        self.array_counts: dict[KeyPath, int] = {}  # table-array path -> elements seen so far

    # -- positions ---------------------------------------------------------------------------
    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return Position(line, offset - self.line_starts[line])

    def span(self, start: int, end: int) -> Span:
        return Span(self.position(start), self.position(end))

    def record(self, path: KeyPath, key: Span, value: Span, *, header: bool = False) -> None:
        self.locations.setdefault(path, Located(key, value, header))

    # -- lexing helpers ----------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and (when asked) newlines."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    # -- grammar -----------------------------------------------------------------------------
    def scan(self) -> dict[KeyPath, Located]:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.locations
            if self.peek() == "[":
                table = self.header()
            else:
                self.key_value(table)

    def header(self) -> KeyPath:
        start = self.pos
        is_array = self.peek(1) == "["
        self.pos += 2 if is_array else 1
        self.skip_blank(newlines=False)
        parts, part_spans = self.key_parts()
        self.skip_blank(newlines=False)
        self.pos += 2 if is_array else 1
        header_span = self.span(start, self.pos)
        key_span = self.span(*part_spans[-1])  # the table's own name, as for dotted keys
        path = self.resolve(parts)
        for depth in range(1, len(parts)):  # implicit parent tables, e.g. `agents` of [agents.x]
            start, end = part_spans[depth - 1]
            parent = self.resolve(parts[:depth])
            self.record(parent, self.span(start, end), self.span(start, end))
        if is_array:
            index = self.array_counts.get(path, 0)
            self.array_counts[path] = index + 1
            self.record(path, key_span, header_span, header=True)
            path = (*path, index)
        self.record(path, key_span, header_span, header=True)
        return path

    def resolve(self, parts: list[str]) -> KeyPath:
        """Header keys -> path, stepping into the latest element of any table array on the way."""
        path: KeyPath = ()
        for depth, part in enumerate(parts, start=1):
            path = (*path, part)
            if depth < len(parts) and path in self.array_counts:
                path = (*path, self.array_counts[path] - 1)
        return path

    def key_value(self, table: KeyPath) -> None:
        parts, part_spans = self.key_parts()
        self.skip_blank(newlines=False)
        self.pos += 1  # "="
        self.skip_blank(newlines=False)
        for depth in range(1, len(parts)):  # dotted keys define intermediate tables
            start, end = part_spans[depth - 1]
            self.record((*table, *parts[:depth]), self.span(start, end), self.span(start, end))
        path = (*table, *parts)
        value_start = self.pos
        self.value(path)
        # The key's span is its own part of a dotted key (`alow` in `egress.alow`), so that a
        # rename fix replaces just that part.
        self.record(path, self.span(*part_spans[-1]), self.span(value_start, self.pos))

    def key_parts(self) -> tuple[list[str], list[tuple[int, int]]]:
        """A dotted key's parts and the offsets of each."""
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        while True:
            start = self.pos
            parts.append(self.simple_key())
            spans.append((start, self.pos))
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts, spans
            self.pos += 1
            self.skip_blank(newlines=False)

    def simple_key(self) -> str:
        char = self.peek()
        if char in "\"'":
            start = self.pos
            self.string()
            decoded = tomllib.loads(f"k = {self.text[start : self.pos]}")["k"]
            return str(decoded)
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            raise ValueError(f"no key at offset {self.pos}")
        self.pos = match.end()
        return match.group()

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}#\n":
                self.pos += 1
            while self.pos > start and self.text[self.pos - 1] in " \t\r":
                self.pos -= 1

    def string(self) -> None:
        quote = self.peek()
        if self.text.startswith(quote * 3, self.pos):
            self.pos += 3
            while self.pos < len(self.text) and not self.text.startswith(quote * 3, self.pos):
                # In a basic string an escaped quote (`\"""`) does not close it.
                self.pos += 2 if quote == '"' and self.peek() == "\\" else 1
            self.pos += 3
            while self.peek() == quote:  # up to two quotes may close a multi-line string
                self.pos += 1
            return
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and quote == '"':
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return

    def array(self, path: KeyPath) -> None:
        for index, _ in enumerate(self.items("]")):
            start = self.pos
            element = (*path, index)
            self.value(element)
            element_span = self.span(start, self.pos)
            self.record(element, element_span, element_span)

    def inline_table(self, path: KeyPath) -> None:
        for _ in self.items("}"):
            self.key_value(path)

    def items(self, closer: str) -> Iterator[None]:
        """Step into a `[...]` or `{...}` and stop at the start of each item in it; the caller
        reads the item. Blank lines, comments and commas between items are skipped; after the
        last item the scanner stands past `closer`."""
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == closer:
                self.pos += 1
                return
            if self.peek() == ",":
                self.pos += 1
                continue
            yield
