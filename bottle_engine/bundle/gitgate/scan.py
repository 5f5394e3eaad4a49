"""Secret scanning of what a push stores: every new blob as bytes, every commit and tag object,
every path and ref name. Pure: bytes and names in, findings out; `objects.py` reads them from git.

What is looked at, for each blob:
* the bytes as stored, as text (UTF-8, undecodable bytes replaced, NUL bytes as line breaks, so
  a file with one NUL byte is still read line by line);
* the runs of ASCII text stored as UTF-16 or UTF-32 (little and big endian), as ``strings -el``
  finds them, wherever they are in the blob;
* the content of every gzip, bzip2 or xz stream wherever its magic number stands in the blob (a
  tar of .gz files, a payload past a script), and of a zlib or lzma stream that starts it,
  inflated up to the blob bound (inflating further is refused, not skipped);
* likewise each member of a zip archive anywhere in the blob, found by walking every local
  entry header, not by the central directory, which may leave entries out that tools reading
  the entries in order (``jar``, libarchive) still extract;
* what those hold is read the same way, `MAX_NESTING` levels deep; a stream deeper than that,
  or one the bundle has no decompressor for (zstd and its legacy frames, lz4 and its legacy
  frame, 7z, rar, lzip, and compress, pack and LZH, which gunzip reads), is refused, not
  skipped; for that, the header after its magic number must be valid too (programs and
  compressed data hold these few bytes by chance), as its decoder reads it.

A commit is also read decoded from the encoding its ``encoding`` header names, as ``git log``
and forges show it; one naming an encoding Python does not know is refused unscanned.

On each line, every detect-secrets plugin runs. No filter that reads something the agent chose
decides what is skipped: detect-secrets' file-name filters (``*.png``, lock files, swagger) and
its ``pragma: allowlist secret`` comments are not used. The pattern detectors (AWS keys, private
keys, tokens) are never filtered; only the guessing ones (high entropy, secret keywords, public
IPs) keep detect-secrets' heuristics against false positives, which an agent can evade anyway by
encoding or splitting a secret. The bottle's own secret values and placeholders are searched in
every view in each stored form `secret_forms` knows (as they are, base64 at any alignment, hex,
percent-encoded, JSON-escaped, UTF-16), also where line breaks cut them. A finding names the
commit, the path and the kind, never the value.
"""

from __future__ import annotations

import bisect
import bz2
import codecs
import lzma
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottle_engine.bundle.config import (
    DEFAULT_MAX_BLOB_BYTES,
    DEFAULT_MAX_SCAN_BYTES,
    SecretBinding,
)
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.display import safe_text

LINE_WINDOW = 4096  # longer lines are read in overlapping windows, bounding regex work per call
WINDOW_OVERLAP = 512  # a secret up to this long is whole in some window
BLOCK_LINES = 256  # lines per block for the plugins' whole-block pre-check
MIN_STRING_RUN = 8  # shortest UTF-16/32 run worth reading (no secret is shorter)

# The plugins whose findings are guesses; detect-secrets' content heuristics apply to them only.
GUESSING_PLUGINS = frozenset(
    {"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector", "IPPublicDetector"}
)

_WIDE_RUNS = (
    ("UTF-16LE text", re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % MIN_STRING_RUN), "utf-16-le"),
    ("UTF-16BE text", re.compile(rb"(?:\x00[\x20-\x7e]){%d,}" % MIN_STRING_RUN), "utf-16-be"),
    (
        "UTF-32LE text",
        re.compile(rb"(?:[\x20-\x7e]\x00\x00\x00){%d,}" % MIN_STRING_RUN),
        "utf-32-le",
    ),
    # Not left to the UTF-32LE pattern one byte on: that misses a run's last character when
    # nothing follows it, and a key at the end of a blob lost the character that made it one.
    (
        "UTF-32BE text",
        re.compile(rb"(?:\x00\x00\x00[\x20-\x7e]){%d,}" % MIN_STRING_RUN),
        "utf-32-be",
    ),
)


@dataclass(frozen=True)
class ScanLimits:
    """How much the gate reads for one push; beyond a bound the push is refused, never skipped."""

    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES


@dataclass(frozen=True)
class KnownSecret:
    """A string that must never be pushed; `label` names it without revealing it."""

    text: str
    label: str


@dataclass(frozen=True)
class Finding:
    """Why a push is refused: a secret (or an unscannable object) in one commit.

    `path` is a file path, or what was read ("the commit message and headers"); `line` is the
    line in the `view` the scanner read ("" for the bytes as stored)."""

    commit: str
    path: str
    line: int | None
    kind: str
    view: str = ""

    def describe(self) -> str:
        where = safe_text(self.path, 300) + (f":{self.line}" if self.line is not None else "")
        text = (f"commit {self.commit[:12]}: " if self.commit else "") + f"{where}: {self.kind}"
        return text + (f" (in its {self.view})" if self.view else "")


