"""Layer normalization: what two builds of the same inputs differ in must not reach the bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from importlib.util import MAGIC_NUMBER
from pathlib import Path

from bottle_engine.artifacts.normalize import (
    BlockGzipWriter,
    NormalizeRules,
    layer_entries,
    tree_entries,
    write_layer_blob,
    write_normalized_tar,
)

SDE = 1_700_000_000
RULES = NormalizeRules(source_date_epoch=SDE)
Entry = tuple[str, bytes | None, dict[str, object]]  # name, contents (None: a directory), fields


def make_layer(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, fields in entries:
            info = tarfile.TarInfo(name)
            for attribute, value in fields.items():
                setattr(info, attribute, value)
            if data is None and info.type == tarfile.REGTYPE:
                info.type = tarfile.DIRTYPE
            if info.type == tarfile.REGTYPE and data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


def normalize(layer: bytes, rules: NormalizeRules = RULES) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        write_normalized_tar(layer_entries(tar), out, rules)
    return out.getvalue()


def members(normalized: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(normalized)) as tar:
        return {member.name: member for member in tar.getmembers()}


def content(normalized: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(normalized)) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def timestamp_pyc(source_mtime: int) -> bytes:
    """A .pyc as `pip install` or an import writes it: flags 0, the source's mtime inside."""
    return MAGIC_NUMBER + bytes(4) + source_mtime.to_bytes(4, "little") + bytes(4) + b"code"


def build_one(now: int, uname: str) -> bytes:
    """A layer as one build leaves it: build-time mtimes, names, logs, caches, /tmp."""
    times: dict[str, object] = {"mtime": now, "uname": uname, "gname": uname}
    return make_layer(
        [
            ("./usr/", None, times),
            ("./usr/bin/tool", b"#!/bin/sh\n", {**times, "mode": 0o755}),
            ("./var/log/apt/history.log", f"Start-Date: {now}".encode(), times),
            ("./var/cache/apt/pkgcache.bin", str(now).encode(), times),
            ("./var/lib/apt/lists/deb.debian.org_dists", str(now).encode(), times),
            ("./tmp/build-scratch", b"x", times),
            ("./usr/lib/python3/__pycache__/m.cpython-311.pyc", timestamp_pyc(now), times),
            ("./root/.npm/_logs/debug.log", b"npm", times),
            (
                "./etc/shadow",
                f"root:*:{now // 86400}:0:99999:7:::\nagent:!:{now // 86400}::::::\n".encode(),
                times,
            ),
        ]
    )


def test_two_builds_at_different_times_normalize_to_the_same_bytes() -> None:
    first = normalize(build_one(1_800_000_000, "root"))
    second = normalize(build_one(1_800_100_000, "builder"))
    assert first == second


def test_entries_are_sorted_whatever_order_docker_wrote() -> None:
    a = make_layer([("b", b"1", {}), ("a", b"2", {}), ("a-b", b"3", {})])
    b = make_layer([("a-b", b"3", {}), ("b", b"1", {}), ("a", b"2", {})])
    assert normalize(a) == normalize(b)
    assert list(members(normalize(a))) == ["a", "a-b", "b"]


def test_mtimes_are_clamped_not_raised() -> None:
    layer = make_layer([("new", b"", {"mtime": SDE + 500}), ("old", b"", {"mtime": 1000})])
    result = members(normalize(layer))
    assert result["new"].mtime == SDE
    assert result["old"].mtime == 1000


def test_owners_are_numeric_only() -> None:
    layer = make_layer([("f", b"", {"uid": 1000, "gid": 1000, "uname": "agent", "gname": "agent"})])
    info = members(normalize(layer))["f"]
    assert (info.uid, info.gid, info.uname, info.gname) == (1000, 1000, "", "")


def test_volatile_files_are_dropped_but_their_directories_stay() -> None:
    result = members(normalize(build_one(1_800_000_000, "root")))
    assert "usr/bin/tool" in result
    for dropped in (
        "var/log/apt/history.log",
        "var/cache/apt/pkgcache.bin",
        "var/lib/apt/lists/deb.debian.org_dists",
        "tmp/build-scratch",
        "usr/lib/python3/__pycache__/m.cpython-311.pyc",
        "root/.npm/_logs/debug.log",
    ):
        assert dropped not in result
    layer = make_layer([("tmp", None, {}), ("var/log/apt", None, {})])
    assert {"tmp", "var/log/apt"} <= set(members(normalize(layer)))


