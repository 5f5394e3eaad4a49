"""Secret scanning of stored bytes: what is found, where, and what is refused unscanned."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import marshal
import struct
import urllib.parse
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import SecretBinding
from bottle_engine.bundle.gitgate.objects import GITLINK_MODE, TreeEntry, tree_entries
from bottle_engine.bundle.gitgate.scan import (
    Finding,
    KnownSecret,
    ScanLimits,
    Scanner,
    known_secrets,
    text_views,
)
from tests.archive_attacks import pdf
from tests.bundle_helpers import secret_in_file
from tests.gate_attacks import (
    LZ4_KEY,
    LZ4_LEGACY_KEY,
    LZMA_SMALL_DICTIONARY_KEY,
    ZSTD_KEY,
    ZSTD_KEY_AFTER_EMPTY_BLOCK,
    gzip_in_a_gzip_header,
    key_in_a_delta,
    lzip_key,
    packed_key,
    zip_whose_local_header_lies,
    zstd_legacy_key,
)

COMMIT = "c" * 40
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
KEY_LINE = f"aws_access_key_id = '{AWS_KEY}'\n"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
VALUE = "plain-looking-value-42"
PLACEHOLDER = "bbph_" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(
        [
            KnownSecret(VALUE, "value of the bottle's secret 'gh'"),
            KnownSecret(PLACEHOLDER, "placeholder of the bottle's secret 'gh'"),
        ]
    )


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


SCRIPT = b"#!/bin/sh\nexit 0\n"  # a payload past a script, as self-extracting archives hold one


def damaged(data: bytes, at: int) -> bytes:
    """`data` with the byte at `at` inverted."""
    changed = bytearray(data)
    changed[at] ^= 0xFF
    return bytes(changed)


def kinds(findings: list[Finding]) -> list[tuple[int | None, str, str]]:
    return [(f.line, f.kind, f.view) for f in findings]


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("plain", KEY_LINE.encode(), (1, "AWS Access Key", "")),
        (
            "a line that looks like a diff header",
            f"++ /dev/null\n{KEY_LINE}".encode(),
            (2, "AWS Access Key", ""),
        ),
        ("one NUL byte", f"\0\n{KEY_LINE}".encode(), (3, "AWS Access Key", "binary content")),
        ("UTF-16 with BOM", KEY_LINE.encode("utf-16"), (1, "AWS Access Key", "UTF-16LE text")),
        ("UTF-16BE", KEY_LINE.encode("utf-16-be"), (1, "AWS Access Key", "UTF-16BE text")),
        (
            "UTF-32BE, the key last",
            AWS_KEY.encode("utf-32-be"),
            (1, "AWS Access Key", "UTF-32BE text"),
        ),
        (
            "gzip inside gzip",
            gzip.compress(gzip.compress(KEY_LINE.encode())),
            (1, "AWS Access Key", "gzip-inflated content, gzip-inflated content"),
        ),
        (
            "gzip inside a zip member",
            zip_of({"k.gz": gzip.compress(KEY_LINE.encode())}),
            (1, "AWS Access Key", "zip-inflated content, gzip-inflated content"),
        ),
        (
            "bzip2 past a script",
            SCRIPT + bz2.compress(KEY_LINE.encode()),
            (1, "AWS Access Key", "bzip2-inflated content"),
        ),
        (
            "a zip past a script",
            SCRIPT + zip_of({"k.txt": KEY_LINE.encode()}),
            (2, "AWS Access Key", "zip-inflated content"),
        ),
        (
            "a key cut between two gzip members past a script",
            SCRIPT + gzip.compress(KEY_LINE[:30].encode()) + gzip.compress(KEY_LINE[30:].encode()),
            (1, "AWS Access Key", "gzip-inflated content"),
        ),
        (
            # zcat and xz -d show all they inflated, then complain of the checksum.
            "gzip whose checksum is wrong",
            damaged(gzip.compress(KEY_LINE.encode()), -8),
            (1, "AWS Access Key", "gzip-inflated content"),
        ),
        (
            "xz whose check is wrong",
            damaged(lzma.compress(KEY_LINE.encode()), -28),
            (1, "AWS Access Key", "xz-inflated content"),
        ),
        (
            "lzma, as `lzma` writes it",
            lzma.compress(KEY_LINE.encode(), lzma.FORMAT_ALONE),
            (1, "AWS Access Key", "lzma-inflated content"),
        ),
        (
            "lzma with a small dictionary",
            LZMA_SMALL_DICTIONARY_KEY,
            (1, "AWS Access Key", "lzma-inflated content"),
        ),
        (
            "lzma with other properties",
            lzma.compress(
                KEY_LINE.encode(),
                lzma.FORMAT_ALONE,
                filters=[{"id": lzma.FILTER_LZMA1, "lc": 0, "lp": 0, "pb": 0}],
            ),
            (1, "AWS Access Key", "lzma-inflated content"),
        ),
        (
            "a deflated zip entry whose local header says stored",
            zip_whose_local_header_lies(zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED),
            (2, "AWS Access Key", "zip-inflated content"),
        ),
        (
            "a gzip stream in another's header",
            gzip_in_a_gzip_header(),
            (1, "AWS Access Key", "gzip-inflated content"),
        ),
        (
            "a gzip stream in the header of a second member",
            gzip.compress(b"hi\n") + gzip_in_a_gzip_header(),
            (1, "AWS Access Key", "gzip-inflated content"),
        ),
        ("gzip", gzip.compress(KEY_LINE.encode()), (1, "AWS Access Key", "gzip-inflated content")),
        (
            "a git pack's delta naming its base by id (REF_DELTA)",
            key_in_a_delta(ref_delta=True),
            (2, "AWS Access Key", "git pack-inflated content"),
        ),
        (
            "a PDF's FlateDecode stream past a script",
            SCRIPT + pdf("keys.txt", KEY_LINE.encode()),
            (1, "AWS Access Key", "pdf-inflated content"),
        ),
        (
            "a second gzip member",
            gzip.compress(b"hi\n") + gzip.compress(KEY_LINE.encode()),
            (2, "AWS Access Key", "gzip-inflated content"),
        ),
        ("bzip2", bz2.compress(KEY_LINE.encode()), (1, "AWS Access Key", "bzip2-inflated content")),
        (
            "a deflated zip member, after another",
            zip_of({"a.txt": b"hi\n", "keys/aws.txt": KEY_LINE.encode()}),
            (5, "AWS Access Key", "zip-inflated content"),
        ),
        (
            "a pragma comment",
            f"{KEY_LINE.strip()}  # pragma: allowlist secret\n".encode(),
            (1, "AWS Access Key", ""),
        ),
        ("a $ prefix", f"key = ${AWS_KEY}\n".encode(), (1, "AWS Access Key", "")),
        ("a private key", PRIVATE_KEY.encode(), (1, "Private Key", "")),
    ],
)
def test_a_secret_is_found_however_the_blob_stores_it(
    scanner: Scanner, name: str, data: bytes, expected: tuple[int, str, str]
) -> None:
    # Either UTF-16 reading finds a run of the other, one byte on: both views name UTF-16.
    found = [
        (line, kind, view.replace("BE", "LE"))
        for line, kind, view in kinds(scanner.blob(COMMIT, "x.txt", data))
    ]
    assert (expected[0], expected[1], expected[2].replace("BE", "LE")) in found, name


@pytest.mark.parametrize("path", ["logo.png", "yarn.lock", "package-lock.json", "api.swagger.yaml"])
def test_file_names_the_agent_chose_skip_nothing(scanner: Scanner, path: str) -> None:
    assert [f.kind for f in scanner.blob(COMMIT, path, KEY_LINE.encode())] == ["AWS Access Key"]


def test_a_secret_past_a_long_line_window_is_found(scanner: Scanner) -> None:
    data = ("x" * 10_000 + " " + KEY_LINE).encode()

    assert [f.kind for f in scanner.blob(COMMIT, "min.js", data)] == ["AWS Access Key"]


def test_ordinary_code_has_no_findings(scanner: Scanner) -> None:
    assert scanner.blob(COMMIT, "app.py", b"def add(a, b):\n    return a + b\n") == []


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (f"token: {VALUE}\n".encode(), "value of the bottle's secret 'gh'"),
        (f"\0{PLACEHOLDER}".encode(), "placeholder of the bottle's secret 'gh'"),
        (
            base64.b64encode(b"ab" + VALUE.encode()),
            "value of the bottle's secret 'gh', base64-encoded",
        ),
        (
            base64.urlsafe_b64encode(b"?" + VALUE.encode()),
            "value of the bottle's secret 'gh', base64-encoded",
        ),
        (  # as `base64` writes it: lines of 76, here one ending inside the value
            base64.encodebytes(b"x" * 50 + VALUE.encode()),
            "value of the bottle's secret 'gh', base64-encoded",
        ),
        (VALUE.encode().hex().upper().encode(), "value of the bottle's secret 'gh', hex-encoded"),
        (gzip.compress(VALUE.encode()), "value of the bottle's secret 'gh'"),
    ],
)
def test_the_bottles_own_secret_is_found_as_is_and_encoded(
    scanner: Scanner, data: bytes, label: str
) -> None:
    findings = scanner.blob(COMMIT, "notes.md", data)

    assert label in [f.kind for f in findings]
    assert all(VALUE not in f.describe() and PLACEHOLDER not in f.describe() for f in findings)


def test_a_value_cut_by_line_breaks_is_found_on_the_line_it_starts(scanner: Scanner) -> None:
    data = b"intro\r\n" + base64.encodebytes(b"x" * 50 + VALUE.encode()).replace(b"\n", b"\r\n")

    found = kinds(scanner.blob(COMMIT, "notes.b64", data))

    assert found == [(2, "value of the bottle's secret 'gh', base64-encoded", "")]


def test_a_commit_object_is_read_whole_author_and_message(scanner: Scanner) -> None:
    commit = (
        f"tree {'a' * 40}\nauthor {AWS_KEY} <a@b.invalid> 0 +0000\n"
        f"committer A <a@b.invalid> 0 +0000\n\nfix\n\n{VALUE}\n"
    ).encode()

    found = kinds(scanner.message(COMMIT, "the commit message and headers", commit))

    assert (2, "AWS Access Key", "") in found
    assert (7, "value of the bottle's secret 'gh'", "") in found


def test_a_commit_is_also_read_in_the_encoding_it_names(scanner: Scanner) -> None:
    """git log shows a commit decoded whole from the encoding its header names into UTF-8."""
    head = f"tree {'a' * 40}\nauthor A <a@b.invalid> 0 +0000\nencoding IBM037\n\n"
    commit = head.encode() + f"fix\n{KEY_LINE}".encode("cp037")

    found = kinds(scanner.message(COMMIT, "the commit message and headers", commit))

    view = "text in the encoding the commit names (IBM037)"
    assert [(kind, v) for _, kind, v in found] == [("AWS Access Key", view)]


@pytest.mark.parametrize("name", ["X-UNKNOWN-7", "rot13"])  # rot13: a codec, not a text one
def test_a_commit_in_an_encoding_the_gate_cannot_read_is_refused(
    scanner: Scanner, name: str
) -> None:
    commit = f"tree {'a' * 40}\nencoding {name}\n\nfix\n".encode()

    [finding] = scanner.message(COMMIT, "the commit message and headers", commit)

    assert finding.kind == (
        f"refused unscanned: the commit names the encoding {name!r}, which the gate cannot read"
    )


def test_a_name_holding_a_secret_is_not_repeated(scanner: Scanner) -> None:
    [finding] = scanner.name(COMMIT, "a file or directory name", f"docs/{AWS_KEY}.md")

    assert finding.describe() == f"commit {COMMIT[:12]}: a file or directory name: AWS Access Key"


def test_inflating_past_the_bound_is_refused_not_skipped() -> None:
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    [finding] = scanner.blob(COMMIT, "bomb.gz", gzip.compress(b"\0" * 5000))

    assert finding.kind.startswith("refused unscanned: gzip content inflates beyond")


# A 7z signature header (version 0.4) whose start header CRC is right.
_7Z_START = struct.pack("<QQI", 32, 64, 0)
SEVEN_Z = b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(_7Z_START)) + _7Z_START

# RAR 5.0: a main archive header (size 3: type 1, no flags) with its CRC-32; RAR 4: a main
# header (type 0x73, size 13) with its CRC-16.
RAR5 = (
    b"Rar!\x1a\x07\x01\x00"
    + struct.pack("<I", zlib.crc32(b"\x03\x01\x00\x00"))
    + b"\x03\x01\x00\x00"
)
_RAR4_MAIN = b"\x73\x00\x00\x0d\x00" + bytes(6)
RAR4 = b"Rar!\x1a\x07\x00" + struct.pack("<H", zlib.crc32(_RAR4_MAIN) & 0xFFFF) + _RAR4_MAIN

UNREADABLE = {
    "zstd": (ZSTD_KEY, "a zstd stream, which the gate cannot inflate"),
    "zstd past a script": (SCRIPT + ZSTD_KEY, "a zstd stream, which the gate cannot inflate"),
    "zstd after empty blocks": (
        ZSTD_KEY[:6] + b"\x00\x00\x00\x02\x00\x00Q\x04\x00\x00" + ZSTD_KEY[6:],
        "a zstd stream, which the gate cannot inflate",
    ),
    "zstd after an empty raw block": (
        ZSTD_KEY_AFTER_EMPTY_BLOCK,
        "a zstd stream, which the gate cannot inflate",
    ),
    "zstd v0.7": (zstd_legacy_key(), "a zstd stream, which the gate cannot inflate"),
    "zstd v0.6": (
        b"\x26" + zstd_legacy_key()[1:5] + zstd_legacy_key()[6:],
        "a zstd stream, which the gate cannot inflate",
    ),
    "zstd v0.5": (
        b"\x25" + zstd_legacy_key()[1:5] + zstd_legacy_key()[6:],
        "a zstd stream, which the gate cannot inflate",
    ),
    "an lzma zip entry whose local header says stored": (
        zip_whose_local_header_lies(zipfile.ZIP_LZMA, zipfile.ZIP_STORED),
        "a zip entry is encrypted or compressed in a way the gate cannot read",
    ),
    "an lzma zip entry whose local header needs version 6.4": (
        zip_whose_local_header_lies(zipfile.ZIP_LZMA, zipfile.ZIP_LZMA, version=64),
        "a zip entry is encrypted or compressed in a way the gate cannot read",
    ),
    "lz4": (LZ4_KEY, "a lz4 stream, which the gate cannot inflate"),
    "lz4 legacy": (LZ4_LEGACY_KEY, "a lz4 legacy stream, which the gate cannot inflate"),
    "7z past a script": (SCRIPT + SEVEN_Z, "a 7z stream, which the gate"),
    "rar": (RAR5, "a rar stream, which the gate cannot inflate"),
    "rar 4": (RAR4, "a rar stream, which the gate cannot inflate"),
    "lzip": (b"LZIP\x01\x0c\x00", "a lzip stream, which the gate cannot inflate"),
    "lzip version 0": (lzip_key(0), "a lzip stream, which the gate cannot inflate"),
    "compress": (b"\x1f\x9d\x90", "a compress (.Z) stream, which the gate cannot inflate"),
    "pack": (packed_key(), "a pack (.z) stream, which the gate cannot inflate"),
    "LZH": (b"\x1f\xa0\x00", "a LZH (compress -H) stream, which the gate cannot inflate"),
    "gzip four deep": (
        gzip.compress(gzip.compress(gzip.compress(gzip.compress(KEY_LINE.encode())))),
        "archives or compressed streams nested more than 3 deep",
    ),
    "a gzip magic every three bytes": (
        b"\x1f\x8b\x08" * 5000,
        "its compressed streams overlap beyond what the gate reads",
    ),
}


@pytest.mark.parametrize(("data", "refusal"), list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_compressed_content_the_gate_cannot_read_is_refused(data: bytes, refusal: str) -> None:
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    found = [f.kind for f in scanner.blob(COMMIT, "x.bin", data)]

    assert any(kind.startswith(f"refused unscanned: {refusal}") for kind in found), found


def test_text_three_levels_deep_is_read_not_refused() -> None:
    """A zip magic with no entry after it is no fourth level: nothing there inflates."""
    data = gzip.compress(gzip.compress(gzip.compress(KEY_LINE.encode() + b"PK\x03\x04")))
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    found = [f.kind for f in scanner.blob(COMMIT, "x.gz", data)]

    assert found == ["AWS Access Key"]


def test_a_zip_inflating_past_the_bound_is_refused_not_skipped() -> None:
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    [finding] = scanner.blob(COMMIT, "bomb.zip", zip_of({"a": b"\0" * 5000}))

    assert finding.kind.startswith("refused unscanned: zip content inflates beyond")


def test_a_zip_entry_its_central_directory_leaves_out_is_read() -> None:
    """`unzip -l` lists only clean.txt; tools reading the entries in order extract k.txt too."""
    hidden = zip_of({"k.txt": KEY_LINE.encode()})
    data = hidden[: hidden.rindex(b"PK\x01\x02")] + zip_of({"clean.txt": b"hi\n"})
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["clean.txt"]
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    found = kinds(scanner.blob(COMMIT, "k.zip", data))

    assert found == [(2, "AWS Access Key", "zip-inflated content")]


def test_an_encrypted_zip_entry_is_refused_not_skipped() -> None:
    data = bytearray(zip_of({"k.txt": KEY_LINE.encode()}))
    data[6] |= 1  # the entry's "encrypted" flag
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    [finding] = scanner.blob(COMMIT, "k.zip", bytes(data))

    assert finding.kind == (
        "refused unscanned: a zip entry is encrypted or compressed in a way the gate cannot read"
    )


def test_the_push_budget_is_charged_across_blobs_and_then_refuses() -> None:
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=1500))

    assert scanner.blob(COMMIT, "a.txt", b"a" * 800) == []
    [finding] = scanner.blob(COMMIT, "b.txt", b"b" * 800)

    assert "more than 1500 bytes of scanning" in finding.kind
    assert scanner.exhausted


def test_views_of_a_blob_with_utf16_and_nul() -> None:
    data = b"\x00abc\x00" + "secret-ish text".encode("utf-16-le")

    views = dict(text_views(data, 10**6))

    assert views["UTF-16LE text"].endswith("secret-ish text")
    assert "binary content" in views


def test_finding_description_escapes_what_the_agent_named() -> None:
    finding = Finding(COMMIT, "a\x1b[2Jb\nc.txt", 4, "AWS Access Key")

    assert finding.describe() == f"commit {COMMIT[:12]}: a\\x1b[2Jb\\nc.txt:4: AWS Access Key"


def test_the_bottles_secret_value_and_placeholder_are_read_from_the_bindings(
    tmp_path: Path,
) -> None:
    found = known_secrets(
        [
            secret_in_file(tmp_path / "gh", "gh", PLACEHOLDER, ("api.github.com",), VALUE),
            SecretBinding("t", "PH_T", (), "/nonexistent/secret"),
        ]
    )

    assert found == [
        KnownSecret(PLACEHOLDER, "placeholder of the bottle's secret 'gh'"),
        KnownSecret(VALUE, "value of the bottle's secret 'gh'"),
        KnownSecret("PH_T", "placeholder of the bottle's secret 't'"),
    ]


def test_a_raw_tree_is_read_entry_by_entry_names_as_stored() -> None:
    blob, gitlink = bytes(range(20)), b"tok-0123456789ab\0\0\0\0"
    raw = b"100644 a\nb.txt\0" + blob + b"160000 sub\0" + gitlink

    assert tree_entries(raw) == [
        TreeEntry("100644", b"a\nb.txt", blob.hex()),
        TreeEntry(GITLINK_MODE, b"sub", gitlink.hex()),
    ]
    with pytest.raises(ValueError):
        tree_entries(raw[:-1])


# A magic number by chance, as programs and compiled modules on an ordinary machine hold them:
# a format table (libarchive), a constant a decoder compares with (tar, kmod, libmagic), a
# module's own bytes literals (this gate's .pyc).
BY_CHANCE = {
    "zstd magic then zeros": b"\0" * 16 + b"\x28\xb5\x2f\xfd" + bytes(8) + b"This does",
    "zstd magic in a regex": rb"\x1f\x8b|(\xb5/\xfd|\x04"
    + b'"M\x18|7z\xbc\xaf\x27\x1c|Rar!\x1a\x07|',
    "legacy zstd magics compared in code": b"\x3d\x27\xb5\x2f\xfd\x0f\x84\x00\x01"
    + b"\x3d\x25\xb5\x2f\xfd\x74\x1a\x48\x89\xe5"
    + bytes(8),
    "lz4 magic then code": b"\x04\x22\x4d\x18\x48\x89\xe5\x41\xbe" + bytes(8),
    "rar 5 signature in a table": b"Rar!\x1a\x07\x01\x00H9\x10u,\xb8\x1e\x00" + bytes(8),
    "rar 4 signature then code": b"Rar!\x1a\x07\x00\x48\x89\xd7\xe8" + bytes(16),
    "7z signature then code": b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(range(30)),
    "zip magic as a constant": b"\0" * 8 + b"PK\x03\x04\x00\x00\x00\x00\xe9\x1c" + bytes(30),
    "zip magic in compressed bytes": b"PK\x03\x04\x9a\x31\xc4\x07\x5e\xfa" + bytes(range(40)),
}


@pytest.mark.parametrize("data", list(BY_CHANCE.values()), ids=list(BY_CHANCE))
def test_a_magic_number_by_chance_is_not_refused(data: bytes) -> None:
    """Before, four bytes anywhere refused a push: 32 of the 34 programs and libraries under
    /usr that hold one (gzip, gpg, tar, libarchive, libzstd) and this gate's own .pyc."""
    scanner = Scanner([], ScanLimits(max_blob_bytes=1000, max_scan_bytes=10**6))

    assert scanner.blob(COMMIT, "x.bin", data) == []


