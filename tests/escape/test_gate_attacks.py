"""A hostile agent inside a real bottle tries to push secrets and manifest changes upstream.

The bottle is launched through the engine (`lifecycle.launch`) from a manifest with one git
upstream: an sshd container of ours on the test world's outside network, reached only by the
bundle with the bottle's identity and pinned host key. The agent clones from the gate and runs
each attack of tests/gate_attacks.py as itself. Every push must be refused with the reason, and
the upstream's object store must not gain a single object.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bottle_fixtures import (
    BottleWorld,
    agent_exec,
    one_agent_manifest,
    running_bottle,
    world_for,
    world_secret_table,
)
from tests.gate_attacks import (
    AWS_KEY,
    KEY_IN_DEFLATE_BLOCKS,
    attacks,
    key_in_deflate_blocks_script,
)
from tests.integration.test_gitgate_bundle import seeded_sshd

MANIFEST = one_agent_manifest(
    "pusher",
    world_secret_table("gated")
    + """
[[bottles.gated.git]]
name = "origin"
url = "ssh://git@{ip}/home/git/repo.git"
identity = "{identity}"
known_host_key = "{ip} {host_key}"
push_branches = ["agent/*"]
""",
    bottle="gated",
)


@dataclasses.dataclass
class GatedBottle:
    world: BottleWorld
    record: Any
    upstream: Any
    placeholder: str

    def agent_sh(self, script: str) -> tuple[int, str]:
        return agent_exec(self.world, self.record, ["sh", "-c", script])

    def upstream_objects(self) -> set[str]:
        """Every object the upstream holds. It always holds main's (seeded): an empty answer is
        an exec whose output the daemon lost under load, asked again (a few times at most)."""
        for _ in range(5):
            result = self.upstream.exec_run(
                [
                    "git",
                    "--git-dir=/home/git/repo.git",
                    "cat-file",
                    "--batch-all-objects",
                    "--batch-check=%(objectname)",
                ],
                user="git",
            )
            assert result.exit_code == 0, result.output
            objects = set(bytes(result.output or b"").decode().split())
            if objects:
                return objects
            time.sleep(0.5)
        raise AssertionError("the upstream lists no object, not even main's")


@pytest.fixture(scope="module")
def gated(
    bottle_world: BottleWorld,
    docker_client: Any,
    ssh_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatedBottle]:
    directory = tmp_path_factory.mktemp("gated-bottle")
    network = bottle_world.outside.network
    with seeded_sshd(docker_client, ssh_image, network, directory) as sshd:
        public_key = " ".join(sshd.host_key.with_suffix(".pub").read_text().split()[:2])
        world = world_for(
            bottle_world,
            directory,
            MANIFEST,
            ip=sshd.ip,
            identity=sshd.identity,
            host_key=public_key,
        )
        with running_bottle(world, "pusher") as record:
            bottle = GatedBottle(world, record, sshd.container, "")
            code, output = bottle.agent_sh(
                'git clone -q "$GIT_GATE_URL/origin" /tmp/work && printf %s "$TEST_TOKEN"'
            )
            assert code == 0, output
            bottle.placeholder = output.strip().splitlines()[-1]
            assert bottle.placeholder.startswith("bbph_")
            yield bottle


ATTACK_NAMES = [attack.name for attack in attacks("", "")]


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_push_attack_from_inside_the_bottle_is_refused(gated: GatedBottle, name: str) -> None:
    # The real value never enters the bottle; an agent could still learn or guess it, and the
    # gate must stop it then too.
    attack = {a.name: a for a in attacks(gated.placeholder, gated.world.secret_value)}[name]
    before = gated.upstream_objects()

    code, output = gated.agent_sh(f"cd /tmp/work && {attack.script}")

    assert code != 0, output
    assert attack.expected in output, output
    assert gated.upstream_objects() == before
    said = "\n".join(line for line in output.splitlines() if line.startswith("remote:"))
    assert AWS_KEY not in said and gated.world.secret_value not in said


def test_a_blob_over_the_default_bound_is_refused(gated: GatedBottle) -> None:
    before = gated.upstream_objects()

    code, output = gated.agent_sh(
        "cd /tmp/work && git checkout -q -B big origin/main && "
        "head -c 9000000 /dev/urandom > big.bin && git add big.bin && "
        "git -c user.name=A -c user.email=a@bottle.invalid commit -q -m big && "
        "git push origin HEAD:refs/heads/agent/big"
    )

    assert code != 0, output
    assert "big.bin: refused unscanned: 9000000 bytes, over the bound" in output
    assert gated.upstream_objects() == before


def test_a_clean_push_from_the_bottle_arrives(gated: GatedBottle) -> None:
    # The push's messages (the gate's "remote:" line) go to stdout too, so that they cannot
    # arrive after the hash: Docker does not keep the order across an exec's two streams.
    code, output = gated.agent_sh(
        "cd /tmp/work && git checkout -q -B clean origin/main && echo ok > ok.txt && "
        "git add ok.txt && git -c user.name=A -c user.email=a@bottle.invalid commit -q -m ok && "
        "git push -q origin HEAD:refs/heads/agent/clean 2>&1 && git rev-parse HEAD"
    )

    assert code == 0, output
    head = output.strip().splitlines()[-1]
    result = gated.upstream.exec_run(
        ["git", "--git-dir=/home/git/repo.git", "rev-parse", "refs/heads/agent/clean"], user="git"
    )
    assert bytes(result.output).decode().strip() == head


def test_a_key_in_the_encoding_of_a_clean_blob_never_reaches_the_upstream(
    gated: GatedBottle,
) -> None:
    """The gate forwards what it scanned as it packs it itself: the deflate blocks of the
    agent's own pack spelt the key upstream, around a file of harmless text."""
    # Kept as pushed, as forges keep packs (git unpacks pushes of under 100 objects).
    gated.upstream.exec_run(
        ["git", "--git-dir=/home/git/repo.git", "config", "receive.unpackLimit", "1"], user="git"
    )

    code, output = gated.agent_sh(f"cd /tmp/work && {key_in_deflate_blocks_script()}")

    assert code == 0, output  # the content is clean
    packs = gated.upstream.exec_run(
        ["sh", "-c", "cat /home/git/repo.git/objects/pack/*.pack"], user="git"
    )
    held = bytes(packs.output or b"")
    assert packs.exit_code == 0 and held.startswith(b"PACK"), held[:200]
    assert KEY_IN_DEFLATE_BLOCKS not in held


def test_zz_an_upstream_history_holding_the_real_value_is_not_served(gated: GatedBottle) -> None:
    """Last: it leaves the upstream holding the value. Someone with access to the upstream
    commits the bottle's real value and takes it out in the next commit; the gate mirrored it
    and served it, and the agent's `git log -p` showed it. Now the fetch is refused, naming
    the secret, and the value is nowhere in the agent's repository."""
    value = gated.world.secret_value
    script = (
        "set -e; cd /tmp && rm -rf person && git clone -q /home/git/repo.git person && cd person"
        " && git config user.name p && git config user.email p@p.invalid"
        f" && printf 'TOKEN=%s\\n' '{value}' > settings.env && git add settings.env"
        " && git commit -q -m settings && git rm -q settings.env && git commit -q -m out"
        " && git push -q origin HEAD:main"
    )
    seeded = gated.upstream.exec_run(["sh", "-c", script], user="git")
    assert seeded.exit_code == 0, seeded.output

    code, output = gated.agent_sh("cd /tmp/work && git fetch origin")

    assert code != 0, output
    assert "TEST_TOKEN" in output and value not in output, output
    _, history = gated.agent_sh("cd /tmp/work && git log -p --all")
    assert value not in history
