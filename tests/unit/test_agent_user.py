"""The agent's uid under each runtime, and what is renumbered and given to it under runc."""

from __future__ import annotations

import io
import tarfile

import pytest

from bottle_engine.agent_user import agent_uid, renumbered, reown
from bottle_engine.errors import BottleError
from bottle_engine.host_ids import ID_RANGE_START, agent_id_for
from bottle_engine.plan import AGENT_UID

PASSWD = b"root:x:0:0:root:/root:/bin/bash\nagent:x:1000:1000::/home/agent:/bin/bash\n"
GROUP = b"root:x:0:\nusers:x:100:\nagent:x:1000:\n"


def test_runc_agents_get_an_id_of_their_bottle_others_keep_the_images() -> None:
    assert agent_uid("dev-a1", None, {}) == agent_id_for("dev-a1") >= ID_RANGE_START
    assert agent_uid("dev-a1", "runc", {}) == agent_id_for("dev-a1")
    assert agent_uid("dev-a1", "runsc", {}) == AGENT_UID
    for option in ("name=rootless", "name=userns"):
        assert agent_uid("dev-a1", None, {"SecurityOptions": [option]}) == AGENT_UID


def test_the_agent_entries_are_renumbered_and_nothing_else() -> None:
    assert renumbered(PASSWD, 2_100_000_000) == (
        b"root:x:0:0:root:/root:/bin/bash\nagent:x:2100000000:2100000000::/home/agent:/bin/bash\n"
    )
    assert renumbered(GROUP, 7) == b"root:x:0:\nusers:x:100:\nagent:x:7:\n"


def _tar(*entries: tuple[str, int, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, owner, data in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = owner
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _reowned(home: bytes, uid: int, max_bytes: int) -> bytes:
    copy = io.BytesIO()
    reown(io.BytesIO(home), copy, uid, max_bytes=max_bytes)
    return copy.getvalue()


def test_the_images_home_is_given_to_the_agent_what_root_owns_stays_roots() -> None:
    home = _tar(("agent", 1000, None), ("agent/.bashrc", 1000, b"alias x=y\n"), ("agent/r", 0, b""))
    with tarfile.open(fileobj=io.BytesIO(_reowned(home, 42, 1 << 20))) as archive:
        owners = {m.name: (m.uid, m.gid) for m in archive}
        assert archive.extractfile("agent/.bashrc").read() == b"alias x=y\n"  # type: ignore[union-attr]
    assert owners == {"agent": (42, 42), "agent/.bashrc": (42, 42), "agent/r": (0, 0)}


def test_a_home_past_the_bound_is_refused_at_the_header_that_passes_it() -> None:
    home = _tar(("agent", 1000, None), ("agent/zeros", 1000, bytes(8192)))
    assert _reowned(home, 42, 512 + 512 + 8192)  # each entry: its header's block and its data
    with pytest.raises(BottleError, match="/home/agent is more than the 9215 bytes"):
        _reowned(home, 42, 512 + 512 + 8191)
