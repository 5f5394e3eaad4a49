"""Making untrusted text safe to show a person: the one door for agent-supplied text.

Anything a bottle's agent controls (approval texts, host names it asked for, paths in a pushed
commit, names in a proposed bottle.toml) can carry terminal escape sequences (hidden text, OSC 52
clipboard writes, OSC 8 links, cursor moves that erase lines), newlines that forge extra rows,
bidirectional overrides that reorder what is read, or zero-width characters. `safe_text` turns
such text into one printable line in which every one of those characters is visible as an
escape (``\\x1b``, ``\\n``, ``\\u202e``), so what a person reads is what was sent. The CLI, the
language server and the VS Code extension show agent text only through it; `safe_markup` adds
rich's markup escaping for text printed through rich (in a table's cell, what a terminal draws
wider than rich measures it too, so the table stays within the terminal's width),
`safe_editor_text` breaks the link syntax VS Code still parses in plain-text notifications.

Standard library only: the bundle imports it too.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterable, Iterator

DEFAULT_LIMIT = 2000  # characters of the original text; longer text is cut with a marker

# Unicode categories that must never reach a display raw: controls (C0, DEL, C1, so ESC and
# CSI too), format characters (bidi overrides and isolates, zero-width joiners, BOM, soft
# hyphen), surrogates, private use, line/paragraph separators, and what this Unicode version
# has not assigned (a newer terminal's may draw it as nothing: U+13439 is a format character
# since Unicode 15).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Combining marks: on a blank, or on nothing, one that draws nothing hides what it stands in.
_MARKS = frozenset({"Mn", "Me"})
# What draws nothing: Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt; most
# are format characters already): variation selectors, Hangul fillers and the combining grapheme
# joiner are letters or marks that draw nothing, or a blank, and carried 2000 characters of
# hidden text after a visible "ok". The VS Code extension's display.ts escapes the same.
_DRAWS_NOTHING = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
    # Not default-ignorable, but drawn as an empty cell: U+2800 BRAILLE PATTERN BLANK, and
    # U+FFFC OBJECT REPLACEMENT CHARACTER (an empty glyph in DejaVu Sans Mono).
    (0x2800, 0x2800),
    (0xFFFC, 0xFFFC),
)
# Characters a terminal draws wider than rich measures them, for text rich lays out (tables):
# spacing marks (a vowel sign after its consonant: one column on xterm and VTE, none to rich),
# emoji skin-tone modifiers (East Asian Width W, two columns alone; none to rich) and regional
# indicators (one column to rich, two where emoji are drawn wide: kitty, WezTerm, VS Code's
# terminal). A row holding them is wider on the person's terminal than rich laid it out, and
# what spills over wraps to the left edge, where the agent's text reads as a row of its own.
_WIDER_CATEGORIES = frozenset({"Mc"})
_WIDER_THAN_MEASURED = ((0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF))
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# VS Code renders `[label](command:...)`, `[label](https://...)` and `[label](file:...)` in a
# notification's message as a link (a command link runs with its arguments on one click), and
# `$(name)` in quick picks and lens titles as an icon.
_EDITOR_SYNTAX = re.compile(r"([\]$])\(")


# A run of blanks longer than this (spaces of any width, what draws an empty cell) is shown
# as the escape of each blank with its count, `\x20{1900}`: a terminal wraps a run as long as
# it is (the CLI's consoles leave wrapping to it), and 1900 spaces after an approval's action
# were 23 empty rows that pushed its start off the screen the person answered from. Shorter
# runs stay as they are: an indent, a column of figures.
BLANK_RUN = 16
_BLANKS = (
    "".join(char for char in map(chr, range(0x3001)) if unicodedata.category(char) == "Zs")
    + "\u2800\ufffc"
)
_LONG_BLANK_RUN = re.compile(f"[{re.escape(_BLANKS)}]{{{BLANK_RUN + 1},}}")
_SAME_CHARACTER = re.compile(r"(.)\1*", re.DOTALL)


def _escape(char: str, category: str, laid_out: bool) -> str:
    """`char` (of Unicode `category`) as shown: itself, or its escape."""
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if not (
        category in _UNSAFE_CATEGORIES
        or any(low <= code <= high for low, high in _DRAWS_NOTHING)
        or (laid_out and _drawn_wider(category, code))
    ):
        return char
    return _code_escape(code)


def _code_escape(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _drawn_wider(category: str, code: int) -> bool:
    return category in _WIDER_CATEGORIES or any(
        low <= code <= high for low, high in _WIDER_THAN_MEASURED
    )


def safe_text(text: object, limit: int = DEFAULT_LIMIT, *, laid_out: bool = False) -> str:
    """`text` as one line with every control, escape, bidi and invisible character shown as an
    escape sequence, and backslashes doubled (so an escape the agent typed cannot pass for one
    we made). Longer than `limit` characters, it is cut and says how much was left out. With
    `laid_out` (text rich measures to lay out), what a terminal draws wider is escaped too."""
    raw = text if isinstance(text, str) else str(text)
    cut = raw[:limit] if limit >= 0 else raw
    shown, start = [], 0
    for run in _LONG_BLANK_RUN.finditer(cut):
        shown.append(_escaped(cut[start : run.start()], laid_out))
        shown.extend(_counted(same.group()) for same in _SAME_CHARACTER.finditer(run.group()))
        start = run.end()
        if cut.startswith("{", start):  # a count the agent typed after ours would read as ours
            shown.append(_code_escape(ord("{")))
            start += 1
    shown.append(_escaped(cut[start:], laid_out))
    if len(cut) < len(raw):
        shown.append(f"… ({len(raw) - len(cut)} more characters)")
    return "".join(shown)


def _escaped(segment: str, laid_out: bool) -> str:
    """Each character of `segment` as `_escape` shows it, and a combining mark on a blank or on
    nothing (`segment` starts the text or follows a run of blanks) as its escape: one that
    draws nothing (a Khitan filler) broke a run of blanks into runs too short to be counted."""
    shown = []
    on_blank = True
    for char in segment:
        category = unicodedata.category(char)
        mark = category in _MARKS
        shown.append(
            _code_escape(ord(char)) if mark and on_blank else _escape(char, category, laid_out)
        )
        if not mark:
            on_blank = char in _BLANKS
    return "".join(shown)


def _counted(same: str) -> str:
    """A run of one blank character as its escape and, past one, its count: `\x20{1900}`."""
    return _code_escape(ord(same[0])) + (f"{{{len(same)}}}" if len(same) > 1 else "")


def safe_markup(text: object, limit: int = DEFAULT_LIMIT, *, cell: bool = False) -> str:
    """`safe_text` with rich's markup escaped too, for strings rich would parse (``[conceal]``).
    A table's `cell` is laid out by rich's measure of each character: what a terminal draws
    wider is escaped too (elsewhere rich measures nothing, and a vowel sign stays readable)."""
    from rich.markup import escape  # the bundle has no rich; only host-side callers get here

    return escape(safe_text(text, limit, laid_out=cell))


def safe_editor_text(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """`safe_text` for an editor's message and label surfaces: the ``(`` of ``](`` and ``$(``
    is shown as the escape ``\\x28``, so no link or icon can be made of the agent's text."""
    return _EDITOR_SYNTAX.sub(lambda match: match.group(1) + "\\x28", safe_text(text, limit))


