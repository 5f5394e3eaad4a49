"""`bottle-engine cache` over a store made of small layouts (no daemon needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bottle_engine.artifacts import ArtifactStore
from bottle_engine.cli import main
from tests.unit.test_artifacts_store import KEY_A, KEY_B, put


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))
    return ArtifactStore()


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_cache_ls_lists_entries(store: ArtifactStore, capsys: pytest.CaptureFixture[str]) -> None:
    digest = put(store, KEY_A, "agent", {"f": b"1"})
    listed = run_json(capsys, "cache", "ls", "--json")
    assert isinstance(listed, list)
    assert [(e["name"], e["digest"], e["complete"]) for e in listed] == [("agent", digest, True)]


def test_cache_gc_and_rm(store: ArtifactStore, capsys: pytest.CaptureFixture[str]) -> None:
    put(store, KEY_A, "agent", {"f": b"1"})
    put(store, KEY_B, "agent", {"f": b"2"})
    store.lookup(KEY_B)
    removed = run_json(capsys, "cache", "gc", "--keep", "1", "--json")
    assert [entry["input_key"] for entry in removed] == [KEY_A]  # type: ignore[union-attr]
    removed = run_json(capsys, "cache", "rm", KEY_B[7:20], "--json")
    assert [entry["input_key"] for entry in removed] == [KEY_B]  # type: ignore[union-attr]
    assert run_json(capsys, "cache", "ls", "--json") == []


def test_cache_rm_of_an_unknown_key_fails_with_a_fix(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "rm", "deadbeef"]) == 1
    assert "bottle-engine cache ls" in capsys.readouterr().err


def test_base_bootstrap_without_debootstrap_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bottle_engine.artifacts.base import check_bootstrap_tools
    from bottle_engine.errors import BottleError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BottleError) as raised:
        check_bootstrap_tools()
    assert "apt-get install debootstrap" in str(raised.value)


def test_cache_ls_text_shows_a_header_and_names_as_text(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # A record names what is printed: one whose name is markup-like text (planted, since a
    # pull refuses such a name) is no entry, neither printed nor applied as markup.
    put(store, KEY_A, "agent", {"f": b"1"})
    put(store, KEY_B, "agent", {"f": b"2"})
    record = store.keys / f"{KEY_B[7:]}.json"
    record.write_text(record.read_text().replace('"agent"', '"[bold]x"'))
    assert main(["cache", "ls"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["NAME", "DIGEST", "INPUT"]
    assert row.startswith("agent ")
