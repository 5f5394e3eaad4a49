"""A line-based reading of `bottle.toml` that works on any text, valid TOML or not.

`parse_toml` knows nothing about a document with a syntax error, and a document being typed has
one most of the time. Completion, hover, folding and code lenses must still work then, so this
module finds table headers and `key = value` lines by looking at one line at a time (skipping the
inside of multi-line strings). It never raises.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cached_property

from bottle_engine.manifest.source import KeyPath

_HEADER = re.compile(r"^(\s*)(\[\[?)([^\]#]*)(\]?\]?)")
_SEGMENT = re.compile(r"\s*(\"(?:[^\"\\]|\\.)*\"?|'[^']*'?|[A-Za-z0-9_-]*)\s*")
_KEY_VALUE = re.compile(
    r"^(\s*)((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


@dataclass(frozen=True)
class Segment:
    """One part of a dotted key, and the characters it covers on its line (quotes included)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    """A `[table]` or `[[array]]` header line."""

    line: int
    path: KeyPath  # with the element index of each table array resolved, as `locations` has it
    segments: tuple[Segment, ...]
    is_array: bool
    end: int  # character just after the header's closing bracket(s), or the end of its text


@dataclass(frozen=True)
class KeyLine:
    """A `key = value` line, with the table it belongs to."""

    line: int
    table: KeyPath
    segments: tuple[Segment, ...]
    equals: int  # character of the "="


@dataclass(frozen=True)
class Outline:
    lines: tuple[str, ...]
    headers: tuple[Header, ...]
    keys: tuple[KeyLine, ...]
    in_multiline_string: frozenset[int]  # lines that lie inside a multi-line string

    def header_above(self, line: int) -> Header | None:
        """The header that governs `line` (the last one at or above it)."""
        found: Header | None = None
        for header in self.headers:
            if header.line > line:
                break
            found = header
        return found

    def table_at(self, line: int) -> KeyPath:
        header = self.header_above(line)
        return header.path if header else ()

    @cached_property
    def _header_lines(self) -> list[int]:
        return [h.line for h in self.headers]  # ascending: headers are kept in document order

    def section_end(self, header: Header) -> int:
        """The last non-blank line of `header`'s section.

        The next header is found by bisection: folding asks this of every header, and a scan
        of all headers each time is quadratic in how many the document has."""
        following = bisect.bisect_right(self._header_lines, header.line)
        last = (
            self._header_lines[following] if following < len(self.headers) else len(self.lines)
        ) - 1
        while last > header.line and not self.lines[last].strip():
            last -= 1
        return last

    def names(self, section: str) -> list[str]:
        """Names of `[section.NAME]` tables in document order, e.g. every bottle."""
        seen: dict[str, None] = {}
        for header in self.headers:
            if len(header.path) >= 2 and header.path[0] == section:
                name = header.path[1]
                if isinstance(name, str) and name:
                    seen.setdefault(name, None)
        for key in self.keys:  # `[bottles]` + `name.backend = ...`, or top-level dotted keys
            full = (*key.table, *(s.name for s in key.segments))
            if len(full) >= 3 and full[0] == section and isinstance(full[1], str):
                seen.setdefault(full[1], None)
        return list(seen)

    def keys_in(self, table: KeyPath) -> list[str]:
        """The first key of every `key = value` line written directly in `table`."""
        return [k.segments[0].name for k in self.keys if k.table == table and k.segments]


def split_key(text: str, offset: int = 0) -> tuple[Segment, ...]:
    """`bottles."my box".git` -> its segments with positions (offset = where `text` starts)."""
    segments: list[Segment] = []
    position = 0
    while position <= len(text):
        match = _SEGMENT.match(text, position)
        if match is None:  # pragma: no cover - the pattern matches the empty string
            break
        raw = match.group(1)
        start = match.start(1)
        segments.append(Segment(_unquote(raw), offset + start, offset + start + len(raw)))
        position = match.end()
        if position >= len(text) or text[position] != ".":
            break
        position += 1
    return tuple(segments)


def _unquote(raw: str) -> str:
    if raw and raw[0] in "\"'":
        body = raw[1:-1] if len(raw) >= 2 and raw[-1] == raw[0] else raw[1:]
        if raw[0] == '"':
            return body.replace('\\"', '"').replace("\\\\", "\\")
        return body
    return raw


class _TableArrays:
    """The `[[array]]` tables seen so far, as a tree walked once per header.

    A header's path is resolved segment by segment (each table array on the way adds its
    current element's index), so a dictionary keyed by whole path prefixes would build and hash
    every prefix of a header: quadratic in its length, on a line the workspace writes.
    """

    def __init__(self) -> None:
        self.count = 0  # elements of the table array at this path; 0: not an array
        self.children: dict[str | int, _TableArrays] = {}

    def resolve(self, names: list[str], *, is_array: bool) -> KeyPath:
        """The path of header `names`; an `[[array]]` header also counts one more element."""
        parts: list[str | int] = []
        node: _TableArrays | None = self
        for depth, name in enumerate(names, start=1):
            parts.append(name)
            node = node.children.get(name) if node is not None else None
            if depth < len(names) and node is not None and node.count:
                parts.append(node.count - 1)
                node = node.children.get(node.count - 1)
        if is_array:
            node = self
            for part in parts:
                node = node.children.setdefault(part, _TableArrays())
            parts.append(node.count)
            node.count += 1
        return tuple(parts)


def outline(text: str) -> Outline:
    """Headers and key lines of any text."""
    lines = tuple(text.split("\n"))
    headers: list[Header] = []
    keys: list[KeyLine] = []
    inside: set[int] = set()
    arrays = _TableArrays()
    table: KeyPath = ()
    delimiter: str | None = None  # the open multi-line string's quotes
    for number, line in enumerate(lines):
        if delimiter is not None:
            inside.add(number)
            if line.count(delimiter) % 2 == 1:
                delimiter = None
            continue
        header = _HEADER.match(line)
        if header is not None:
            is_array = header.group(2) == "[["
            segments = split_key(header.group(3), header.start(3))
            table = arrays.resolve([s.name for s in segments], is_array=is_array)
            headers.append(Header(number, table, segments, is_array, header.end()))
            continue
        key_value = _KEY_VALUE.match(line)
        if key_value is not None:
            segments = split_key(key_value.group(2), key_value.start(2))
            keys.append(KeyLine(number, table, segments, key_value.end() - 1))
            rest = line[key_value.end() :]
            for quotes in ('"""', "'''"):
                if rest.count(quotes) % 2 == 1:
                    delimiter = quotes
                    break
    return Outline(lines, tuple(headers), tuple(keys), frozenset(inside))
