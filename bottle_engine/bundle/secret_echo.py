"""Real secret values coming back in responses: put back to their placeholders, as pure code.

The proxy sends a real value to its bound host; that host may send it straight back (an API that
echoes request headers, an error page quoting the token, a debug endpoint). Invariant 3 says the
value never appears in the agent's sandbox, so every response from an intercepted host has each
real value replaced with that secret's placeholder, in the status line, headers, body and
trailers, before the agent sees any of it.

A value is searched for as sent and in the forms a server most often re-encodes text into when
it quotes it: JSON string escaping and percent-encoding (either hex case). Other transformations
(base64, HTML entities, a value cut in pieces by the server) are not recognised.

Bodies are scrubbed either whole (`Scrubber.scrub`) or as a stream (`Scrubber.stream`), which
holds back only the tail of a chunk that could be the start of a value, so a value split across
chunk boundaries is still found and a stream that carries no value is not delayed.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass


def value_forms(value: str) -> tuple[bytes, ...]:
    """The byte strings that reveal `value`: as sent, JSON-escaped, percent-encoded, and as
    Python's repr() of the text or of its bytes shows it (a proxy error quoting what a bound
    host sent)."""
    quoted = urllib.parse.quote(value, safe="")
    forms = [
        value,
        json.dumps(value)[1:-1],
        quoted,
        _lower_hex(quoted),
        repr(value)[1:-1],
        repr(value.encode())[2:-1],
    ]
    return tuple(dict.fromkeys(form.encode() for form in forms if form))


def _lower_hex(quoted: str) -> str:
    parts = quoted.split("%")
    return parts[0] + "".join("%" + part[:2].lower() + part[2:] for part in parts[1:])


@dataclass(frozen=True)
class Scrubber:
    """Replaces every form of every real value with its placeholder."""

    replacements: tuple[tuple[bytes, bytes], ...]  # (a form of a real value, its placeholder)

    @classmethod
    def for_values(cls, pairs: Iterable[tuple[str, str]]) -> Scrubber:
        """From (real value, placeholder) pairs; longer forms are replaced first."""
        replacements = {
            form: placeholder.encode()
            for value, placeholder in pairs
            if value
            for form in value_forms(value)
        }
        ordered = sorted(replacements.items(), key=lambda item: -len(item[0]))
        return cls(tuple(ordered))

    @property
    def longest(self) -> int:
        return max((len(form) for form, _ in self.replacements), default=0)

    def scrub(self, data: bytes) -> bytes:
        for form, placeholder in self.replacements:
            if form in data:
                data = data.replace(form, placeholder)
        return data

    def scrub_text(self, text: str) -> str:
        """For header values and reason phrases (mitmproxy's str view of header bytes)."""
        raw = text.encode("utf-8", "surrogateescape")
        scrubbed = self.scrub(raw)
        return text if scrubbed == raw else scrubbed.decode("utf-8", "surrogateescape")

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of `data` could begin a value (and must wait for more)."""
        for size in range(min(self.longest - 1, len(data)), 0, -1):
            tail = data[-size:]
            if any(form.startswith(tail) for form, _ in self.replacements):
                return size
        return 0


class StreamScrubber:
    """A mitmproxy stream function: called with each chunk, then with b"" at the end."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.pending = b""

    def __call__(self, chunk: bytes) -> bytes:
        data = self.scrubber.scrub(self.pending + chunk)
        if not chunk:  # the end: what is held back is no value (it is shorter than any)
            self.pending = b""
            return data
        keep = self.scrubber.held_back(data)
        self.pending = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep] if keep else data
