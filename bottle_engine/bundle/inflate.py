"""The content of every compressed stream and archive entry in some bytes, as the tools that
read them show it. Pure (standard library only): the git gate reads a pushed blob's content
through it (`gitgate.scan`), and the launch every compressed file it copies into the sandbox or
the agent image's context (`copied_archives`).

What is inflated: every gzip, bzip2 or xz stream wherever its magic number stands (a tar of .gz
files, a payload past a script), a zlib or lzma stream that starts the bytes, and each member
of a zip archive anywhere, found by walking every local entry header (not the central
directory, which may leave entries out that ``jar`` and libarchive still extract), the zlib
streams a format places (the objects of a git pack, a bundle's too, deltas resolved; a PDF's
FlateDecode streams, after each ``stream`` keyword; a PNG's compressed text chunks, which
are no less text for being in an image); what those hold likewise, `MAX_NESTING`
levels deep. A stream deeper than that, past a byte bound, or of a format there is no
decompressor for here (zstd, lz4, 7z, rar, lzip, compress, pack, LZH, an encrypted zip entry)
raises `Unscannable`, never yields nothing: the gate refuses it, the launch names it
unsearched.
"""

from __future__ import annotations

import bisect
import bz2
import hashlib
import lzma
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


class Unscannable(Exception):
    """The bytes cannot be read (whole); the message says why."""


class TooLarge(Unscannable):
    """Reading on would pass a bound; the message says which."""


