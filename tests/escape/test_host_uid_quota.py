"""A runc bottle's agent must not share per-user kernel quotas with a host account.

Under runc there is no user namespace: the agent's uid is a host uid. Per-uid kernel counters
(inotify instances and watches, RLIMIT_NPROC, POSIX mqueue bytes) are then shared with whoever
holds that uid on the host. The image's `agent` is uid 1000, on most machines the person's own
account: an agent that used up the inotify instances of its uid broke the person's editor (and
every other runc bottle's file watching). gVisor is not concerned (the host sees its sandbox's
own user), so this suite runs under runc only.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from bottle_engine.plan import AGENT_UID
from tests.bottle_fixtures import BottleWorld, agent_exec, running_bottle

# inotify_init1(0) on x86-64; exits 0 when an instance could be made.
INOTIFY_INIT = "syscall(294, 0) >= 0 or die qq(inotify_init: $!\\n)"
# Opens inotify instances until the kernel refuses (at most 512), says how many, and keeps
# them while it sleeps; detached so the exec returns and the instances stay held.
HOARD = (
    "setsid perl -e '"
    "my $n = 0; while ($n < 512 && syscall(294, 0) >= 0) { $n++ } "
    'open(my $f, ">", "/tmp/hoard") or die; print $f "$n $$ $!\\n"; close $f; sleep 600'
    "' </dev/null >/dev/null 2>&1 & "
    "for i in $(seq 100); do [ -s /tmp/hoard ] && break; sleep 0.1; done; cat /tmp/hoard"
)


@pytest.fixture(scope="module")
def runc_bottle(bottle_world: BottleWorld) -> Iterator[Any]:
    world = dataclasses.replace(bottle_world, env={**bottle_world.env, "BOTTLE_RUNTIME": "runc"})
    with running_bottle(world, "probe") as record:
        yield record


def _host_process_of(uid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "perl",
            "-e",
            INOTIFY_INIT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another host user")
def test_a_runc_agent_cannot_use_up_a_host_users_inotify_instances(
    bottle_world: BottleWorld, runc_bottle: Any
) -> None:
    """Invariant 6: the agent hoards every inotify instance its uid may have; a host process of
    the image's agent uid (1000) can still make one, because the agent is not that uid."""
    assert _host_process_of(AGENT_UID).returncode == 0, "uid 1000 had no instance to start with"
    code, uid = agent_exec(bottle_world, runc_bottle, ["id", "-u"])
    assert code == 0, uid
    code, output = agent_exec(bottle_world, runc_bottle, ["bash", "-c", HOARD])
    hoarder = output.split()[1] if code == 0 else "0"
    try:
        assert code == 0, output
        held = int(output.split()[0])
        assert held >= 1, output
        host = _host_process_of(AGENT_UID)
        assert host.returncode == 0, (
            f"the agent (uid {uid.strip()}) holds {held} inotify instances and a host process "
            f"of uid {AGENT_UID} gets: {host.stderr.strip()}"
        )
    finally:
        # The instances die with the hoarder (and at the latest with the container).
        agent_exec(bottle_world, runc_bottle, ["kill", hoarder])


def test_the_runc_agent_is_a_user_of_its_own_with_its_home_and_workspace(
    bottle_world: BottleWorld, runc_bottle: Any
) -> None:
    """The agent's uid is none of the host's accounts' and the image's contract still holds:
    it is `agent` by name, and its home (what the image put there too) and /workspace are its."""
    script = (
        "id -u; id -g; whoami; "
        "touch ~/.made ~/.bashrc /workspace/.made && echo writable; "
        "stat -c %u ~ ~/.bashrc ~/.claude/settings.json /workspace | sort -u | wc -l"
    )
    code, output = agent_exec(bottle_world, runc_bottle, ["bash", "-c", script])
    assert code == 0, output
    uid, gid, name, writable, owners = output.split()
    assert int(uid) != AGENT_UID and gid == uid, output
    with pytest.raises(KeyError):
        pwd.getpwuid(int(uid))
    assert (name, writable, owners) == ("agent", "writable", "1"), output
