"""The inflater the git gate and the launch share (`bundle.inflate`): what its quick test for
files worth inflating lets through, and how deep and far it reads."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib

import pytest

from bottle_engine.bundle.inflate import (
    MAX_NESTING,
    Budget,
    TooLarge,
    Unscannable,
    inflated,
    may_hold_streams,
)
from tests.archive_attacks import deflated_zip, gzip_in_zip, pdf, png, png_chunk, tar_of
from tests.gate_attacks import (
    LZ4_KEY,
    PACK_BLOB,
    PACK_OFS_DELTA,
    PACK_REF_DELTA,
    ZSTD_KEY,
    key_in_a_delta,
    pack_entry_header,
    pack_of,
)

PADDING = b"#!/bin/sh\necho payload follows\n"


@pytest.mark.parametrize(
    "stream",
    [
        gzip.compress(b"x"),
        bz2.compress(b"x"),
        lzma.compress(b"x"),
        deflated_zip("a", b"x"),
        ZSTD_KEY,
        LZ4_KEY,
        b"7z\xbc\xaf\x27\x1c" + bytes(26),
        b"Rar!\x1a\x07\x00" + bytes(13),
        b"LZIP\x01\x0c",
        pdf("a", b"x"),
        png("a", b"x"),
        key_in_a_delta(),
    ],
    ids=[
        "gzip",
        "bzip2",
        "xz",
        "zip",
        "zstd",
        "lz4",
        "7z",
        "rar",
        "lzip",
        "pdf",
        "png",
        "git pack",
    ],
)
def test_a_file_holding_a_stream_anywhere_is_inflated(stream: bytes) -> None:
    """The quick test before inflating must pass every file `streams` reads a stream in, or
    whose format it refuses (a payload past a script too): a file it let by unread would hide
    a value from the launch, or a .zst from its warning."""
    assert may_hold_streams(stream)
    assert may_hold_streams(PADDING + stream)


def test_zlib_and_lzma_are_looked_for_at_the_start_only() -> None:
    assert may_hold_streams(zlib.compress(b"x"))
    assert may_hold_streams(lzma.compress(b"x", format=lzma.FORMAT_ALONE))
    assert not may_hold_streams(b"plain text, no stream in it\n")


def test_text_whose_stream_keyword_a_zlib_header_follows_by_chance_holds_no_stream() -> None:
    # "x " is a valid zlib header: code that names an upstream, then sets x, is no PDF.
    text = b"remote = upstream\nx = 1\n" * 3
    assert list(inflated(text, 1 << 20, nesting=0)) == []


def test_nested_streams_are_named_outermost_first() -> None:
    found = list(inflated(gzip_in_zip("a", b"the content"), 1 << 20))

    assert [formats for formats, _ in found] == [("zip",), ("zip", "gzip")]
    assert found[1][1] == b"the content"


def test_streams_nested_deeper_than_the_gate_reads_are_unscannable() -> None:
    data = b"the content"
    for _ in range(MAX_NESTING + 1):
        data = gzip.compress(data)

    with pytest.raises(Unscannable, match="nested more than"):
        list(inflated(data, 1 << 20))


def test_a_budget_bounds_what_many_files_inflate_to() -> None:
    budget = Budget(150)
    list(inflated(gzip.compress(bytes(100)), 1 << 20, budget=budget))

    with pytest.raises(TooLarge):
        list(inflated(gzip.compress(bytes(100)), 1 << 20, budget=budget))


def test_the_files_of_a_tar_worth_inflating_are_those_each_one_shows_alone() -> None:
    """`packed_files` finds its candidates in the tar's bytes, not file by file: it keeps just
    the files `may_hold_streams` keeps, whatever stands in a tar header (a name holding a
    magic number) or across two files (a mark whose halves end one file and start the next)."""
    import io
    import tarfile

    from bottle_engine.copied_archives import packed_files

    files = {
        "plain.txt": b"nothing here\n" * 50,
        "LZIP\x01 BZh91AY&SY PK\x03\x04.txt": b"a name of marks, a plain file\n",
        "ends_with_half.bin": b"x" * 510 + b"PK",  # and the next file starts with the rest
        "starts_with_half.bin": b"\x03\x04" + b"y" * 100,
        "data.gz": PADDING + gzip.compress(b"payload" * 30),
        "config.zip": deflated_zip("a.txt", b"entry content " * 40),
        "starts_zlib.bin": zlib.compress(b"z" * 300),
        "starts_lzma_alone.bin": lzma.compress(b"l" * 300, format=lzma.FORMAT_ALONE),
        "old.zst": ZSTD_KEY,
        "a_zstd_magic_by_chance.bin": b"\x28\xb5\x2f\xfd" + b"\xff" * 64,
        "x.tar.bz2": bz2.compress(b"b" * 300),
        "doc.pdf": pdf("a.txt", b"attached " * 40),
        "backup.pack": key_in_a_delta(),
        "a_stream_of_words.txt": b"a stream\nof words\n",
    }
    tree = tar_of(files)
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        found = dict(packed_files(archive, tree))

    expected = {name for name, data in files.items() if may_hold_streams(data)}
    assert set(found) == expected
    assert {"data.gz", "config.zip", "starts_zlib.bin", "old.zst", "x.tar.bz2"} <= expected
    assert {"doc.pdf", "backup.pack"} <= expected
    assert not {"plain.txt", "ends_with_half.bin", "starts_with_half.bin"} & expected
    assert "a_stream_of_words.txt" not in expected
    assert all(found[name] == files[name] for name in found)


def test_a_git_packs_deltas_are_made_on_their_bases_along_a_chain() -> None:
    """A delta on a delta on a blob: each is read as the object git makes of it."""
    first = pack_entry_header(PACK_BLOB, 6) + zlib.compress(b"start\n")
    # Each delta: the sizes, copy 6 bytes from 0, insert four.
    delta = bytes([6, 10, 0x90, 6, 4]) + b"more"
    second = pack_entry_header(PACK_OFS_DELTA, len(delta)) + bytes([len(first)])
    second += zlib.compress(delta)
    third = pack_entry_header(PACK_OFS_DELTA, len(delta)) + bytes([len(second)])
    third += zlib.compress(bytes([10, 10, 0x90, 6, 4]) + b"last")

    [(formats, content)] = list(inflated(pack_of([first, second, third]), 1 << 20))

    assert formats == ("git pack",)
    assert content == b"start\n\nstart\nmore\nstart\nlast\n"


def test_a_git_pack_delta_copying_past_the_bound_is_too_large() -> None:
    """A delta of one byte per 64 KiB copy (a copy command with no size is 64 KiB): 20 KiB of
    such commands, deflated to a few dozen bytes, would make 1.3 GB."""
    base = bytes(1 << 16)
    # The base's size and the object's (each seven bits a byte), then the copies.
    delta = bytes([0x80, 0x80, 0x04, 0xFF, 0xFF, 0x7F]) + b"\x80" * 20_000
    entries = [pack_entry_header(PACK_BLOB, len(base)) + zlib.compress(base, 9)]
    distance = bytes([len(entries[0])])  # one byte: the blob entry is under 128 bytes
    entries.append(pack_entry_header(PACK_OFS_DELTA, len(delta)) + distance + zlib.compress(delta))

    with pytest.raises(TooLarge, match="deltas make more than the bound"):
        list(inflated(pack_of(entries), 1 << 20))


@pytest.mark.parametrize(
    "bomb",
    [
        pack_of([pack_entry_header(PACK_BLOB, 1 << 22) + zlib.compress(bytes(1 << 22), 9)]),
        pdf("zeros", bytes(1 << 22)),
        png("zeros", bytes(1 << 22)),
    ],
    ids=["git pack entry", "pdf stream", "png chunk"],
)
def test_a_placed_zlib_stream_inflating_past_the_bound_is_too_large(bomb: bytes) -> None:
    with pytest.raises(TooLarge, match="inflates beyond the bound"):
        list(inflated(bomb, 1 << 20))


def test_a_png_s_compressed_texts_are_read_and_its_image_data_is_not() -> None:
    """An iTXt chunk flagged compressed holds a zlib stream past its fields, an iCCP chunk one
    past its name; the image data of a screenshot (8 MiB of scanlines) is pixels, and reading
    it would refuse every push of one as past the blob bound."""
    scanlines = zlib.compress(b"\0" + bytes(1 << 23))
    data = (
        PADDING
        + b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"iTXt", b"Comment\0\1\0en\0Comment\0" + zlib.compress(b"international"))
        + png_chunk(b"iCCP", b"profile\0\0" + zlib.compress(b"description"))
        + png_chunk(b"IDAT", scanlines[:7])
        + png_chunk(b"IDAT", scanlines[7:])
        + png_chunk(b"IEND", b"")
    )

    assert [content for _, content in inflated(data, 1 << 20)] == [b"international\ndescription\n"]


def test_png_signatures_inside_a_png_s_chunks_are_walked_within_the_blob_s_budget() -> None:
    """Each signature starts a walk of chunks, and chunks can lead each walk on to the blob's
    end: here every chunk's data is a signature and the head of an empty chunk whose end is
    the next chunk's start. Walking them all cost the blob's square (4.5 million chunks for
    these 84 KiB); what the nested walks read is charged to the blob's budget."""
    unit = png_chunk(b"aaaa", b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 0) + b"bbbb")
    with pytest.raises(TooLarge, match="overlap beyond what the gate reads"):
        list(inflated(PADDING + b"\x89PNG\r\n\x1a\n" + unit * 3000, 1 << 20))


def test_a_pack_header_counting_more_entries_than_it_holds_ends_with_its_bytes() -> None:
    """The entry count is the agent's: the entries are read while there are bytes."""
    pack = b"PACK\x00\x00\x00\x02\xff\xff\xff\xff" + b"\x80" * 1000

    assert list(inflated(pack, 1 << 20)) == []


def test_a_ref_delta_whose_base_id_reads_as_sha1_or_sha256_is_unscannable() -> None:
    """A pack does not say its ids' size: bytes 20 to 31 of a SHA-256 id can be a whole zlib
    stream, and the pack then reads one way as SHA-1 and another as SHA-256."""
    base_id = bytes(20) + zlib.compress(b"") + bytes(4)
    delta = bytes([3, 3, 3]) + b"abc"
    entry = pack_entry_header(PACK_REF_DELTA, len(delta)) + base_id + zlib.compress(delta)

    with pytest.raises(Unscannable, match="reads two ways"):
        list(inflated(pack_of([entry]), 1 << 20))
