"""The forms a secret value takes when it is stored or sent encoded, and one search for them.

Pure (standard library only), so the host imports it as the bundle does: the git gate searches
every pushed object with it (`gitgate.scan`), the launch searches everything it copies into
the sandbox (`guest.refuse_real_values`), and the egress echo guard builds its forms from the
same encoders (`secret_echo.value_forms`).

A value is searched as written, base64-encoded at each alignment it can take inside a longer
text (standard and URL-safe alphabets), hex-encoded in either case, percent-encoded as the
usual URL encoders write it, JSON-escaped as the usual JSON encoders write it, and as UTF-16 and
UTF-32 (either byte order); also where line breaks cut it (`base64` wraps at 76 columns), and
a value of several lines (a key) with each line indented (a YAML block, a heredoc).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

MIN_NEEDLE = 8  # encoded forms shorter than this would match by chance
# Raised whenever the search finds more than before (a form, a way of matching one): what was
# found clean by a search that found less (`copied_history.CleanPacks`) is searched again.
SEARCH_VERSION = 3
RUN_BYTES = 16 * 1024 * 1024  # `ValueSearch.finds` searches items joined in runs of this size
K = TypeVar("K")

# Percent-encodings as the usual encoders write them into a URL (a redirect's Location, a
# link, a query string in a config): every reserved byte encoded; Python's quote() (keeps
# '/'); quote_plus() and urlencode() (a space as '+'); JavaScript's encodeURIComponent (keeps
# !'()*); Go's url.PathEscape (keeps $&+,:;=@).
URL_ENCODERS = (
    lambda v: urllib.parse.quote(v, safe=""),
    urllib.parse.quote,
    urllib.parse.quote_plus,
    lambda v: urllib.parse.quote(v, safe="-_.!~*'()"),
    lambda v: urllib.parse.quote(v, safe="$&+,:;=@"),
)

# JSON as web stacks' encoders write it, escaping more than JSON requires, as (the characters
# written \u00XX, whether '/' is written '\/'): Python's and JavaScript's (none), PHP's
# json_encode (Laravel), Symfony's JsonResponse, .NET's System.Text.Json, Go's encoding/json
# (and Rails). Between escapes a searcher does not know, a value falls apart in runs that no
# piece of it anchors, and a JSON parser joins them again.
_JSON_ENCODERS = (("", False), ("", True), ("\"&'<>", True), ("\"&'+<>`", False), ("&<>", False))


def json_forms(value: str) -> list[str]:
    """`value` inside a JSON string as each of `_JSON_ENCODERS` writes it, in either hex case."""
    forms = []
    for escaped, slash in _JSON_ENCODERS:
        for style in ("\\u%04x", "\\u%04X"):
            text = "".join(style % ord(c) if c in escaped else json.dumps(c)[1:-1] for c in value)
            forms.append(text.replace("/", "\\/") if slash else text)
    return forms


def url_forms(value: str) -> list[str]:
    """`value` percent-encoded by each of `URL_ENCODERS`, with upper- and lower-case hex."""
    quoted = [encode(value) for encode in URL_ENCODERS]
    return [*quoted, *(_lower_hex(text) for text in quoted)]


def _lower_hex(quoted: str) -> str:
    parts = quoted.split("%")
    return parts[0] + "".join("%" + part[:2].lower() + part[2:] for part in parts[1:])


def base64_forms(raw: bytes) -> list[bytes]:
    """`raw`'s base64 at each of the three alignments it can take inside a longer encoded text
    (only the characters that do not depend on neighbouring bytes), in both alphabets."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        first_group = -(-offset // 3)  # the first group of 3 bytes made of the value only
        last_group = (offset + len(raw)) // 3  # one past the last such group
        stable = encoded[4 * first_group : 4 * last_group]
        forms.append(stable)
        forms.append(stable.translate(bytes.maketrans(b"+/", b"-_")))
    return forms


@dataclass(frozen=True)
class Needle:
    """One stored form of a value; `label` names the value and the form, never the value.
    `word`: matched only where no letter or digit touches it (`ValueSearch.short_words`)."""

    data: bytes
    label: str
    word: bool = False
    indented: bool = False  # `data`'s lines, each with any indentation (`_find`)


def stored_forms(value: str, label: str, *, short_words: bool = False) -> list[Needle]:
    """The byte strings that give `value` away when stored (module docstring). Encoded forms
    shorter than `MIN_NEEDLE` are left out (they would match by chance); the value itself is
    kept at any length. With `short_words`, a value shorter than `MIN_NEEDLE` is matched as a
    whole word only, in its printable forms: four characters occur by chance inside the
    words of any project of some size."""
    raw = value.encode()
    # A value of several lines (a key) is found with other line endings, or wrapped otherwise,
    # by its lines joined: the search looks in the data with its line breaks removed too.
    forms = [(raw, label), (_unwrapped(raw), label)]
    forms += [(form, f"{label}, base64-encoded") for form in base64_forms(raw)]
    forms += [(raw.hex().encode(), f"{label}, hex-encoded")]
    forms += [(raw.hex().upper().encode(), f"{label}, hex-encoded")]
    forms += [(form.encode(), f"{label}, percent-encoded") for form in url_forms(value)]
    forms += [(form.encode(), f"{label}, JSON-escaped") for form in json_forms(value)]
    forms += [(value.encode(codec), f"{label}, as UTF-16") for codec in ("utf-16-le", "utf-16-be")]
    forms += [(value.encode(codec), f"{label}, as UTF-32") for codec in ("utf-32-le", "utf-32-be")]
    short = short_words and len(raw) < MIN_NEEDLE
    needles: dict[tuple[bytes, bool], Needle] = {}
    for data, how in forms:
        if len(data) < min(MIN_NEEDLE, len(raw)) or (short and b"\0" in data):
            continue
        needles.setdefault((data, False), Needle(data, how, short))
    # A value of several lines kept in a YAML block (`key: |`) or a heredoc has each line
    # indented: searched line after line, with any indentation before and after a break.
    lines = [line.strip(b" \t") for line in raw.strip().splitlines()]
    if len(lines) > 1 and len(raw) >= MIN_NEEDLE:
        data = b"\n".join(lines)
        needles.setdefault((data, True), Needle(data, f"{label}, indented", indented=True))
    return list(needles.values())


