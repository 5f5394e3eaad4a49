"""Real secret values coming back in responses: put back to their placeholders, as pure code.

The proxy sends a real value to its bound host; that host may send it straight back (an API that
echoes request headers, an error page quoting the token, a debug endpoint). Invariant 3 says the
value never appears in the agent's sandbox, so every response from an intercepted host has each
real value replaced with that secret's placeholder, in the status line, headers, body and
trailers, before the agent sees any of it.

A value is searched for as sent and in the forms a server most often re-encodes text into when
it quotes it: lower or upper case, JSON string escaping and percent-encoding (each as the usual
encoders write it, either hex case). A value cut by the server is found too when it keeps the
first or last `MIN_PIECE` bytes of one of these forms, or any 2 * `MIDDLE_PIECE` - 1 of them: a
server that quotes a header cut to a length (error messages do) would otherwise hand the
agent, who pads the header so that the cut falls where it likes, all of the value but its last
bytes. Other transformations (base64, HTML entities) are not recognised.

Bodies are scrubbed either whole (`Scrubber.scrub`) or as a stream (`Scrubber.stream`), which
holds back what follows a chunk's last line break (at most `Scrubber.hold` bytes), so a value
split across chunk boundaries is still found, a stream of lines is not delayed, and what waits
never depends on the values (an echo would show the agent how they begin). After a
WebSocket upgrade the host's frames are read (by wsproto) and framed anew (`WebSocketScrubber`),
so that a value cut between the fragments of a message is found as well.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from wsproto.frame_protocol import (
    MAX_PAYLOAD_NORMAL,
    CloseReason,
    Frame,
    FrameProtocol,
    Opcode,
    ParseFailed,
)

from bottle_engine.bundle.egress_policy import field_key
from bottle_engine.bundle.secret_forms import json_forms, url_forms


def value_forms(value: str) -> tuple[bytes, ...]:
    """The byte strings that reveal `value`: as sent, in lower or upper case, JSON-escaped (as
    the usual JSON encoders write it), percent-encoded (as the usual URL encoders write it, in
    either hex case), and as Python's repr() of the text or of its bytes shows it (a proxy
    error quoting what a bound host sent)."""
    forms = [
        value,
        # Folded as servers fold tokens they quote (codings, media types), in whichever header
        # the agent chose to carry the value.
        value.lower(),
        value.upper(),
        *json_forms(value),
        *url_forms(value),
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


# What may wait for more of a stream: at least this many bytes (`Scrubber.hold`), longer than the
# longest form of the usual token (an API key is about 100 bytes, its percent-encoding up to 3x).
MIN_HOLD = 1023


# Pieces of a form are looked for at fixed places: its first and last MIN_PIECE bytes, and its
# MIDDLE_PIECE-byte pieces at every MIDDLE_PIECE-th offset (each one C-speed `bytes.find` over
# the lower-cased data; longer pieces in the middle, where servers rarely cut on both sides,
# make fewer and quicker searches). So a cut echo is found when it keeps the value's first or
# last MIN_PIECE bytes, or any 2 * MIDDLE_PIECE - 1 of it. A hit puts the placeholder over the
# span the form would take there (as far as its bytes are ones the form holds), whether those
# bytes match the form or not: were it only over the bytes that match, an agent that gets its
# own text echoed could learn, from where the placeholder stops, whether its guess of the next
# byte of the value was right, and so learn the value byte by byte. So it learns at most whether
# a guess of a whole piece is right, which it cannot make.
MIN_PIECE = 8
MIDDLE_PIECE = 16


@dataclass(frozen=True)
class Scrubber:
    """Replaces every form of every real value, and every value cut as `MIN_PIECE` says, with
    its placeholder."""

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

    @property
    def hold(self) -> int:
        """How many bytes at the end of what has come may begin a value, and wait for more: the
        longest form's length less one, but never fewer than `MIN_HOLD`, so that how much waits
        tells an agent reading an echo neither how long a value is nor, by its percent-encoded
        form, how many of its bytes are reserved."""
        return max(self.longest - 1, MIN_HOLD) if self.replacements else 0

    def scrub(self, data: bytes) -> bytes:
        data = self.scrub_forms(data)
        return _put(data, self.spans(data))

    def scrub_forms(self, data: bytes) -> bytes:
        """Whole forms only."""
        for form, placeholder in self.replacements:
            if form in data:
                data = data.replace(form, placeholder)
        return data

    def spans(self, data: bytes, covered: int = 0) -> list[tuple[int, int, bytes]]:
        """Where a form one of whose pieces (`anchors`) is in `data` would lie, as (start, end,
        placeholder), in order, overlapping ones as one. A span reaches as far as the form
        would from the piece, but no further than its bytes are ones the form holds (`anchors`
        says why). The first `covered` bytes are a span whose placeholder is already put
        (placeholder b"", `StreamScrubber`).

        The cost is linear in `data` whatever it holds: a host that echoes the agent's text
        could otherwise fill a body with pieces (each hit expanded byte by byte, each span
        found again from every piece in it). The hits of one piece that would make one span
        are taken as one: from a hit, the furthest hit whose span still touches it (one
        `rfind`), so each step moves the span's end by at least half a form. Where the bytes
        stop being ones the form holds is found by C-speed `find` in a map of `data` that
        marks those bytes, never further than the form could reach."""
        found: list[tuple[int, int, bytes, int]] = []  # (start, first hit's end, placeholder, end)
        if covered:
            found.append((0, 0, b"", covered))
        if self.anchors:
            folded = data.lower()  # ASCII only: every byte keeps its place
            marked: dict[frozenset[int], bytes] = {}  # per alphabet: 1 where `data` has its bytes
            for piece, offset, size, alphabet, placeholder in self.anchors:
                hit = folded.find(piece)
                if hit == -1:
                    continue
                if alphabet not in marked:
                    marked[alphabet] = folded.translate(_marks(alphabet))
                found += _groups(folded, marked[alphabet], hit, piece, offset, size, placeholder)
        spans: list[tuple[int, int, bytes]] = []
        # A placeholder already put goes first: none is put again over what it covers.
        for start, _, placeholder, end in sorted(found, key=lambda f: (f[0], f[2] != b"", f)):
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end), spans[-1][2])
            else:
                spans.append((start, end, placeholder))
        return spans

    @functools.cached_property
    def anchors(self) -> tuple[tuple[bytes, int, int, frozenset[int], bytes], ...]:
        """(a piece of a form lower-cased, its offset there, the form's size, the bytes the
        form holds, placeholder) for `spans`; the lower and upper case forms fold into one.

        A span stops at a byte the form does not hold: text that merely begins like a value
        (a token's public prefix in a model's answer) loses only the token-like run, not what
        follows it. Whether it stops says whether that byte is in the form at all, never
        whether the agent's guess of the value's next byte was right."""
        anchors = {}
        for form, placeholder in self.replacements:
            folded, size = form.lower(), len(form)
            if size < MIN_PIECE:
                continue  # found whole only
            alphabet = frozenset(folded)
            places = {(0, MIN_PIECE), (size - MIN_PIECE, MIN_PIECE)}
            # One at 0 or ending at the end would find nothing the first and last do not.
            middle = range(MIDDLE_PIECE, size - MIDDLE_PIECE, MIDDLE_PIECE)
            places.update((at, MIDDLE_PIECE) for at in middle)
            for at, length in places:
                anchors[folded[at : at + length], at, size, alphabet] = placeholder
        return tuple((*key, placeholder) for key, placeholder in anchors.items())

    def scrub_text(self, text: str) -> str:
        """For header values and reason phrases (mitmproxy's str view of header bytes)."""
        raw = text.encode("utf-8", "surrogateescape")
        scrubbed = self.scrub(raw)
        return text if scrubbed == raw else scrubbed.decode("utf-8", "surrogateescape")

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)

    @functools.cached_property
    def line_breaks_end_values(self) -> bool:
        """No form of any value holds a line break (no header value does: RFC 9110 5.5)."""
        return not any(b"\n" in form or b"\r" in form for form, _ in self.replacements)

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of `data` wait for the next chunk, as a value may begin
        there: the last `hold`, but none before a line break, which no value runs
        across. Which bytes wait never depends on the values: holding back only a tail that
        begins one would tell an agent whose words a host streams back, by when they come,
        how its guess of the value begins."""
        size = min(self.hold, len(data))
        if size <= 0:
            return 0
        if self.line_breaks_end_values:
            tail = data[-size:]
            size -= max(tail.rfind(b"\n"), tail.rfind(b"\r")) + 1
        return size


class StreamScrubber:
    """A mitmproxy stream function: called with each chunk, then with b"" at the end."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.pending = b""
        self.covered = 0  # how many bytes that begin `pending` a placeholder already put covers

    def __call__(self, chunk: bytes) -> bytes:
        data = self.scrubber.scrub_forms(self.pending + chunk)
        cut = len(data) - (self.scrubber.held_back(data) if chunk else 0)
        self.pending = data[cut:]
        out, self.covered = _scrub_upto(self.scrubber, data, cut, self.covered)
        return out