class _Unscannable(Exception):
    """The object cannot be read (whole); the message says why."""


class _TooLarge(_Unscannable):
    """Reading on would pass a bound; the message says which."""


def known_secrets(bindings: Iterable[SecretBinding]) -> list[KnownSecret]:
    """The bottle's secret values (read from their mounted files) and placeholders."""
    found: list[KnownSecret] = []
    for binding in bindings:
        if binding.placeholder:
            label = f"placeholder of the bottle's secret {binding.name!r}"
            found.append(KnownSecret(binding.placeholder, label))
        try:
            value = Path(binding.value_file).read_text().strip()
        except OSError:
            continue  # not mounted here: the placeholder check still applies
        if value:
            found.append(KnownSecret(value, f"value of the bottle's secret {binding.name!r}"))
    return found


# --- reading a blob as text --------------------------------------------------------------------


ZIP_ENTRY = b"PK\x03\x04"  # a zip archive's local entry header
_ZIP_HEADER = struct.Struct("<4sHHHHHIIIHH")
ZIP_CENTRAL = b"PK\x01\x02"  # an entry's header in a zip archive's central directory
_ZIP_CENTRAL_HEADER = struct.Struct("<4sHHHHHHIIIHHHHHII")
ZIP_STORED, ZIP_DEFLATED = 0, 8
PIECE = 4096  # compressed bytes fed to a decompressor at a time (a failed try copies one)
MAX_NESTING = 3  # archives inside archives are read this deep; anything deeper is refused

# Streams a magic number marks, wherever they are in a blob: a tar of .gz files, a self-extracting
# archive or a script with a payload holds them past its start, and `tail -c +N | zcat` reads
# them. The formats the bundle has no decompressor for are refused, not skipped (lz4 keeps its
# literals as they are, yet builds a key from two pieces stored apart).
_MARKED = re.compile(
    rb"\x1f\x8b\x08|BZh[1-9]1AY&SY|\xfd7zXZ\x00"
    rb"|[\x25-\x28]\xb5\x2f\xfd|\x04\x22\x4d\x18|\x02\x21\x4c\x18|7z\xbc\xaf\x27\x1c|Rar!\x1a\x07|LZIP[\x00\x01]"
)
_MARKED_FORMATS: dict[bytes, tuple[str, Callable[[], Any] | None]] = {
    b"\x1f\x8b": ("gzip", lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)),
    b"BZ": ("bzip2", bz2.BZ2Decompressor),
    b"\xfd7": ("xz", lzma.LZMADecompressor),
    b"\x28\xb5": ("zstd", None),
    # zstd's legacy frames (v0.5 to v0.7), which `zstd -d` still reads.
    b"\x25\xb5": ("zstd", None),
    b"\x26\xb5": ("zstd", None),
    b"\x27\xb5": ("zstd", None),
    b"\x04\x22": ("lz4", None),
    b"\x02\x21": ("lz4 legacy", None),
    b"7z": ("7z", None),
    b"Ra": ("rar", None),
    b"LZ": ("lzip", None),
}


ZSTD_BLOCK_MAX = 128 * 1024  # a zstd block's bound, compressed or regenerated (every version)
# Blocks that regenerate nothing, which a zstd decoder reads past, as many as there are: raw or
# compressed of size 0 (the header alone) and RLE of size 0 (the header and its byte).
_ZSTD_EMPTY_BLOCKS = re.compile(rb"(?:\x00\x00\x00|\x04\x00\x00|\x02\x00\x00[\s\S])*")


def _zstd_header(data: bytes, at: int) -> bool:
    """A zstd frame header descriptor (RFC 8878 3.1.1.1.1) with its reserved bit clear, then,
    past the header and any empty blocks, a block of a type that exists, within the block size
    bound, not empty unless it is the last.

    Empty blocks are passed over, not judged: no encoder writes one (a constant followed by
    zeros looks like one), but the decoder reads past them, and an agent that put one first
    had its frame taken for a magic number by chance, and pushed."""
    if data[at - 4] != 0x28:
        return _zstd_legacy_header(data, at)
    if at >= len(data) or data[at] & 0x08:
        return False
    descriptor = data[at]
    single = descriptor >> 5 & 1
    size_field = (0, 2, 4, 8)[descriptor >> 6] or single  # FCS_Field_Size: 1 if single, else 0
    block_at = at + 1 + (not single) + (0, 1, 2, 4)[descriptor & 3] + size_field
    if empty := _ZSTD_EMPTY_BLOCKS.match(data, block_at):  # always: it matches nothing too
        block_at = empty.end()
    if len(data) < block_at + 3:
        return False
    block = int.from_bytes(data[block_at : block_at + 3], "little")
    size = block >> 3
    return block >> 1 & 3 != 3 and size <= ZSTD_BLOCK_MAX and (size > 0 or bool(block & 1))


