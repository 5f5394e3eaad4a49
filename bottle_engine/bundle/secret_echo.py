"""Real secret values coming back in responses: put back to their placeholders, as pure code.

The proxy sends a real value to its bound host; that host may send it straight back (an API that
echoes request headers, an error page quoting the token, a debug endpoint). Invariant 3 says the
value never appears in the agent's sandbox, so every response from an intercepted host has each
real value replaced with that secret's placeholder, in the status line, headers, body and
trailers, before the agent sees any of it.

A value is searched for as sent and in the forms a server most often re-encodes text into when
it quotes it: lower or upper case, JSON string escaping and percent-encoding (as the usual URL
encoders write it, either hex case). Other transformations (base64, HTML entities, a value cut
in pieces by the server) are not recognised.

Bodies are scrubbed either whole (`Scrubber.scrub`) or as a stream (`Scrubber.stream`), which
holds back only the tail of a chunk that could be the start of a value, so a value split across
chunk boundaries is still found and a stream that carries no value is not delayed. After a
WebSocket upgrade the host's frames are read and framed anew (`WebSocketScrubber`), so that a
value cut between the fragments of a message is found as well.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from bottle_engine.bundle.egress_policy import field_key

# Percent-encodings as the usual encoders write them into a URL (a redirect's Location, a
# link): every reserved byte encoded; Python's quote() (keeps '/'); quote_plus() and
# urlencode() (a space as '+'); JavaScript's encodeURIComponent (keeps !'()*).
_URL_ENCODERS = (
    lambda v: urllib.parse.quote(v, safe=""),
    urllib.parse.quote,
    urllib.parse.quote_plus,
    lambda v: urllib.parse.quote(v, safe="-_.!~*'()"),
)


def value_forms(value: str) -> tuple[bytes, ...]:
    """The byte strings that reveal `value`: as sent, in lower or upper case, JSON-escaped,
    percent-encoded (as the usual URL encoders write it, in either hex case), and as Python's
    repr() of the text or of its bytes shows it (a proxy error quoting what a bound host
    sent)."""
    quoted = [encode(value) for encode in _URL_ENCODERS]
    forms = [
        value,
        # Folded as servers fold tokens they quote (codings, media types), in whichever header
        # the agent chose to carry the value.
        value.lower(),
        value.upper(),
        json.dumps(value)[1:-1],
        *quoted,
        *(_lower_hex(text) for text in quoted),
        repr(value)[1:-1],
        repr(value.encode())[2:-1],
    ]
    return tuple(dict.fromkeys(form.encode() for form in forms if form))


# Response fields that hash the body as the host sent it (a strong ETag as Express and others make
# one, Content-MD5, RFC 9530's digests, registries' and object stores' checksums). With the real
# value in that body they test a guess of it offline: the agent has the scrubbed body, puts the
# guess where the placeholder is and hashes. Names lower-case; a name starting with one of
# `_DIGEST_PREFIXES` counts too.
BODY_DIGEST_FIELDS = frozenset(
    {
        "etag",
        "content-md5",
        "digest",
        "repr-digest",
        "content-digest",
        "x-goog-hash",
        "docker-content-digest",
    }
)
_DIGEST_PREFIXES = ("x-amz-checksum-", "x-ms-content-", "x-oss-hash-", "x-checksum-")


def is_body_digest(name: bytes | str) -> bool:
    """Is the field `name` a hash of the body (`BODY_DIGEST_FIELDS`)?"""
    key = field_key(name.decode("latin-1") if isinstance(name, bytes) else name)
    return key in BODY_DIGEST_FIELDS or key.startswith(_DIGEST_PREFIXES)


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


MAX_CONTROL_PAYLOAD = 125  # bytes: RFC 6455 5.5


class WebSocketScrubber:
    """Scrubs what a server sends on a WebSocket, frame by frame, as a stream of raw bytes.

    Scrubbing the raw bytes misses a value that the server cuts between the fragments of one
    message (a frame header sits in it), which the agent's client joins again. Here each
    message's payload, across its fragments and the reads they arrive in, goes through one
    `StreamScrubber` and is framed anew: what a read brings goes on at once as a fragment, and
    what is held back goes with the message's last frame (a message that arrives in one read
    goes on whole, so holding back does not show whether it ends like a value). Control frames
    are scrubbed whole. Bytes that are no frame of an unextended WebSocket (extension bits,
    reserved opcodes, a long or fragmented control frame, fragments out of order) end the
    relay: nothing more is sent on.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.head = b""  # an incomplete frame header
        self.broken = False
        self.in_frame = False
        self.fin = False
        self.opcode = 0
        self.left = 0  # payload bytes of the current frame still to come
        self.mask = b""
        self.offset = 0  # into the mask
        self.control = b""  # a control frame's payload so far
        self.message: StreamScrubber | None = None  # the data message under way
        self.message_opcode = 0  # 0 once its first fragment has gone out

    def __call__(self, chunk: bytes) -> bytes:
        out = bytearray()
        data, self.head = self.head + chunk, b""
        pos = 0  # read by position: slicing off each frame copied the rest of the read again
        while not self.broken and (pos < len(data) or self.in_frame):
            if not self.in_frame:
                pos = self._start_frame(data, pos)
                continue
            piece = self._unmask(data[pos : pos + self.left])
            pos += len(piece)
            self.left -= len(piece)
            if self.opcode >= 8:
                self.control += piece
            elif self.message is not None:
                last = self.left == 0 and self.fin
                payload = self.message(piece) if piece else b""
                if last:
                    payload += self.message(b"")  # the end: what it held back
                    self.message = None
                if payload or last:
                    out += _frame(last, self.message_opcode, payload)
                    self.message_opcode = 0  # the rest of it is continuation
            if self.left == 0:
                self.in_frame = False
                if self.opcode >= 8:  # a close frame's reason, a ping's data
                    payload = self.scrubber.scrub(self.control)[:MAX_CONTROL_PAYLOAD]
                    out += _frame(True, self.opcode, payload)
            elif pos >= len(data):
                break
        return b"" if self.broken else bytes(out)

    def _start_frame(self, data: bytes, pos: int) -> int:
        """Read the frame header at `pos` (or keep what there is of it); where its payload
        starts."""
        have = len(data) - pos
        size = data[pos + 1] & 0x7F if have >= 2 else 0
        masked = have >= 2 and data[pos + 1] & 0x80
        start = pos + 2 + {126: 2, 127: 8}.get(size, 0) + (4 if masked else 0)
        if len(data) < start:
            self.head = data[pos:]
            return len(data)
        if size >= 126:
            size = int.from_bytes(data[pos + 2 : pos + (4 if size == 126 else 10)], "big")
        first = data[pos]
        self.fin, self.opcode = bool(first & 0x80), first & 0x0F
        control = self.opcode >= 8
        if (
            first & 0x70  # an extension's bits (compressed, say): not searchable
            or self.opcode not in (0, 1, 2, 8, 9, 10)
            or (control and (not self.fin or size > MAX_CONTROL_PAYLOAD))
            or (not control and (self.opcode == 0) != (self.message is not None))
        ):
            self.broken = True
            return len(data)
        self.mask = data[start - 4 : start] if masked else b""
        self.offset, self.left, self.in_frame, self.control = 0, size, True, b""
        if self.opcode in (1, 2):
            self.message, self.message_opcode = self.scrubber.stream(), self.opcode
        return start

    def _unmask(self, piece: bytes) -> bytes:
        """A server must not mask its frames; one that does is unmasked, to be searched."""
        if not self.mask or not piece:
            return piece
        rotated = self.mask[self.offset :] + self.mask[: self.offset]
        self.offset = (self.offset + len(piece)) % 4
        key = (rotated * (len(piece) // 4 + 1))[: len(piece)]
        mixed = int.from_bytes(piece, "big") ^ int.from_bytes(key, "big")
        return mixed.to_bytes(len(piece), "big")


def _frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    """One unmasked frame, as a server sends it (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes([first, size]) + payload
    if size < 1 << 16:
        return bytes([first, 126]) + size.to_bytes(2, "big") + payload
    return bytes([first, 127]) + size.to_bytes(8, "big") + payload
