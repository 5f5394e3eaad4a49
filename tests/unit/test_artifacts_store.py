"""The artifact store and OCI layouts: atomic entries, trust rules, gc, archives, diffs."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from bottle_engine.artifacts import ArtifactStore, oci, write_image_archive
from bottle_engine.artifacts.normalize import NormalizeRules
from bottle_engine.artifacts.oci import (
    MAX_TAR_HEADER_BYTES,
    diff_layouts,
    layer_listing,
    layout_from_docker_save,
    normalized_config,
    read_layout,
)
from bottle_engine.artifacts.store import PULLED
from bottle_engine.errors import BottleError
from bottle_engine.progress import QuietProgress

RULES = NormalizeRules(source_date_epoch=0)


def docker_save_archive(files: dict[str, bytes], created: str = "2026-11-23T10:00:00Z") -> bytes:
    """A minimal `docker save` archive of a one-layer image holding `files`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_900_000_000
            tar.addfile(info, io.BytesIO(data))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "container": "f00",
        "docker_version": "20.10.24",
        "config": {
            "Env": ["PATH=/usr/bin"],
            "Cmd": ["bash"],
            "Hostname": "f00",
            "Image": "sha256:1",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:ignored"]},
        "history": [{"created": created, "created_by": "RUN make", "comment": "x"}],
    }
    manifest = [{"Config": "cfg.json", "RepoTags": None, "Layers": ["abc/layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (
            ("abc/layer.tar", layer.getvalue()),
            ("cfg.json", json.dumps(config).encode()),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def make_layout(work: Path, files: dict[str, bytes], created: str = "2026-11-23T10:00:00Z") -> str:
    archive = docker_save_archive(files, created)
    chunks = [archive[i : i + 4096] for i in range(0, len(archive), 4096)]
    return layout_from_docker_save(chunks, work / "layout", RULES, QuietProgress())


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def put(store: ArtifactStore, key: str, name: str, files: dict[str, bytes]) -> str:
    with store.new_layout() as work:
        digest = make_layout(work, files)
        store.put(key, name, digest, work / "layout")
    return digest


KEY_A, KEY_B, KEY_C = ("sha256:" + c * 64 for c in "abc")


def test_the_same_image_built_at_another_time_gets_the_same_digest(tmp_path: Path) -> None:
    first = make_layout(tmp_path / "1", {"f": b"x"}, created="2026-01-01T00:00:00Z")
    second = make_layout(tmp_path / "2", {"f": b"x"}, created="2027-06-06T06:06:06Z")
    assert first == second
    assert make_layout(tmp_path / "3", {"f": b"y"}) != first


def test_normalized_config_keeps_what_runs_and_drops_build_noise() -> None:
    config = normalized_config(
        {
            "created": "2026-11-23T10:00:00Z",
            "container": "f00",
            "config": {"Env": ["A=1"], "Hostname": "f00", "WorkingDir": "/w", "User": ""},
            "history": [{"created": "2026", "created_by": "RUN x", "empty_layer": True}],
        },
        ["sha256:d"],
        0,
    )
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"] == {"Env": ["A=1"], "WorkingDir": "/w"}
    assert config["history"] == [{"created_by": "RUN x", "empty_layer": True}]
    assert "container" not in config
    assert config["rootfs"]["diff_ids"] == ["sha256:d"]


def test_lookup_finds_what_put_stored(store: ArtifactStore) -> None:
    digest = put(store, KEY_A, "agent", {"f": b"x"})
    found = store.lookup(KEY_A)
    assert found is not None
    assert found.digest == digest
    assert found.image_tag == f"bot-bottle/agent:{digest[7:19]}"
    assert read_layout(found.layout_dir).digest == digest
    assert store.lookup(KEY_B) is None


def test_an_artifact_that_must_be_built_here_is_not_found_when_pulled_or_of_unknown_origin(
    store: ArtifactStore,
) -> None:
    with store.new_layout() as work:
        store.put(KEY_A, "bundle", make_layout(work, {"f": b"x"}), work / "layout", origin=PULLED)
    assert store.lookup(KEY_A) is not None
    assert store.lookup(KEY_A, built_here=True) is None
    # A record an older engine wrote says nothing of where its artifact came from.
    record = store.keys / f"{KEY_B[7:]}.json"
    put(store, KEY_B, "bundle", {"f": b"y"})
    assert store.lookup(KEY_B, built_here=True) is not None
    record.write_text(
        json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "origin"})
    )
    assert store.lookup(KEY_B, built_here=True) is None
    assert [entry.origin for entry in store.entries() if entry.input_key == KEY_B] == [""]


def test_a_layout_missing_a_blob_is_not_trusted(store: ArtifactStore) -> None:
    put(store, KEY_A, "agent", {"f": b"x"})
    artifact = store.lookup(KEY_A)
    assert artifact is not None
    layer = read_layout(artifact.layout_dir).layer_digests[0]
    (artifact.layout_dir / "blobs" / "sha256" / layer[7:]).unlink()
    assert store.lookup(KEY_A) is None


def test_a_truncated_blob_is_not_trusted(store: ArtifactStore) -> None:
    put(store, KEY_A, "agent", {"f": b"x" * 5000})
    artifact = store.lookup(KEY_A)
    assert artifact is not None
    layer = (
        artifact.layout_dir
        / "blobs"
        / "sha256"
        / read_layout(artifact.layout_dir).layer_digests[0][7:]
    )
    layer.write_bytes(layer.read_bytes()[:10])
    assert store.lookup(KEY_A) is None


def test_an_interrupted_build_leaves_nothing_a_lookup_trusts(store: ArtifactStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.new_layout() as work:
        make_layout(work, {"f": b"x"})
        raise KeyboardInterrupt  # Ctrl-C before `put`
    assert store.lookup(KEY_A) is None
    assert list(store.tmp.iterdir()) == []
    assert store.entries() == []


def test_gc_removes_temp_dirs_of_dead_builds_only(store: ArtifactStore) -> None:
    store.tmp.mkdir(parents=True)
    dead = store.tmp / "999999999-abc"  # no such pid
    dead.mkdir()
    alive = store.tmp / f"{os.getpid()}-def"
    alive.mkdir()
    store.gc(keep=3)
    assert not dead.exists()
    assert alive.exists()


def test_gc_keeps_the_most_recently_used_per_name(store: ArtifactStore) -> None:
    put(store, KEY_A, "agent", {"f": b"1"})
    put(store, KEY_B, "agent", {"f": b"2"})
    put(store, KEY_C, "bundle", {"f": b"3"})
    assert store.lookup(KEY_A) is not None  # A is now the most recently used agent
    removed = store.gc(keep=1)
    assert [entry.input_key for entry in removed] == [KEY_B]
    assert store.lookup(KEY_A) is not None and store.lookup(KEY_C) is not None
    assert len(list(store.layouts.iterdir())) == 2


def test_rm_by_prefix_of_key_or_digest(store: ArtifactStore) -> None:
    digest = put(store, KEY_A, "agent", {"f": b"1"})
    put(store, KEY_B, "agent", {"f": b"2"})
    assert [entry.digest for entry in store.remove(digest[:19])] == [digest]
    assert store.lookup(KEY_A) is None
    assert [entry.input_key for entry in store.remove("bbbbbbbb")] == [KEY_B]
    with pytest.raises(BottleError, match="no cache entry"):
        store.remove("cccccccc")
    with pytest.raises(BottleError, match="too short"):
        store.remove("ab")


@pytest.mark.parametrize(
    "record",
    [
        {"digest": "sha256:../../outside"},
        {"digest": "OUTSIDE"},  # an absolute path: the layout dir is the path itself
        {"digest": ["not", "text"]},
        {"input_key": "sha256:../outside"},
        {"name": {"not": "text"}},
        {"last_used": "yesterday"},
    ],
    ids=[
        "digest-climbing-out",
        "digest-absolute",
        "digest-not-text",
        "key-climbing-out",
        "name-not-text",
        "time-not-a-number",
    ],
)
def test_a_key_record_naming_no_digest_of_ours_is_not_an_entry(
    store: ArtifactStore, tmp_path: Path, record: dict[str, object]
) -> None:
    """The store's records name the layout dir `gc` and `rm` remove; a record planted in a
    store shared between users once made `cache gc` remove a directory outside the store."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "work").write_text("a person's files")
    store.keys.mkdir(parents=True)
    store.layouts.mkdir()  # as after any build: a path through it climbs out
    planted = {"input_key": KEY_A, "digest": "sha256:" + "d" * 64, "name": "agent", **record}
    planted = {key: str(outside) if value == "OUTSIDE" else value for key, value in planted.items()}
    (store.keys / f"{'a' * 64}.json").write_text(json.dumps(planted))
    store.gc(keep=0)
    assert (outside / "work").read_text() == "a person's files"
    with pytest.raises(BottleError, match="no cache entry"):
        store.remove("aaaaaaaa")
    assert store.entries() == []


def test_a_key_record_nested_too_deeply_is_not_an_entry(store: ArtifactStore) -> None:
    store.keys.mkdir(parents=True)
    (store.keys / f"{'a' * 64}.json").write_text("[" * 100_000)
    assert store.entries() == []
    assert store.lookup(KEY_A) is None


def test_two_keys_can_share_one_layout(store: ArtifactStore) -> None:
    first = put(store, KEY_A, "agent", {"f": b"same"})
    second = put(store, KEY_B, "agent", {"f": b"same"})
    assert first == second
    store.remove(KEY_A)
    assert store.lookup(KEY_B) is not None  # the layout is still named by KEY_B


def test_archives_are_deterministic_and_docker_loadable_shape(
    store: ArtifactStore, tmp_path: Path
) -> None:
    put(store, KEY_A, "agent", {"f": b"1"})
    artifact = store.lookup(KEY_A)
    assert artifact is not None
    one = write_image_archive(artifact, tmp_path / "one.tar", "docker-save")
    two = write_image_archive(artifact, tmp_path / "two.tar", "docker-save")
    assert one.read_bytes() == two.read_bytes()
    with tarfile.open(one) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
    assert manifest[0]["RepoTags"] == [artifact.image_tag]
    assert all(layer in names for layer in manifest[0]["Layers"])
    oci = write_image_archive(artifact, tmp_path / "oci.tar", "oci")
    with tarfile.open(oci) as tar:
        assert "manifest.json" not in tar.getnames() and "index.json" in tar.getnames()


def test_diff_lists_the_paths_that_differ(tmp_path: Path) -> None:
    make_layout(tmp_path / "1", {"same": b"s", "stamp": b"monday", "only-first": b"1"})
    make_layout(tmp_path / "2", {"same": b"s", "stamp": b"tuesday"})
    differences = diff_layouts(tmp_path / "1" / "layout", tmp_path / "2" / "layout")
    assert [(d.where, d.path) for d in differences] == [
        ("layer 1", "/only-first"),
        ("layer 1", "/stamp"),
    ]
    assert differences[0].second == "(absent)"


def _layer_with_long_header(fmt: int) -> bytes:
    """A gzip layer whose one file carries a header record of more than the bound: a PAX
    comment, or a GNU long name."""
    long = "a" * (MAX_TAR_HEADER_BYTES + 1)
    info = tarfile.TarInfo(long if fmt == tarfile.GNU_FORMAT else "f")
    if fmt == tarfile.PAX_FORMAT:
        info.pax_headers = {"comment": long}
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=fmt) as tar:
        tar.addfile(info, io.BytesIO(b""))
    return gzip.compress(layer.getvalue(), compresslevel=1)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_a_layer_header_past_the_bound_is_refused_not_read_whole(tmp_path: Path, fmt: int) -> None:
    """`build --verify` lists the layers of the artifact the shared cache holds for the key,
    which whoever may push chose. Python's tarfile reads a PAX or GNU long-name header whole
    into memory: a 0.9 MB layer of one such header took 617 MB, so a few tens of megabytes
    put the verifying machine out of memory."""
    blob = tmp_path / "layer"
    blob.write_bytes(_layer_with_long_header(fmt))
    assert blob.stat().st_size < MAX_TAR_HEADER_BYTES  # zeros of a header cost nothing
    with pytest.raises(BottleError, match=r"header of \d+ bytes"):
        layer_listing(blob)


def test_a_layer_of_chained_headers_is_refused_not_a_crash(tmp_path: Path) -> None:
    """tarfile reads the header a PAX header applies to by recursing, once per header: 5000
    small PAX headers in a row (20 KB gzipped) raised RecursionError out of `--verify`."""
    record = b"11 a=bcdef\n"
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(record)
    one = header.tobuf(format=tarfile.USTAR_FORMAT) + record.ljust(tarfile.BLOCKSIZE, b"\0")
    last = tarfile.TarInfo("f").tobuf(format=tarfile.USTAR_FORMAT) + bytes(2 * tarfile.BLOCKSIZE)
    blob = tmp_path / "layer"
    blob.write_bytes(gzip.compress(one * 5000 + last))
    with pytest.raises(BottleError, match="headers in a row"):
        layer_listing(blob)


def _layer_of_empty_files(count: int) -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for number in range(count):
            tar.addfile(tarfile.TarInfo(f"f{number}"))
    return gzip.compress(layer.getvalue())


def test_a_layer_of_more_paths_than_a_listing_holds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers of empty files compress to a few bytes each: a pushed layer of 1.2 MB listing
    200,000 paths took 159 MB to list, so a layer of tens of megabytes put the machine that ran
    `--verify` out of memory. Past the bound the listing is refused (lowered here to 100)."""
    monkeypatch.setattr(oci, "MAX_LAYER_ENTRIES", 100, raising=False)
    blob = tmp_path / "layer"
    blob.write_bytes(_layer_of_empty_files(101))
    with pytest.raises(BottleError, match="more than 100 paths"):
        layer_listing(blob)
    blob.write_bytes(_layer_of_empty_files(100))
    assert len(layer_listing(blob)) == 100


def test_layer_cache_hits_made_before_the_clamp_time_are_stale() -> None:
    from bottle_engine.artifacts.builder import stale_steps

    base = [100]
    assert not stale_steps([900, 800, 100], base, source_date_epoch=700)
    assert stale_steps([900, 600, 100], base, source_date_epoch=700)
    assert not stale_steps([600, 100], base, source_date_epoch=600)
    assert not stale_steps([100], base, source_date_epoch=10**10)  # only base steps