def _zstd_legacy_header(data: bytes, at: int) -> bool:
    """A legacy zstd frame (v0.5 to v0.7, as zstd's legacy decoders read it): the frame
    header's reserved bits clear, then a first block (its type in the top two bits of the first
    byte, its size in the low 19 bits of the three) that is no end: raw or compressed of 1 byte
    to the block bound (these decoders end a frame at an empty one), or RLE."""
    if at >= len(data):
        return False
    version, descriptor = data[at - 4], data[at]
    if version == 0x25:
        valid, header = descriptor >> 4 == 0, 1
    elif version == 0x26:
        valid, header = not descriptor & 0x20, 1 + (0, 1, 2, 8)[descriptor >> 6]
    else:
        direct = descriptor >> 5 & 1
        content_size = (0, 2, 4, 8)[descriptor >> 6] or direct
        valid = not descriptor & 0x08
        header = 1 + (not direct) + (0, 1, 2, 4)[descriptor & 3] + content_size
    block_at = at + header
    if not valid or len(data) < block_at + 3:
        return False
    kind = data[block_at] >> 6
    size = int.from_bytes(data[block_at : block_at + 3], "big") & 0x7FFFF
    return kind != 3 and size <= ZSTD_BLOCK_MAX and (size > 0 or kind == 2)


def _lz4_header(data: bytes, at: int) -> bool:
    """An lz4 frame descriptor (lz4 frame format 1.6.x): version 01, reserved bits clear, a block
    maximum size of 4 (64 KiB) to 7 (4 MiB)."""
    flags, block = data[at : at + 2].ljust(2, b"\xff")
    return flags >> 6 == 1 and not flags & 0x02 and not block & 0x8F and block >> 4 >= 4


# A legacy lz4 block holds at most 8 MiB, compressed to at most LZ4_compressBound of that.
_LZ4_LEGACY_MAX_BLOCK = 8 * 1024 * 1024 + 8 * 1024 * 1024 // 255 + 16


def _lz4_legacy_header(data: bytes, at: int) -> bool:
    """The legacy frame (`lz4 -l`) has no descriptor: its first block's compressed size, which
    must be one an 8 MiB block can have."""
    size = data[at : at + 4]
    return len(size) == 4 and 0 < int.from_bytes(size, "little") <= _LZ4_LEGACY_MAX_BLOCK


def _7z_header(data: bytes, at: int) -> bool:
    """Format version 0, then the start header's CRC-32 over the 20 bytes that follow it."""
    head = data[at : at + 26]
    return (
        len(head) == 26
        and head[0] == 0
        and struct.unpack_from("<I", head, 2)[0] == (zlib.crc32(head[6:26]))
    )


def _rar_header(data: bytes, at: int) -> bool:
    """After ``Rar!\\x1a\\x07``: RAR 1.5-4.x (``\\x00``) with a main header (type 0x73) whose
    CRC-16 is right, or RAR 5.0 (``\\x01\\x00``) with a first header whose CRC-32 is right."""
    if data[at : at + 1] == b"\x00":
        head = data[at + 1 : at + 14]
        return (
            len(head) == 13
            and head[2] == 0x73
            and int.from_bytes(head[:2], "little") == zlib.crc32(head[2:]) & 0xFFFF
        )
    if data[at : at + 2] != b"\x01\x00":
        return False
    size, end = 0, at + 6
    for shift in range(0, 21, 7):  # a vint: 7 bits a byte, low first; 3 bytes reach 2 MiB
        if end >= len(data):
            return False
        size |= (data[end] & 0x7F) << shift
        end += 1
        if not data[end - 1] & 0x80:
            break
    else:
        return False
    header = data[at + 6 : end + size]
    return len(header) == end + size - at - 6 and int.from_bytes(
        data[at + 2 : at + 6], "little"
    ) == zlib.crc32(header)


def _lzip_header(data: bytes, at: int) -> bool:
    """A dictionary size of 4 KiB to 512 MiB, as lzip 1.x writes its coded byte."""
    coded = data[at : at + 1]
    return (
        bool(coded)
        and 12 <= coded[0] & 0x1F <= 29
        and not (coded[0] & 0x1F == 12 and coded[0] >> 5)
    )