# VS Code cuts a notification's message here (with "..."), counted in UTF-16 code units, whatever
# the sender meant: a question longer than this must not carry an answer that covers all of it.
EDITOR_NOTIFICATION_CHARS = 1000


def fits_a_notification(message: str) -> bool:
    """Does VS Code show `message` whole in a notification? It counts UTF-16 code units, two
    for a character beyond the Basic Multilingual Plane (an emoji): 550 of them fit a count of
    characters and pushed an action's tail past the editor's cut."""
    return len(message.encode("utf-16-le", "surrogatepass")) // 2 <= EDITOR_NOTIFICATION_CHARS


LOG_LINE_LIMIT = 64 * 1024  # characters held waiting for a newline; a longer run is cut there


def safe_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """A byte stream (a container's log) as lines made safe by `safe_text`, each ending in a
    newline: for output that carries agent-chosen text but is not the agent's own terminal
    (the bundle's log names the hosts the agent asked for). A line that never ends is cut every
    `LOG_LINE_LIMIT` characters, so a stream without newlines is not held in memory."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        while len(pending) > LOG_LINE_LIMIT:
            lines.append(pending[:LOG_LINE_LIMIT])
            pending = pending[LOG_LINE_LIMIT:]
        for line in lines:
            yield safe_text(line, -1) + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield safe_text(pending, -1) + "\n"
