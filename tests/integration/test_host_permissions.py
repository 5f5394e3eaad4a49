"""Host users without rights cannot read a bottle's state: records, the bundle config, the
secret values handed to the bundle, the CA key, the audit log. Tried as `nobody`, as uid 10001
(the bundle's fixed uid before bundles got a uid of their own), and as the bundle's own uid
(held by no account; a later one still could not get past the root-owned 0700 dirs above).

The state dir of this test is under a directory other users may traverse, as a home directory
usually is: only bot-bottle's own permissions stand between them and the files.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bottle_fixtures import BottleWorld, running_bottle, world_env
from tests.host_users import as_user

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become other host users"),
]


@pytest.fixture(scope="module")
def open_world(bottle_world: BottleWorld) -> Iterator[BottleWorld]:
    home = Path(tempfile.mkdtemp(prefix="bb-home-", dir="/tmp"))
    try:
        home.chmod(0o711)  # like a home directory: others may pass through, not list it
        yield dataclasses.replace(
            bottle_world, env={**bottle_world.env, "BOTTLE_STATE_DIR": str(home / "state")}
        )
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)


@pytest.fixture(scope="module")
def launched(open_world: BottleWorld) -> Iterator[tuple[Any, Path]]:
    from bottle_engine.backends import backend_named

    with running_bottle(open_world, "probe") as record:
        with world_env(open_world):
            code, output = backend_named("docker").exec_as_agent(
                record, ["curl", "-sS", "-m", "10", "http://upstream.test:8000/"]
            )
        assert code == 0, output  # leaves an entry in the audit log
        yield record, Path(open_world.env["BOTTLE_STATE_DIR"])


def _bundle_uid(docker_client: Any, record: Any) -> int:
    user = docker_client.containers.get(record.bundle_name).attrs["Config"]["User"]
    return int(str(user).split(":")[0])


def test_other_host_users_cannot_read_a_bottles_state(
    launched: tuple[Any, Path], docker_client: Any
) -> None:
    record, state_root = launched
    bottle = state_root / "bottles" / record.slug
    files = [
        bottle / "bundle.json",
        state_root / "records" / f"{record.slug}.json",
        bottle / "secrets" / "TEST_TOKEN",
        bottle / "ca" / "mitmproxy-ca.pem",  # the CA's private key
        bottle / "egress.jsonl",
    ]
    for path in files:
        assert path.is_file(), path  # they exist: refusals below are about rights
    users = {
        "nobody": 65534,
        "uid 10001": 10001,
        "the bundle's uid": _bundle_uid(docker_client, record),
    }
    read = {}
    for who, uid in users.items():
        for directory in (state_root, state_root / "records", state_root / "bottles", bottle):
            read[(who, str(directory))] = as_user(uid, ["ls", str(directory)]).returncode == 0
        for path in files:
            read[(who, str(path))] = as_user(uid, ["cat", str(path)]).returncode == 0
    assert [where for where, ok in read.items() if ok] == []


def test_a_bottles_files_are_private_to_their_owner(launched: tuple[Any, Path]) -> None:
    record, state_root = launched
    bottle = state_root / "bottles" / record.slug
    records = state_root / "records"
    for directory in (state_root, records, state_root / "bottles", bottle, bottle / "secrets"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    record_file = records / f"{record.slug}.json"
    for path in (bottle / "bundle.json", record_file, bottle / "egress.jsonl"):
        assert path.stat().st_mode & 0o077 == 0, path
