"""The inflater the git gate and the launch share (`bundle.inflate`): what its quick test for
files worth inflating lets through, and how deep and far it reads."""

from __future__ import annotations

import bz2
import gzip
import lzma
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
from tests.archive_attacks import deflated_zip, gzip_in_zip, tar_of
from tests.gate_attacks import LZ4_KEY, ZSTD_KEY

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
    ],
    ids=["gzip", "bzip2", "xz", "zip", "zstd", "lz4", "7z", "rar", "lzip"],
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
    }
    tree = tar_of(files)
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        found = dict(packed_files(archive, tree))

    expected = {name for name, data in files.items() if may_hold_streams(data)}
    assert set(found) == expected
    assert {"data.gz", "config.zip", "starts_zlib.bin", "old.zst", "x.tar.bz2"} <= expected
    assert not {"plain.txt", "ends_with_half.bin", "starts_with_half.bin"} & expected
    assert all(found[name] == files[name] for name in found)