@dataclass
class Budget:
    """Inflated bytes that may still be read across many calls of `inflated` (the launch reads
    a whole copy's archives within one), besides each call's own bound."""

    left: int

    def charge(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise TooLarge("the inflated content of the files before it spent the bound")


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
# A piece of every magic number `_MARKED` matches, found by a plain search (at memory speed; the
# pattern's alternatives start with common letters and run at a tenth of it).
_MARKED_PIECES = (
    b"\x1f\x8b\x08",
    b"1AY&SY",
    b"\xfd7zXZ\x00",
    b"\xb5\x2f\xfd",
    b"\x22\x4d\x18",
    b"\x21\x4c\x18",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"LZIP",
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
    if _zlib_header(data, offset):
        return "zlib", zlib.decompressobj
    if _lzma_alone_header(data, offset):
        return "lzma", lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    return _GUNZIP_ONLY.get(data[offset : offset + 2])


def _zlib_header(data: bytes, at: int) -> bool:
    """Whether a zlib header (RFC 1950: deflate, and a check the two bytes' value ties) is at
    `at`."""
    head = data[at : at + 2]
    return len(head) == 2 and head[0] & 0x0F == 8 and (head[0] * 256 + head[1]) % 31 == 0


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
            raise TooLarge("its compressed streams overlap beyond what the gate reads")


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
    """The names of the entries the central directory says are deflated; `Unscannable` for one
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
                raise Unscannable(ZIP_UNREADABLE)
            if method == ZIP_DEFLATED:
                names.add(name)
        start = data.find(ZIP_CENTRAL, start + 1)
    return names


def _unzip(data: bytes, limit: int, reading: _Reading, _: list[tuple[int, int]]) -> bytes:
    """The name and content of every zip entry in `data`, a line apart. A stored entry's bytes
    are its content; a deflated one (as its local header or the central directory says) is
    inflated as far as it goes; an encrypted entry, or one compressed another way (as either
    says), raises `Unscannable`, content past `limit` bytes `TooLarge`."""
    if ZIP_ENTRY not in data:
        return b""
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
            raise Unscannable(ZIP_UNREADABLE)
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
            raise TooLarge(f"zip content inflates beyond the bound of {limit} bytes")
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


def streams(data: bytes, limit: int) -> list[tuple[str, bytes]]:
    """(format, content) of every compressed stream in `data`: the zip entries, git pack
    objects, PDF streams and PNG text chunks anywhere in it (`_placed`), every stream a magic number
    marks anywhere and a zlib or lzma stream at its start. Streams of one format that follow
    one another (``cat a.gz b.gz``, which zcat reads whole) are one content (one level:
    `inflated` reads on inside them). All of it past `limit` bytes raises `TooLarge`; a format
    the gate cannot inflate, `Unscannable`."""
    reading = _Reading(len(data) + limit)  # each byte once, and as much again for tries
    # A magic inside the compressed bytes of a stream already read is those bytes, not a stream
    # (what a stored block holds is read in its content); one in a gzip header is not. The
    # streams' compressed bytes never overlap: kept sorted, the one starting last at or before
    # an offset is the only one that can hold it (a scan of all of them was quadratic: 8,000
    # one-byte gzip members took 1.7 s).
    compressed: list[tuple[int, int]] = []
    found = _placed(data, limit, reading, compressed)
    total = sum(len(content) for _, content in found)
    starts = [m.start() for m in _MARKED.finditer(data)] if _marked_piece(data) else []
    members: set[int] = set()  # where the streams read so far start
    for offset in sorted({0, *starts}):
        if offset in members or _within(compressed, offset):
            continue
        stream = _format_at(data, offset)
        if stream is None:
            continue
        name, make = stream
        if make is None:
            raise Unscannable(f"a {name} stream, which the gate cannot inflate")
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
            raise TooLarge(f"{name} content inflates beyond the bound of {limit} bytes")
        if content:
            found.append((name, bytes(content)))
    return found


# A git pack (``git pack-objects``, a pack file anywhere, the pack a bundle holds past its refs).
GIT_PACK = re.compile(rb"PACK\x00\x00\x00[\x02\x03]")
_PACK_KINDS = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
PACK_OFS_DELTA, PACK_REF_DELTA = 6, 7
_PACK_ENTRY_KINDS = frozenset({*_PACK_KINDS, PACK_OFS_DELTA, PACK_REF_DELTA})
_VARINT_MAX_BYTES = 10  # a size or offset of a pack entry longer than this is no entry


@dataclass
class _PackEntry:
    kind: int
    content: bytes  # inflated: an object, or a delta on its base
    base: int | bytes | None = None  # a delta's: where its base's entry starts, or its id


def _unpack(data: bytes, limit: int, reading: _Reading, compressed: list[tuple[int, int]]) -> bytes:
    """The objects of every git pack in `data`, a line apart, each delta as the object it
    makes (or, its base not in the pack, as the delta: its inserts are literal bytes). As
    ``git index-pack`` reads one: entry after entry, each a header, then a zlib stream; a
    delta's pieces, joined, once held a key that neither held alone. Past `limit` bytes of
    objects raises `TooLarge`."""
    content = bytearray()
    for match in GIT_PACK.finditer(data) if _PACK_PIECE in data else ():
        if _within(compressed, match.start()):
            continue
        entries = _pack_entries(data, match.start(), limit - len(content), reading, compressed)
        for made in _resolved(entries, limit - len(content)):
            content += made + b"\n"
        if len(content) > limit:
            raise TooLarge(f"git pack content inflates beyond the bound of {limit} bytes")
    return bytes(content)


def _pack_entries(
    data: bytes, start: int, limit: int, reading: _Reading, compressed: list[tuple[int, int]]
) -> dict[int, _PackEntry]:
    """The entries of the pack at `start`, by where each starts, up to the first that is no
    entry or whose stream does not end; past `limit` inflated bytes raises `TooLarge`."""
    entries: dict[int, _PackEntry] = {}
    at, total = start + 12, 0
    for _ in range(int.from_bytes(data[start + 8 : start + 12], "big")):
        entry_at, at = at, _varint_end(data, at)
        if at < 0:
            break
        kind = data[entry_at] >> 4 & 7
        base: int | bytes | None = None
        if kind == PACK_OFS_DELTA:
            distance, at = _offset_varint(data, at)
            base = entry_at - distance
        if at < 0 or kind not in _PACK_ENTRY_KINDS:
            break
        room = limit + 1 - total  # never 0: zlib reads 0 as "no bound"
        if kind == PACK_REF_DELTA:
            id_size, inflated, end = _ref_delta_stream(data, at, room, reading)
            base, at = data[at : at + id_size], at + id_size
        else:
            inflated, end = _inflate_stream(
                zlib.decompressobj, memoryview(data)[at:], room, reading
            )
        entries[entry_at] = _PackEntry(kind, inflated, base)
        total += len(inflated)
        if total > limit:
            raise TooLarge(f"git pack content inflates beyond the bound of {limit} bytes")
        if end is None:
            break
        bisect.insort(compressed, (at, at + end))
        at += end
    return entries


def _ref_delta_stream(
    data: bytes, at: int, room: int, reading: _Reading
) -> tuple[int, bytes, int | None]:
    """A REF_DELTA's stream after the base's id at `at`: the id's size (20 bytes, SHA-1, or
    32, SHA-256: a pack does not say which), then what `_inflate_stream` gives, as the stream
    that reads to its end says. Both ways raises `Unscannable`: a pack made to be read two ways
    hides from one what the other shows."""
    read = {
        size: _inflate_stream(zlib.decompressobj, memoryview(data)[at + size :], room, reading)
        for size in (20, 32)
        if _zlib_header(data, at + size)
    }
    whole = [size for size, (_, end) in read.items() if end is not None]
    if len(whole) > 1:
        raise Unscannable("a git pack that reads two ways (its object ids SHA-1 or SHA-256 ones)")
    size = whole[0] if whole else min(read, default=20)
    inflated, end = read.get(size, (b"", None))
    return size, inflated, end


def _varint_end(data: bytes, at: int) -> int:
    """Where a pack's number of seven bits a byte (its high bit set in all but the last)
    starting at `at` ends (-1: it runs on, or `at` is -1)."""
    for index in range(at, min(at + _VARINT_MAX_BYTES, len(data)) if at >= 0 else at):
        if not data[index] & 0x80:
            return index + 1
    return -1


def _offset_varint(data: bytes, at: int) -> tuple[int, int]:
    """An OFS_DELTA's distance back to its base, and where it ends (-1: it runs on)."""
    end = _varint_end(data, at)
    if end < 0:
        return 0, -1
    distance = data[at] & 0x7F
    for byte in data[at + 1 : end]:
        distance = ((distance + 1) << 7) | (byte & 0x7F)
    return distance, end


def _resolved(entries: dict[int, _PackEntry], limit: int) -> Iterator[bytes]:
    """Each entry's object, in pack order: a delta made on its base (an entry before it, or
    one whose object has the id it names, anywhere in the pack), else the delta as it is.
    What deltas make past `limit` bytes raises `TooLarge`."""
    waiting: dict[int | bytes, list[int]] = {}
    for at, entry in entries.items():
        if entry.base is not None:
            waiting.setdefault(entry.base, []).append(at)
    made: dict[int, tuple[bytes, bytes]] = {}  # kind's name and object, by entry
    ready = [at for at, entry in entries.items() if entry.base is None]
    for at in ready:
        made[at] = (_PACK_KINDS[entries[at].kind], entries[at].content)
    id_sizes = {len(base) for base in waiting if isinstance(base, bytes)}
    total = 0
    while ready:
        at = ready.pop()
        kind, base = made[at]
        names: list[int | bytes] = [at]
        for size in id_sizes:  # a REF_DELTA's base is named by its object id
            digest = hashlib.sha1 if size == 20 else hashlib.sha256
            names.append(digest(b"%s %d\0" % (kind, len(base)) + base).digest())
        for delta_at in (delta for name in names for delta in waiting.pop(name, [])):
            made[delta_at] = (kind, _apply_delta(base, entries[delta_at].content, limit - total))
            total += len(made[delta_at][1])
            ready.append(delta_at)
    for at, entry in entries.items():
        yield made[at][1] if at in made else entry.content


def _apply_delta(base: bytes, delta: bytes, limit: int) -> bytes:
    """The object `delta` makes of `base` (git's delta format: the two sizes, then copies
    from the base and literal inserts), as far as it is whole; past `limit` bytes raises
    `TooLarge`."""
    made = bytearray()
    at = _varint_end(delta, _varint_end(delta, 0))  # past the base's size and the object's
    # (-1 when either runs on: nothing is made)
    try:
        while 0 <= at < len(delta):
            command, at = delta[at], at + 1
            if command & 0x80:
                offset = size = 0
                for bit in range(7):  # 4 bytes of offset, then 3 of size, each there if flagged
                    if command & (1 << bit):
                        value, at = delta[at], at + 1
                        if bit < 4:
                            offset |= value << (8 * bit)
                        else:
                            size |= value << (8 * (bit - 4))
                made += base[offset : offset + (size or 0x10000)]
            elif command:
                made += delta[at : at + command]
                at += command
            else:
                break  # reserved: git refuses the delta here
            if len(made) > limit:
                raise TooLarge(f"a git pack's deltas make more than the bound of {limit} bytes")
    except IndexError:
        pass  # a copy cut short: what it made so far is what git shows of it (nothing)
    return bytes(made)


# A PDF's stream keyword, then the end of line (readers take CR, LF or both, and spaces
# before), where the stream's bytes start; a FlateDecode one starts with a zlib header.
_PDF_STREAM = re.compile(rb"stream[ \t]*(?:\r\n|\r|\n)?")


def _pdf_streams(
    data: bytes, limit: int, reading: _Reading, compressed: list[tuple[int, int]]
) -> bytes:
    """The content of each zlib stream after a ``stream`` keyword in `data` (a PDF's
    FlateDecode streams: its pages, fonts, attached files, object streams), a line apart; past
    `limit` bytes raises `TooLarge`."""
    content = bytearray()
    for match in _PDF_STREAM.finditer(data) if b"stream" in data else ():
        at = match.end()
        if not _zlib_header(data, at) or _within(compressed, at):
            continue
        room = limit + 1 - len(content)  # never 0: zlib reads 0 as "no bound"
        inflated, end = _inflate_stream(zlib.decompressobj, memoryview(data)[at:], room, reading)
        if inflated:  # "upstream\nx = 1" is a zlib header after "stream", and no stream
            content += inflated + b"\n"
        if len(content) > limit:
            raise TooLarge(f"pdf content inflates beyond the bound of {limit} bytes")
        if end is not None:
            bisect.insort(compressed, (at, at + end))
    return bytes(content)


# A PNG's signature; its chunks follow, each a length, a type, the data and a CRC-32.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK = struct.Struct(">I4s")
_PNG_CHUNK_BYTES = _PNG_CHUNK.size + 4  # length, type and CRC-32 around the data
# The chunks that hold a zlib stream of text tools show (`exiftool`, PIL's `Image.text`):
# compressed text, international text (when flagged compressed), an ICC profile (its
# description). Image data is not read: pixels are no text, and a screenshot's scanlines
# inflate past the blob bound, which would refuse every push of one.
_PNG_TEXTS = frozenset({b"zTXt", b"iTXt", b"iCCP"})


def _png_chunks(data: bytes, at: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of the data of each chunk of the PNG whose signature is at `at`."""
    at += len(PNG_SIGNATURE)
    while at + _PNG_CHUNK.size <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, at)
        start = at + _PNG_CHUNK.size
        yield kind, start, min(start + length, len(data))
        if kind == b"IEND":
            return
        at = start + length + 4  # past the CRC-32, unchecked: a reader may not check it either


def _png_text_stream(kind: bytes, chunk: bytes) -> bytes:
    """The zlib stream a chunk holds past its fields: a compressed text (zTXt: keyword, NUL,
    method), an ICC profile (iCCP: likewise), an international text whose flag says compressed
    (iTXt: keyword, NUL, flag, method, language, NUL, translated keyword, NUL); else b""."""
    at = chunk.find(b"\0") + 1
    if at == 0:
        return b""
    if kind != b"iTXt":
        return chunk[at + 1 :]
    if chunk[at : at + 1] != b"\1":
        return b""  # stored as it is: read where it stands
    language = chunk.find(b"\0", at + 2) + 1
    keyword = chunk.find(b"\0", language) + 1 if language else 0
    return chunk[keyword:] if keyword else b""


def _png_texts(data: bytes, at: int, reading: _Reading | None) -> tuple[list[bytes], int]:
    """The zlib streams of the text chunks of the PNG whose signature is at `at`, and where its
    chunks end. With `reading` (a PNG whose signature lies in another's chunks), what is read is
    charged, each chunk's head and a text chunk's data: chunks can lead the walk from each such
    signature on to the blob's end, which cost its square."""
    texts, walked = [], at
    for kind, start, end in _png_chunks(data, at):
        walked = end
        if reading is not None:
            reading.feed(_PNG_CHUNK_BYTES + (end - start if kind in _PNG_TEXTS else 0))
        if kind in _PNG_TEXTS:
            texts.append(_png_text_stream(kind, data[start:end]))
    return texts, walked


def _png_streams(data: bytes, limit: int, reading: _Reading, _: list[tuple[int, int]]) -> bytes:
    """The content of the compressed text chunks of every PNG in `data`, a line apart: text
    that ``exiftool`` and PIL show. Past `limit` bytes raises `TooLarge`."""
    content = bytearray()
    walked = 0  # where the chunks of the PNGs read so far end
    for match in re.finditer(re.escape(PNG_SIGNATURE), data) if PNG_SIGNATURE in data else ():
        nested = match.start() < walked
        texts, end = _png_texts(data, match.start(), reading if nested else None)
        walked = max(walked, end)
        for text in texts:
            if not _zlib_header(text, 0):
                continue
            room = limit + 1 - len(content)  # never 0: zlib reads 0 as "no bound"
            inflated, _end = _inflate_stream(zlib.decompressobj, memoryview(text), room, reading)
            if inflated:
                content += inflated + b"\n"
            if len(content) > limit:
                raise TooLarge(f"png content inflates beyond the bound of {limit} bytes")
    return bytes(content)


def _placed(
    data: bytes, limit: int, reading: _Reading, compressed: list[tuple[int, int]]
) -> list[tuple[str, bytes]]:
    """(format, content) of the streams in `data` that a format's own structure places: zip
    entries, git pack entries, PDF streams, PNG text chunks; `compressed` gains where those of git
    packs and PDFs lie. All of it past `limit` bytes raises `TooLarge`."""
    found: list[tuple[str, bytes]] = []
    total = 0
    for name, read in (
        ("zip", _unzip),
        ("git pack", _unpack),
        ("pdf", _pdf_streams),
        ("png", _png_streams),
    ):
        content = read(data, limit - total, reading, compressed)
        total += len(content)
        if content:
            found.append((name, content))
    return found


def _within(ranges: list[tuple[int, int]], offset: int) -> bool:
    """Whether `offset` lies in one of `ranges`: sorted (start, end) pairs that do not overlap."""
    index = bisect.bisect_right(ranges, (offset, math.inf)) - 1  # the last starting at or before
    return index >= 0 and offset < ranges[index][1]


def inflated(
    data: bytes, limit: int, *, budget: Budget | None = None, nesting: int = MAX_NESTING
) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """(formats, content) of every compressed stream in `data` and, depth first, of those in
    its content, `nesting` levels deep: ``("zip", "gzip")`` is a gzip stream in a zip entry.
    Each level of one stream's content is bound by `limit` bytes, and all of it by `budget`;
    a stream past a bound, nested deeper or of a format not read here raises `Unscannable`
    (after the contents before it were yielded)."""
    found = streams(data, limit)
    if found and not nesting:
        raise Unscannable(f"archives or compressed streams nested more than {MAX_NESTING} deep")
    for name, content in found:
        if budget is not None:
            budget.charge(len(content))
        yield (name,), content
        for formats, inner in inflated(content, limit, budget=budget, nesting=nesting - 1):
            yield (name, *formats), inner


def may_hold_streams(data: bytes) -> bool:
    """Whether `streams` may find anything in `data`: a zip entry header, a PNG signature, a
    magic number, a git pack header, a zlib stream after a ``stream`` keyword, or a format that
    starts it. Cheap beside inflating: the launch tests every file it copies."""
    return (
        ZIP_ENTRY in data
        or PNG_SIGNATURE in data
        or _format_at(data, 0) is not None
        or (_marked_piece(data) and bool(_MARKED.search(data)))
        or (_PACK_PIECE in data and bool(GIT_PACK.search(data)))
        or (
            b"stream" in data
            and any(_zlib_header(data, m.end()) for m in _PDF_STREAM.finditer(data))
        )
    )


def may_hold_streams_in(data: bytes, spans: Sequence[tuple[int, int]]) -> Iterator[int]:
    """The indexes of the `spans` ((start, end) stretches of `data`, a file's bytes each) that
    `may_hold_streams`, in order: what a tar of many files holds, found with one search of
    the whole of it per mark it holds, then one per mark and file, rather than a look at each
    file (5,000 small files: 73 ms file by file)."""
    marks = [
        mark
        for mark in (ZIP_ENTRY, PNG_SIGNATURE, _PACK_PIECE, b"stream", *_MARKED_PIECES)
        if mark in data
    ]
    for index, (start, end) in enumerate(spans):
        marked = any(data.find(mark, start, end) >= 0 for mark in marks)
        # A zlib or lzma stream that starts the file has no mark; its header is 14 bytes.
        starts = _format_at(data[start : min(end, start + 14)], 0) is not None
        if (marked or starts) and may_hold_streams(data[start:end]):
            yield index


_PACK_PIECE = b"PACK\x00\x00\x00"  # what `GIT_PACK` matches but its version


def _marked_piece(data: bytes) -> bool:
    """Whether `data` holds a piece of some magic number `_MARKED` matches: without one, the
    pattern need not run."""
    return any(piece in data for piece in _MARKED_PIECES)