def test_byte_code_is_kept_only_when_hash_based() -> None:
    def pyc(flags: int) -> bytes:  # PEP 552 header: magic, flags, then 8 bytes, then code
        return MAGIC_NUMBER + flags.to_bytes(4, "little") + bytes(8) + b"code"

    layer = make_layer(
        [
            ("lib/__pycache__/timestamp.cpython-311.pyc", pyc(0), {}),
            ("lib/__pycache__/checked.cpython-311.pyc", pyc(0b11), {}),
            ("lib/__pycache__/unchecked.cpython-311.pyc", pyc(0b01), {}),
            ("lib/__pycache__/truncated.cpython-311.pyc", b"\x00", {}),
        ]
    )
    kept = {name for name in members(normalize(layer)) if name.endswith(".pyc")}
    assert kept == {
        "lib/__pycache__/checked.cpython-311.pyc",
        "lib/__pycache__/unchecked.cpython-311.pyc",
    }


def test_shadow_password_age_is_set_to_the_clamp_day() -> None:
    shadow = content(normalize(build_one(1_800_000_000, "root")), "etc/shadow").decode()
    day = SDE // 86400
    assert shadow == f"root:*:{day}:0:99999:7:::\nagent:!:{day}::::::\n"


def test_shadow_day_is_never_zero_which_would_force_a_password_change() -> None:
    at_epoch = NormalizeRules(source_date_epoch=0)  # what `base bootstrap` uses by default
    shadow = content(normalize(build_one(1_800_000_000, "root"), at_epoch), "etc/shadow")
    assert shadow.decode().startswith("root:*:1:0:99999:7:::\n")


def test_hard_links_point_at_the_first_name_in_sorted_order() -> None:
    layer = make_layer(
        [
            ("z/original", b"shared", {}),
            ("a/link", None, {"type": tarfile.LNKTYPE, "linkname": "z/original"}),
        ]
    )
    result = normalize(layer)
    infos = members(result)
    assert infos["a/link"].isreg() and content(result, "a/link") == b"shared"
    assert infos["z/original"].islnk() and infos["z/original"].linkname == "a/link"


def test_extended_attributes_survive_and_other_pax_records_do_not() -> None:
    layer = make_layer(
        [
            (
                "usr/bin/ping",
                b"elf",
                {"pax_headers": {"SCHILY.xattr.user.test": "v", "atime": "123.5", "ctime": "9"}},
            )
        ]
    )
    info = members(normalize(layer))["usr/bin/ping"]
    assert info.pax_headers.get("SCHILY.xattr.user.test") == "v"
    assert "atime" not in info.pax_headers and "ctime" not in info.pax_headers


def test_layer_blob_gzip_has_no_name_and_no_time(tmp_path: Path) -> None:
    layer = make_layer([("f", b"data", {})])
    blobs = []
    for attempt in range(2):
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            blobs.append(write_layer_blob(layer_entries(tar), tmp_path / str(attempt), RULES))
    assert blobs[0] == blobs[1]
    raw = (tmp_path / "0" / blobs[0].digest.removeprefix("sha256:")).read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] & 0x08 == 0  # FNAME flag clear
    assert raw[4:8] == b"\0\0\0\0"  # MTIME zero
    assert blobs[0].diff_id == "sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest()


def test_a_directory_tree_normalizes_like_a_layer(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("builder\n")
    (root / "var" / "log").mkdir(parents=True)
    (root / "var" / "log" / "dpkg.log").write_text("noise")
    (root / "usr").mkdir()
    (root / "usr" / "a").write_text("same")
    (root / "usr" / "b").hardlink_to(root / "usr" / "a")
    (root / "usr" / "link").symlink_to("a")
    out = io.BytesIO()
    write_normalized_tar(tree_entries(root), out, RULES)
    result = members(out.getvalue())
    assert "var/log/dpkg.log" not in result and "var/log" in result
    assert result["usr/a"].isreg() and result["usr/b"].islnk()
    assert result["usr/b"].linkname == "usr/a"
    assert result["usr/link"].issym() and result["usr/link"].linkname == "a"
    assert all(info.mtime <= SDE for info in result.values())


def test_block_gzip_is_standard_gzip_and_independent_of_thread_count() -> None:
    data = b"".join(hashlib.sha256(str(i).encode()).digest() * (i % 7 + 1) for i in range(200_000))
    outputs = []
    for workers in (1, 2, 3):
        sink = io.BytesIO()
        with BlockGzipWriter(sink, 1, workers=workers, block=64 * 1024) as writer:
            for start in range(0, len(data), 10_000):
                writer.write(data[start : start + 10_000])
        outputs.append(sink.getvalue())
    assert outputs[0] == outputs[1] == outputs[2]
    assert gzip.decompress(outputs[0]) == data
    assert len(outputs[0]) < len(data)
