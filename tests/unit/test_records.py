"""Bottle records are typed (resources a dataclass, status a `BottleStatus` with a closed kind)
and their JSON on disk is what it was: records written before still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bottle_engine import records
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import plan_bottle
from bottle_engine.records import BottleRecord, BottleResources
from bottle_engine.status import BottleStatus

# As written by the engine before the record was typed (docker, then smolmachines); the second
# also carries a key no version of the record has, and a status an older version stored.
OLD_DOCKER = {
    "agent": "dev",
    "backend": "docker",
    "bottle": "default",
    "bundle_ip": "10.243.0.2",
    "cwd": "/m",
    "manifest": "/m/bottle.toml",
    "name": "bottle-dev-1",
    "resources": {
        "agent_image": "bot-bottle/agent:abc",
        "bundle_image": "bot-bottle/bundle:def",
        "cpus": 2.0,
        "memory_bytes": 4294967296,
        "runtime": "runsc",
        "runtime_reason": "registered and passes the self-test",
    },
    "slug": "dev-1",
    "started_at": "2026-01-01T00:00:00+00:00",
    "subnet": "10.243.0.0/28",
}
OLD_SMOL = {
    **OLD_DOCKER,
    "slug": "dev-2",
    "name": "bottle-dev-2",
    "backend": "smolmachines",
    "status": "running",
    "from_the_future": 1,
    "resources": {
        "agent_image": "bot-bottle/agent:abc",
        "artifact_digest": "sha256:0123",
        "bundle_image": "bot-bottle/bundle:def",
        "command": ["claude", "-p", "hi"],
        "cpus": 1.0,
        "memory_bytes": 2147483648,
        "pack": "/cache/packs/x.smolmachine",
    },
}


def write_raw(data: dict[str, object]) -> None:
    path = records.record_path(str(data["slug"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_a_record_written_before_loads_typed() -> None:
    write_raw(OLD_DOCKER)
    write_raw(OLD_SMOL)
    docker, smol = records.load("dev-1"), records.load("dev-2")
    assert docker is not None and smol is not None
    assert docker.resources == BottleResources(
        cpus=2.0,
        memory_bytes=4294967296,
        agent_image="bot-bottle/agent:abc",
        bundle_image="bot-bottle/bundle:def",
        runtime="runsc",
        runtime_reason="registered and passes the self-test",
    )
    assert smol.resources.command == ("claude", "-p", "hi")
    assert smol.resources.runtime is None
    assert smol.status == BottleStatus("unknown")  # a stored status is never believed


@pytest.mark.parametrize("old", [OLD_DOCKER, OLD_SMOL])
def test_saving_a_loaded_record_writes_the_json_it_was_read_from(old: dict[str, object]) -> None:
    write_raw(old)
    loaded = records.load(str(old["slug"]))
    assert loaded is not None
    records.save(loaded.with_status(BottleStatus("degraded: bundle down", "resume it")))
    saved = json.loads(records.record_path(str(old["slug"])).read_text())
    expected = {k: v for k, v in old.items() if k not in ("status", "from_the_future")}
    assert saved == expected


def test_json_for_scripts_has_the_status_its_kind_and_the_fix() -> None:
    write_raw(OLD_DOCKER)
    record = records.load("dev-1")
    assert record is not None
    degraded = record.with_status(BottleStatus("degraded: bundle down", "bottle-engine resume x"))
    data = degraded.to_json()
    assert (data["status"], data["state"], data["fix"]) == (
        "degraded: bundle down",
        "degraded",
        "bottle-engine resume x",
    )
    assert data["resources"] == OLD_DOCKER["resources"]
    assert degraded.fix == "bottle-engine resume x"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("running", "running"),
        ("degraded: bundle gone", "degraded"),
        ("exited, degraded: network gone", "degraded"),
        ("exited", "stopped"),
        ("stopped", "stopped"),
        ("missing", "missing"),
        ("unknown", "unknown"),
    ],
)
def test_every_status_falls_in_one_kind(text: str, kind: str) -> None:
    assert BottleStatus(text).kind == kind


def test_a_record_is_built_with_typed_resources_only() -> None:
    record = BottleRecord("s", "bottle-s", "a", "b", "docker", "m", "/", "t", "ip", "n")
    assert record.resources == BottleResources()
    assert record.to_json()["resources"] == {
        "cpus": 0.0,
        "memory_bytes": 0,
        "agent_image": "",
        "bundle_image": "",
    }


def test_a_launch_is_saved_with_the_plans_resources_the_images_and_the_backends_own(
    tmp_path: Path,
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    manifest = load_manifest_text(
        '[agents.dev]\n\n[bottles.default]\ncpus = 1.5\nmemory = "2g"\n', tmp_path / "bottle.toml"
    ).require()
    plan = plan_bottle(manifest, "dev", cwd=tmp_path)
    own = BottleResources(runtime="runsc", runtime_reason="registered", cpus=9.0)
    saved = records.save_launched(plan, "docker", "agent:a", "bundle:b", own)
    assert saved.resources == BottleResources(
        cpus=1.5,
        memory_bytes=2 * 1024**3,
        agent_image="agent:a",
        bundle_image="bundle:b",
        runtime="runsc",
        runtime_reason="registered",
    )
    assert (saved.slug, saved.backend, saved.bundle_ip) == (plan.slug, "docker", plan.bundle_ip)
    assert records.load(plan.slug) == saved


@pytest.mark.parametrize(
    "slug",
    [
        "../escape",
        "a/../../b",
        ".",
        "..",
        ".hidden",
        "",
        "a\0b",
        pytest.param("a" * 300, id="overlong"),
    ],
)
def test_a_slug_that_is_not_a_bottles_name_is_refused_before_any_file_is_touched(
    slug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stop --rm SLUG` takes SLUG from the command line: a path in it would read (and remove)
    a record outside records/, an overlong one failed with a traceback."""
    from bottle_engine import state
    from bottle_engine.cli import main

    outside = state.state_dir() / "escape.json"
    state.private_dir(state.records_dir())
    outside.write_text("{}")
    assert main(["stop", "--rm", slug]) != 0
    assert "is not a bottle's name" in capsys.readouterr().err
    assert outside.read_text() == "{}"