# What must follow the magic number of a format the gate cannot read for it to be refused: four
# bytes anywhere in a blob of compressed or machine code (a program that links zstd holds its
# magic as a constant) are too few.
_HEADER_VALID: dict[str, Callable[[bytes, int], bool]] = {
    "zstd": _zstd_header,
    "lz4": _lz4_header,
    "lz4 legacy": _lz4_legacy_header,
    "7z": _7z_header,
    "rar": _rar_header,
    "lzip": _lzip_header,
}


LZMA_MAX_PROPERTIES = 9 * 5 * 5  # lc < 9, lp < 5, pb < 5, stored as (pb * 5 + lp) * 9 + lc
LZMA_MAX_KNOWN_SIZE = 1 << 38  # what liblzma takes as a stated uncompressed size


def _lzma_alone_header(data: bytes, at: int) -> bool:
    """The 13-byte header of lzma's own format (``xz --format=lzma``, ``lzma``) as liblzma
    reads it, then the range coder's first byte, always 0: properties that exist, any
    dictionary size, an uncompressed size unknown (all ones) or under 2^38.

    Not only the header `lzma` writes by default (0x5d, then a dictionary of 64 KiB or more):
    other properties or a smaller dictionary (``--lzma1=lc=0`` or ``dict=4KiB``) made a stream
    that ``xz -d`` reads, and the scan took for no stream at all."""
    head = data[at : at + 14]
    if len(head) < 14 or head[0] >= LZMA_MAX_PROPERTIES or head[13] != 0:
        return False
    size = int.from_bytes(head[5:13], "little")
    return size == (1 << 64) - 1 or size < LZMA_MAX_KNOWN_SIZE


def _format_at(data: bytes, offset: int) -> tuple[str, Callable[[], Any] | None] | None:
    """The format of a stream starting at `offset`: one a magic number marks, or one with too
    short a header to be looked for anywhere but at the start of a blob or after another
    stream: zlib (two bytes a checksum ties), lzma's own format (`_lzma_alone_header`), and
    the other formats ``gzip -d`` reads (`_GUNZIP_ONLY`), which the gate cannot inflate."""
    if marked := _MARKED.match(data, offset):
        name, make = _MARKED_FORMATS[marked.group()[:2]]
        if make is None and not _HEADER_VALID[name](data, marked.end()):
            return None  # its magic number by chance: in compressed or machine code, 4 bytes are
        return name, make
    head = data[offset : offset + 3]
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib", zlib.decompressobj
    if _lzma_alone_header(data, offset):
        return "lzma", lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    return _GUNZIP_ONLY.get(head[:2])


# The formats besides its own that ``gzip -d`` (zcat) reads, which the gate cannot inflate.
_GUNZIP_ONLY: dict[bytes, tuple[str, Callable[[], Any] | None]] = {
    b"\x1f\x9d": ("compress (.Z)", None),
    b"\x1f\x1e": ("pack (.z)", None),
    b"\x1f\xa0": ("LZH (compress -H)", None),
}