def _unwrapped(data: bytes) -> bytes:
    # One pass and one copy: at launch `data` is the whole workspace copy.
    return data.translate(None, b"\r\n")


class ValueSearch:
    """Every stored form of some values (`stored_forms`), searched in bytes."""

    def __init__(self, values: Iterable[tuple[str, str]], *, short_words: bool = False) -> None:
        """`values`: (value, label) pairs; an empty value is left out."""
        self.needles = [
            needle
            for value, label in values
            if value
            for needle in stored_forms(value, label, short_words=short_words)
        ]

    def hits(self, data: bytes) -> Iterator[tuple[Needle, int, bool]]:
        """(needle, index, unwrapped) for each needle found in `data`, at its first place: in
        `data` itself, else (`unwrapped` true) in `data` with its line breaks removed."""
        unwrapped = _unwrapped(data) if b"\n" in data or b"\r" in data else data
        for needle in self.needles:
            index = _find(data, needle)
            if index >= 0:
                yield needle, index, False
            elif unwrapped is not data and (index := _find(unwrapped, needle)) >= 0:
                yield needle, index, True

    def first(self, data: bytes) -> Needle | None:
        """The first needle found in `data` (or with its line breaks removed), for a yes or no
        over much data: one pass per needle, over the unwrapped bytes where the needle holds
        no line break (a form found in `data` is found there too), over `data` where it holds
        one; a whole word over both (unwrapped, the next line's first letter touches a word
        that ends a line)."""
        unwrapped = _unwrapped(data)
        for needle in self.needles:
            wraps = b"\n" in needle.data or b"\r" in needle.data
            if (wraps or needle.word) and _find(data, needle) >= 0:
                return needle
            if not wraps and _find(unwrapped, needle) >= 0:
                return needle
        return None

    def first_in_stream(self, pieces: Iterable[bytes]) -> Needle | None:
        """The first needle in the bytes `pieces` make one after another (an object too large
        to hold whole): each piece is searched with the end of the one before, twice as long
        as the longest form (a form cut by a line break at every other byte is found)."""
        keep = 2 * max((len(needle.data) for needle in self.needles), default=0)
        tail = b""
        for piece in pieces:
            window = tail + piece
            needle = self.first(window)
            if needle is not None:
                return needle
            tail = window[-keep:] if keep else b""
        return None

    def finds(self, items: Iterable[tuple[K, bytes]]) -> Iterator[tuple[K, Needle]]:
        """(key, needle) for each of `items` whose bytes hold a value, in order. Items are
        searched joined, in runs of about `RUN_BYTES` (one pass per form over much data rather
        than one per item: a history is thousands of objects), one by one only in a run where
        something was found; a value is not found across two items."""
        run: list[tuple[K, bytes]] = []
        size = 0
        for key, data in items:
            run.append((key, data))
            size += len(data)
            if size >= RUN_BYTES:
                yield from self._finds_in(run)
                run, size = [], 0
        yield from self._finds_in(run)

    def _finds_in(self, run: list[tuple[K, bytes]]) -> Iterator[tuple[K, Needle]]:
        if not run or self.first(b"\0".join(data for _, data in run)) is None:
            return
        for key, data in run:
            needle = self.first(data)
            if needle is not None:
                yield key, needle


def _find(data: bytes, needle: Needle) -> int:
    """Where `needle` first is in `data` (-1: nowhere); a `word` needle only with no letter or
    digit on either side (a regular expression: a short value occurs often), an `indented`
    one line after line."""
    if needle.indented:
        found = _indented(needle.data).search(data)
    elif needle.word:  # the regular expression is slow: a plain find first rules most out
        found = _word(needle.data).search(data) if needle.data in data else None
    else:
        return data.find(needle.data)
    return -1 if found is None else found.start()


@functools.cache
def _word(data: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![A-Za-z0-9])" + re.escape(data) + rb"(?![A-Za-z0-9])")


@functools.cache
def _indented(data: bytes) -> re.Pattern[bytes]:
    # Starts with the first line as written: the search runs at the speed of a plain find.
    lines = [re.escape(line) for line in data.split(b"\n")]
    return re.compile(rb"[ \t]*(?:\r\n|\r|\n)[ \t]*".join(lines))