class WebSocketScrubber:
    """Scrubs what a server sends on a WebSocket, as a stream of raw bytes.

    Scrubbing the raw bytes misses a value that the server cuts between the fragments of one
    message (a frame header sits in it), which the agent's client joins again. Here wsproto
    reads the frames, each message's payload across its fragments and the reads they arrive
    in is scrubbed as one stream, and what is scrubbed is framed anew: what a read brings goes
    on at once as a fragment, but for its last `Scrubber.hold` bytes, which wait for
    the rest (a value may begin there) and go with the message's last frame. That many are
    held back whatever they are: holding back only a tail that begins a value would tell the
    agent, through an echo of its own fragments, how its guess of the value begins. Control
    frames are scrubbed whole. Bytes that are no frame of an unextended WebSocket as a server
    sends it end the relay: a close frame (protocol error) goes to the agent, nothing after.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.hold = scrubber.hold
        self.reader = FrameProtocol(client=True, extensions=[])  # the host's frames
        self.writer = FrameProtocol(client=False, extensions=[])  # frames to the agent
        self.message = bytearray()  # of the message under way: the bytes not yet sent on
        self.covered = 0  # how many bytes that begin it a placeholder already sent covers
        self.text: codecs.IncrementalDecoder | None = None  # its text, if a text message
        self.ended = False

    def __call__(self, chunk: bytes) -> bytes:
        if self.ended:  # nothing more is read: not even kept
            return b""
        out = bytearray()
        self.reader.receive_bytes(chunk)
        try:
            for frame in self.reader.received_frames():
                if frame.opcode.iscontrol():
                    out += self._flush() + self._control(frame)
                else:
                    out += self._data(frame)
            out += self._flush()
        except (ParseFailed, UnicodeDecodeError):
            self.ended = True
            return bytes(out) + self.writer.close(
                CloseReason.PROTOCOL_ERROR, "the proxy cannot read the upstream's frames"
            )
        return bytes(out)

    def _data(self, frame: Frame) -> bytes:
        payload = frame.payload
        assert not isinstance(payload, tuple)  # a close frame's (code, reason) only
        if self.text is None and frame.opcode is Opcode.TEXT:
            self.text = codecs.getincrementaldecoder("utf-8")()
        self.message += payload.encode() if isinstance(payload, str) else payload
        if not frame.message_finished:
            return b""
        last = self._scrub(0)
        self.message.clear()
        self.covered = 0
        return self._send(last, fin=True)

    def _flush(self) -> bytes:
        """Send on what has come of the message under way, but the bytes held back."""
        if len(self.message) <= self.hold:
            return b""
        return self._send(self._scrub(self.hold), fin=False)

    def _scrub(self, hold: int) -> bytes:
        """The message under way scrubbed (whole forms, then cut ones as `StreamScrubber` finds
        them), but its last `hold` bytes, which are kept. A form that begins before them ends
        in the message (`self.hold` bytes are past it), so none is cut there; a span reaching
        into them has its placeholder put now (`_scrub_upto`)."""
        data = self.scrubber.scrub_forms(bytes(self.message))
        cut = len(data) - hold
        self.message[:] = data[cut:]
        out, self.covered = _scrub_upto(self.scrubber, data, cut, self.covered)
        return out

    def _send(self, payload: bytes, fin: bool) -> bytes:
        text = self.text
        if fin:
            self.text = None
        if text is None:
            return self.writer.send_data(payload, fin)
        return self.writer.send_data(text.decode(payload, fin), fin)

    def _control(self, frame: Frame) -> bytes:
        """A close frame's reason, a ping's or pong's data, scrubbed (and cut to fit)."""
        if frame.opcode is Opcode.CLOSE:
            self.ended, self.message = True, bytearray()  # a message cut short goes no further
            self.covered = 0
            code, reason = cast(tuple[int, str], frame.payload)
            return self.writer.close(code, self.scrubber.scrub_text(reason))
        payload = self.scrubber.scrub(bytes(cast(bytes, frame.payload)))[:MAX_PAYLOAD_NORMAL]
        if frame.opcode is Opcode.PING:
            return self.writer.ping(payload)
        return self.writer.pong(payload)