@dataclass
class _Reading:
    """Compressed bytes the decompressors may still be fed for one blob. A stream that is not
    one reads on to the blob's end (a gzip header's name field runs to the next NUL): one
    such try at every gzip magic of a blob cost its square, 0.4 s for 64 KiB."""

    left: int

    def feed(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise _TooLarge("its compressed streams overlap beyond what the gate reads")


_DAMAGE = (zlib.error, OSError, EOFError, lzma.LZMAError)


def _inflate_stream(
    make: Callable[[], Any], data: memoryview, room: int, reading: _Reading
) -> tuple[bytes, int | None]:
    """The stream at the start of `data`, inflated up to `room` bytes, and where it ends in
    `data` (None when it does not end there). Fed a piece at a time: given the rest of the blob
    at once, a decompressor copies what follows the stream's end, once per stream, and a blob
    of many streams cost its square.

    A damaged stream gives what it inflates before the damage, as ``zcat`` shows a gzip stream
    whose checksum is wrong: the decompressor's error drops what the piece holding the damage
    inflated, so the stream is read again, that piece a byte at a time."""
    damaged_at: int | None = None
    while True:
        decompressor = make()
        content = bytearray()
        start = 0
        try:
            while start < len(data) and len(content) < room:
                careful = len(data) if damaged_at is None else damaged_at
                size = min(PIECE, careful - start) if start < careful else 1
                piece = data[start : start + size]
                reading.feed(len(piece))
                content += decompressor.decompress(piece, room - len(content))
                if decompressor.eof:
                    return bytes(content), start + len(piece) - len(decompressor.unused_data)
                start += len(piece)
        except _DAMAGE:
            if damaged_at is None:
                damaged_at = start
                continue
        return bytes(content), None


def _raw_deflate() -> Any:
    return zlib.decompressobj(-zlib.MAX_WBITS)


# The compression methods of APPNOTE 4.4.5 (and WinZip's AES, 99); any other number is no entry.
_ZIP_METHODS = frozenset({*range(0, 11), 12, 14, 16, 18, 19, 20, 93, 94, 95, 96, 97, 98, 99})


def _zip_entry_plausible(fields: tuple[Any, ...], name: bytes) -> bool:
    """Is a local entry header the gate cannot read one a zip tool would: a known method, a
    version needed of at most 6.3, a whole name with no NUL? Four bytes by chance in compressed
    data or machine code are then not refused (stored and deflated entries are read whatever
    their header says: reading more is never less safe)."""
    version, _, method, *_, name_length = fields[1:10]
    return (
        method in _ZIP_METHODS
        and version & 0xFF <= 63
        and 0 < name_length == len(name)
        and b"\0" not in name
    )


ZIP_READABLE = (ZIP_STORED, ZIP_DEFLATED)
ZIP_UNREADABLE = "a zip entry is encrypted or compressed in a way the gate cannot read"


def _zip_deflated_names(data: bytes) -> set[bytes]:
    """The names of the entries the central directory says are deflated; `_Unscannable` for one
    it says is encrypted or compressed another way. A tool that reads the central directory
    (Python's zipfile) takes an entry's method, encryption and version from there and the
    local header only for where the bytes start: a local header saying "stored", or naming a
    version no tool takes (and so taken for a magic number by chance), hid a deflated or an
    LZMA entry holding a key."""
    names: set[bytes] = set()
    start = data.find(ZIP_CENTRAL)
    while start >= 0 and start + _ZIP_CENTRAL_HEADER.size <= len(data):
        fields = _ZIP_CENTRAL_HEADER.unpack_from(data, start)
        flags, method, name_length = fields[3], fields[4], fields[10]
        name_at = start + _ZIP_CENTRAL_HEADER.size
        name = data[name_at : name_at + name_length]
        if _zip_entry_plausible((fields[0], *fields[2:11]), name):  # as a local header's
            if flags & 1 or method not in ZIP_READABLE:
                raise _Unscannable(ZIP_UNREADABLE)
            if method == ZIP_DEFLATED:
                names.add(name)
        start = data.find(ZIP_CENTRAL, start + 1)
    return names


def _unzip(data: bytes, limit: int, reading: _Reading) -> bytes:
    """The name and content of every zip entry in `data`, a line apart. A stored entry's bytes
    are its content; a deflated one (as its local header or the central directory says) is
    inflated as far as it goes; an encrypted entry, or one compressed another way (as either
    says), raises `_Unscannable`, content past `limit` bytes `_TooLarge`."""
    content = bytearray()
    deflated = _zip_deflated_names(data) if ZIP_CENTRAL in data else set()
    start = data.find(ZIP_ENTRY)
    while start >= 0 and start + _ZIP_HEADER.size <= len(data):
        fields = _ZIP_HEADER.unpack_from(data, start)
        flags, method, size, name_length, extra_length = (*fields[2:4], *fields[7:8], *fields[9:])
        name_at = start + _ZIP_HEADER.size
        name = data[name_at : name_at + name_length]
        body = name_at + name_length + extra_length
        unreadable = flags & 1 or method not in ZIP_READABLE
        if unreadable and _zip_entry_plausible(fields, name):
            raise _Unscannable(ZIP_UNREADABLE)
        if unreadable and name not in deflated:
            start = data.find(ZIP_ENTRY, start + 1)  # its magic by chance, in compressed bytes
            continue
        content += name + b"\n"
        room = limit + 1 - len(content)  # never 0 below: zlib reads 0 as "no bound"
        if room > 0 and method == ZIP_STORED and name not in deflated:
            content += data[body : body + min(size, room)]
        elif room > 0:
            content += _inflate_stream(_raw_deflate, memoryview(data)[body:], room, reading)[0]
        content += b"\n"
        if len(content) > limit:
            raise _TooLarge(f"zip content inflates beyond the bound of {limit} bytes")
        start = data.find(ZIP_ENTRY, start + 1)
    return bytes(content)


GZIP_FEXTRA, GZIP_FNAME, GZIP_FCOMMENT, GZIP_FHCRC = 4, 8, 16, 2


def _compressed_start(data: bytes, at: int) -> int:
    """Where the compressed bytes of the stream at `at` start: for gzip, past its header's
    optional fields (RFC 1952 2.3.1), which a decoder passes over and never shows, and which
    may hold anything, another gzip stream included (``tail -c +13 | zcat`` reads it)."""
    if not data.startswith(b"\x1f\x8b", at) or len(data) < at + 10:
        return at
    flags, end = data[at + 3], at + 10
    if flags & GZIP_FEXTRA:
        end += 2 + int.from_bytes(data[end : end + 2], "little")
    for flag in (GZIP_FNAME, GZIP_FCOMMENT):  # each ends at a NUL byte
        if flags & flag:
            end = data.find(b"\0", end) + 1 or len(data)
    return min(end + 2 * bool(flags & GZIP_FHCRC), len(data))


def _inflate(data: bytes, limit: int) -> list[tuple[str, bytes]]:
    """(format, content) of every compressed stream in `data`: the zip entries anywhere in it,
    every stream a magic number marks anywhere and a zlib or lzma stream at its start. Streams
    of one format that follow one another (``cat a.gz b.gz``, which zcat reads whole) are one
    content. All of it past `limit` bytes raises `_TooLarge`; a format the gate cannot
    inflate, `_Unscannable`."""
    reading = _Reading(len(data) + limit)  # each byte once, and as much again for tries
    unzipped = _unzip(data, limit, reading) if ZIP_ENTRY in data else b""
    found = [("zip", unzipped)] if unzipped else []
    total = len(unzipped)
    starts = [m.start() for m in _MARKED.finditer(data)]
    # A magic inside the compressed bytes of a stream already read is those bytes, not a stream
    # (what a stored block holds is read in its content); one in a gzip header is not. The
    # streams' compressed bytes never overlap: kept sorted, the one starting last at or before
    # an offset is the only one that can hold it (a scan of all of them was quadratic: 8,000
    # one-byte gzip members took 1.7 s).
    compressed: list[tuple[int, int]] = []
    members: set[int] = set()  # where the streams read so far start
    for offset in sorted({0, *starts}):
        if offset in members or _within(compressed, offset):
            continue
        stream = _format_at(data, offset)
        if stream is None:
            continue
        name, make = stream
        if make is None:
            raise _Unscannable(f"a {name} stream, which the gate cannot inflate")
        content = bytearray()
        at: int | None = offset
        while at is not None and len(content) <= limit - total:
            room = limit + 1 - total - len(content)  # never 0: zlib reads 0 as "no bound"
            inflated, end = _inflate_stream(make, memoryview(data)[at:], room, reading)
            content += inflated
            if end is None:
                break
            members.add(at)
            if (start := _compressed_start(data, at)) < at + end:  # an empty one holds nothing
                bisect.insort(compressed, (start, at + end))
            at += end
            following = _format_at(data, at)
            at = at if following is not None and following[0] == name else None
        total += len(content)
        if total > limit:
            raise _TooLarge(f"{name} content inflates beyond the bound of {limit} bytes")
        if content:
            found.append((name, bytes(content)))
    return found


def _within(ranges: list[tuple[int, int]], offset: int) -> bool:
    """Whether `offset` lies in one of `ranges`: sorted (start, end) pairs that do not overlap."""
    index = bisect.bisect_right(ranges, (offset, math.inf)) - 1  # the last starting at or before
    return index >= 0 and offset < ranges[index][1]


def text_views(data: bytes, limit: int, *, nesting: int = MAX_NESTING) -> Iterator[tuple[str, str]]:
    """(view, text) pairs: every way the scanner reads `data` (see the module docstring)."""
    binary = b"\0" in data
    text = data.decode("utf-8", "replace")
    yield ("binary content" if binary else ""), text.replace("\0", "\n") if binary else text
    if binary:
        for view, pattern, codec in _WIDE_RUNS:
            runs = [m.group().decode(codec) for m in pattern.finditer(data)]
            if runs:
                yield view, "\n".join(runs)
    inflated = _inflate(data, limit)
    if inflated and not nesting:
        raise _Unscannable(f"archives or compressed streams nested more than {MAX_NESTING} deep")
    for name, content in inflated:
        for view, inner in text_views(content, limit, nesting=nesting - 1):
            yield f"{name}-inflated content" + (f", {view}" if view else ""), inner


# Runs of spaces are cut to two before the plugins read a line. The IBM Cloud, Cloudant,
# Softlayer and IBM COS patterns read the gap after a key name as ` *(?:=| +|...) *`, which a
# backtracking engine tries in cubic time: "password" and 4 088 spaces, one 4 KiB window, took
# 206 s. Every plugin reads a run of spaces only as a run (` *`, ` +`, `\s*`, one `\s`), so two
# spaces find what the run found.
_SPACE_RUN = re.compile(" {3,}")


def _windows(line: str) -> Iterator[str]:
    if len(line) <= LINE_WINDOW:
        yield line
        return
    step = LINE_WINDOW - WINDOW_OVERLAP
    for start in range(0, len(line) - WINDOW_OVERLAP, step):
        yield line[start : start + LINE_WINDOW]


def declared_encoding(commit: bytes) -> str | None:
    """The encoding a commit object's ``encoding`` header names (the first, as git reads it),
    or None when it has none or names UTF-8, which git shows as stored."""
    headers = commit.split(b"\n\n", 1)[0]
    for line in headers.split(b"\n"):
        if line.startswith(b"encoding "):
            name = line[len(b"encoding ") :].decode("utf-8", "replace")
            return None if name.lower() in ("utf-8", "utf8") else name
    return None


def reencoded_view(commit: bytes, name: str) -> tuple[str, str]:
    """The commit as git log shows it: decoded from the encoding it names into text."""
    try:
        text = commit.decode(codecs.lookup(name).name, "replace")
    except (LookupError, ValueError) as exc:  # LookupError too for "rot13": no text encoding
        raise _Unscannable(
            f"the commit names the encoding {safe_text(name, 40)!r}, which the gate cannot read"
        ) from exc
    return f"text in the encoding the commit names ({safe_text(name, 40)})", text


# --- detect-secrets ------------------------------------------------------------------------------


# Words every match of these plugins contains (lower case), read in detect-secrets 1.5.0's
# patterns. Their regexes try many optional prefixes at every position and cost most of the
# scan; a block with none of these words cannot match. Used only with the version they were read
# from: any other version gets the regex pre-check, slower but right by construction.
ANCHORS_VERSION = "1.5.0"
_ANCHORS = {
    "CloudantDetector": ("cl",),
    "IbmCloudIamDetector": ("key", "pwd", "pass", "token"),
    "IbmCosHmacDetector": ("secret",),
    "SoftlayerDetector": ("sl",),
    "ArtifactoryDetector": ("akc", "ap"),
}


@dataclass
class _Plugin:
    plugin: Any
    guessing: bool
    # Patterns that match somewhere in a block whenever the plugin could match one of its lines;
    # None when the plugin has no such patterns (it then reads every line).
    precheck: list[re.Pattern[str]] | None
    anchors: tuple[str, ...] = ()  # when set, used instead of `precheck` on the lowered block

    def may_match(self, block: str, lowered: str) -> bool:
        if self.anchors:
            return any(anchor in lowered for anchor in self.anchors)
        return self.precheck is None or any(p.search(block) for p in self.precheck)


def _load_plugins() -> list[_Plugin]:
    # Imported here: detect-secrets is a bundle-only dependency, the rest of this module is not.
    from detect_secrets.__version__ import VERSION
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

    loaded = []
    plugin_class: Any
    for plugin_class in get_mapping_from_secret_type_to_class().values():
        plugin = plugin_class()
        precheck: list[re.Pattern[str]] | None = None
        if isinstance(plugin, RegexBasedDetector):
            precheck = [re.compile(p.pattern, p.flags | re.MULTILINE) for p in plugin.denylist]
        elif isinstance(plugin, HighEntropyStringsPlugin):
            precheck = [re.compile(plugin.regex.pattern, plugin.regex.flags | re.MULTILINE)]
        elif isinstance(plugin, keyword.KeywordDetector):
            precheck = [re.compile("|".join(keyword.DENYLIST), re.IGNORECASE)]
        anchors: tuple[str, ...] = ()
        if VERSION == ANCHORS_VERSION:
            anchors = _ANCHORS.get(plugin_class.__name__, ())
            if isinstance(plugin, keyword.KeywordDetector):
                # 'api_?key' -> 'api': every keyword match holds the part before the optional.
                anchors = tuple(word.split("_?")[0].lower() for word in keyword.DENYLIST)
        name = plugin_class.__name__
        loaded.append(_Plugin(plugin, name in GUESSING_PLUGINS, precheck, anchors))
    return loaded


def _heuristics() -> list[Callable[[Any, str, Any], bool]]:
    """detect-secrets' false-positive heuristics over a guessed secret's own text and line."""
    from detect_secrets.filters import heuristic as h

    return [
        lambda secret, line, plugin: h.is_sequential_string(secret),
        lambda secret, line, plugin: h.is_potential_uuid(secret),
        lambda secret, line, plugin: h.is_likely_id_string(secret, line, plugin),
        lambda secret, line, plugin: h.is_templated_secret(secret),
        lambda secret, line, plugin: h.is_prefixed_with_dollar_sign(secret),
        lambda secret, line, plugin: h.is_indirect_reference(line),
        lambda secret, line, plugin: h.is_not_alphanumeric_string(secret),
    ]


@dataclass
class Detectors:
    """detect-secrets' plugins, run over lines with no filter that reads agent-chosen names."""

    plugins: list[_Plugin] = field(default_factory=_load_plugins)
    heuristics: list[Callable[[Any, str, Any], bool]] = field(default_factory=_heuristics)

    def scan(self, filename: str, text: str) -> Iterator[tuple[int, str]]:
        """(line number, kind) of every detected secret in `text`."""
        lines = _SPACE_RUN.sub("  ", text).split("\n")
        for start in range(0, len(lines), BLOCK_LINES):
            block_lines = lines[start : start + BLOCK_LINES]
            block = "\n".join(block_lines)
            lowered = block.lower()
            for entry in self.plugins:
                if not entry.may_match(block, lowered):
                    continue
                for offset, line in enumerate(block_lines):
                    if entry.anchors and not entry.may_match(line, line.lower()):
                        continue
                    for window in _windows(line):
                        if self._found(entry, filename, window):
                            yield start + offset + 1, str(entry.plugin.secret_type)
                            break

    def _found(self, entry: _Plugin, filename: str, line: str) -> bool:
        secrets = entry.plugin.analyze_line(filename=filename, line=line, line_number=0)
        for secret in secrets:
            value = secret.secret_value or ""
            if entry.guessing and any(h(value, line, entry.plugin) for h in self.heuristics):
                continue
            return True
        return False


# --- the scanner ---------------------------------------------------------------------------------


class Scanner:
    """Scans the objects of one push, charging every byte it reads to the push's budget."""

    def __init__(
        self,
        secrets: Iterable[KnownSecret],
        limits: ScanLimits = ScanLimits(),
        detectors: Detectors | None = None,
    ) -> None:
        self.search = ValueSearch((secret.text, secret.label) for secret in secrets)
        self.limits = limits
        self.detectors = detectors or Detectors()
        self.scanned = 0
        self.exhausted = False  # the push's scan budget is spent: refuse, read no further

    def blob(self, commit: str, path: str, data: bytes) -> list[Finding]:
        """Findings in a file's content."""
        return self._read(commit, path, data, filename=path)

    def message(self, commit: str, what: str, data: bytes) -> list[Finding]:
        """Findings in a commit or tag object: message, author, committer and every header."""
        return self._read(commit, what, data, filename="message.txt", encoding=True)

    def name(self, commit: str, what: str, name: str) -> list[Finding]:
        """Findings in a name that goes upstream (a path or a ref). The finding shows `what`,
        not the name, which may be the secret itself."""
        found = self._read(commit, what, name.encode(), filename="name.txt")
        return [Finding(f.commit, f.path, None, f.kind, f.view) for f in found]

    def _read(
        self, commit: str, path: str, data: bytes, *, filename: str, encoding: bool = False
    ) -> list[Finding]:
        findings: dict[tuple[str, int | None, str], Finding] = {}
        try:
            for view, text in self._views(data, encoding=encoding):
                self._charge(len(text))
                found = [
                    *self._known(commit, path, view, text),
                    *(
                        Finding(commit, path, line, kind, view)
                        for line, kind in self.detectors.scan(filename, text)
                    ),
                ]
                for finding in found:  # one per line and kind, in the first view that shows it
                    findings.setdefault((finding.path, finding.line, finding.kind), finding)
        except _Unscannable as exc:
            finding = Finding(commit, path, None, f"refused unscanned: {exc}")
            findings[(path, None, finding.kind)] = finding
        return sorted(findings.values(), key=lambda f: (f.line or 0, f.kind))

    def _views(self, data: bytes, *, encoding: bool) -> Iterator[tuple[str, str]]:
        yield from text_views(data, self.limits.max_blob_bytes)
        name = declared_encoding(data) if encoding else None
        if name is not None:
            yield reencoded_view(data, name)

    def _charge(self, size: int) -> None:
        self.scanned += size
        if self.scanned > self.limits.max_scan_bytes:
            self.exhausted = True
            raise _TooLarge(
                f"the push needs more than {self.limits.max_scan_bytes} bytes of scanning"
            )

    def _known(self, commit: str, path: str, view: str, text: str) -> Iterator[Finding]:
        """The bottle's values in `text`, also where line breaks cut them: `base64` and MIME
        wrap their lines at 76 characters, inside the value as often as not."""
        data = text.encode("utf-8", "replace")
        for needle, index, unwrapped in self.search.hits(data):
            line = _line_at(data, index) if unwrapped else data.count(b"\n", 0, index) + 1
            yield Finding(commit, path, line, needle.label, view)


def _line_at(data: bytes, index: int) -> int:
    """The line of `data` holding byte `index` of `data` with its line breaks removed."""
    seen = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        seen += len(line) - line.count(b"\r")
        if index < seen:
            return number
    return data.count(b"\n") + 1