@pytest.mark.parametrize("module", ["scan", "inflate"])
def test_the_gates_own_compiled_module_pushes(module: str) -> None:
    from bottle_engine.bundle import inflate
    from bottle_engine.bundle.gitgate import scan

    path = {"scan": scan.__file__, "inflate": inflate.__file__}[module]
    source = open(path, "rb").read()  # noqa: SIM115
    compiled = marshal.dumps(compile(source, f"{module}.py", "exec"))

    assert Scanner([]).blob(COMMIT, f"{module}.py", source) == []
    assert Scanner([]).blob(COMMIT, f"{module}.pyc", compiled) == []


def test_the_plugins_never_read_a_wide_gap_of_spaces(
    scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """` *(?:=| +|...) *` in four plugins backtracks in cubic time over a run of spaces:
    "password" and 4 088 spaces (one 4 KiB window) took 206 s of the gate's time, 600 spaces
    0.6 s. The plugins read every run of spaces cut to two (bench_hostile_inputs.py times it)."""
    read: list[str] = []
    for entry in scanner.detectors.plugins:
        analyze = entry.plugin.analyze_line

        def recording(*args: Any, analyze: Any = analyze, **kwargs: Any) -> Any:
            read.append(kwargs.get("line", args[1] if len(args) > 1 else ""))
            return analyze(*args, **kwargs)

        monkeypatch.setattr(entry.plugin, "analyze_line", recording)
    scanner.blob(COMMIT, "notes.txt", ("password" + " " * 600 + "= x\n").encode())
    assert read and all("   " not in line for line in read), max(map(len, read))


def test_a_key_behind_a_wide_gap_is_still_found(scanner: Scanner) -> None:
    line = "ibm_cloud_iam_key" + " " * 40 + "=" + " " * 40 + "Ab1" * 14 + "AB\n"
    assert [f.kind for f in scanner.blob(COMMIT, "notes.txt", line.encode())] == [
        "IBM Cloud IAM Key"
    ]


@pytest.mark.parametrize(
    "stored",
    [
        urllib.parse.quote('rt38/inv+ent&ed"api<key>', safe="").encode(),  # a remote URL's password
        json.dumps({"token": 'rt38/inv+ent&ed"api<key>'}).encode(),  # a settings file
    ],
)
def test_the_bottles_own_secret_is_found_percent_encoded_or_json_escaped(stored: bytes) -> None:
    """The gate searched the value as it is, base64 and hex: a value with a reserved character
    went upstream percent-encoded (a remote URL in a committed config) or JSON-escaped (a
    committed settings file), which every reader decodes. The forms are the launch's too
    (`secret_forms`)."""
    label = "value of the bottle's secret 'api'"
    scanner = Scanner([KnownSecret('rt38/inv+ent&ed"api<key>', label)])

    assert label in [f.kind.split(",")[0] for f in scanner.blob(COMMIT, "config.json", stored)]