def _groups(
    folded: bytes, marks: bytes, hit: int, piece: bytes, offset: int, size: int, placeholder: bytes
) -> list[tuple[int, int, bytes, int]]:
    """For `Scrubber.spans`: from its first `hit`, the spans of `piece`'s hits in `folded`, those
    that touch one another as one: (start, the first one's end, placeholder, end)."""
    found = []
    length = len(folded)
    while hit != -1:
        stop = marks.rfind(0, max(hit - offset, 0), hit)
        start = stop + 1 if stop != -1 else max(hit - offset, 0)
        end = _reach(marks, hit + len(piece), hit - offset + size, length)
        first_end = end
        while True:  # the furthest hit whose span starts by `end`, in this run
            bound = _reach(marks, hit + 1, end + offset + len(piece), length)
            further = folded.rfind(piece, hit + 1, bound)
            if further == -1:
                break
            hit = further
            end = _reach(marks, hit + len(piece), hit - offset + size, length)
        found.append((start, first_end, placeholder, end))
        hit = folded.find(piece, hit + 1)
    return found


def _scrub_upto(scrubber: Scrubber, data: bytes, cut: int, covered: int) -> tuple[bytes, int]:
    """`data` (whole forms already replaced; its first `covered` bytes covered by a placeholder
    already put) with its cut-echo spans put back, up to `cut`; and how many bytes from `cut`
    on the placeholder of a span across `cut` covers. That span may reach further with what
    comes next: its placeholder goes now, and the bytes that wait are covered by it then
    (`Scrubber.spans`). Were the span to wait whole, spans that touch one another (an echo of
    pieces of a value, over and over) would hold back all of a body and scrub it again at each
    chunk."""
    spans = scrubber.spans(data, covered)
    across = next((end - cut for start, end, _ in spans if start < cut < end), 0)
    put = [(start, min(end, cut), placeholder) for start, end, placeholder in spans if start < cut]
    return _put(data[:cut], put), across


@functools.cache
def _marks(alphabet: frozenset[int]) -> bytes:
    """A `bytes.translate` table: a byte of `alphabet` to 1, any other to 0."""
    return bytes(int(byte in alphabet) for byte in range(256))


def _reach(marks: bytes, begin: int, limit: int, size: int) -> int:
    """The end of the run of marked bytes from `begin`, but no further than `limit`."""
    limit = min(limit, size)
    stop = marks.find(0, begin, limit) if begin < limit else -1
    return stop if stop != -1 else max(limit, begin)


def _put(data: bytes, spans: list[tuple[int, int, bytes]]) -> bytes:
    """`data` with each of `spans` (start, end, placeholder; in order, apart) put back."""
    out, done = bytearray(), 0
    for start, end, placeholder in spans:
        out += data[done:start] + placeholder
        done = end
    return bytes(out + data[done:])
