"""The git gate against a real ssh upstream: an sshd container of ours (published on loopback
only) holding bare repositories. The gate reaches it with the bottle's identity file and a
pinned host key, strict host key checking on, and nothing else (no ssh config, no agent)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import GitUpstreamConfig
from bottle_engine.git import ssh_command
from tests.bundle_helpers import TEST_LABELS
from tests.integration.test_gitgate_local import AWS_KEY, commit_file, git
from tests.integration.test_gitgate_support import gate_on_loopback, loopback_gate_config

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Keys arrive through the environment so that ownership and modes are what sshd insists on.
START = """\
set -e
printf '%s\\n' "$HOST_KEY" > /etc/ssh/ssh_host_ed25519_key
chmod 600 /etc/ssh/ssh_host_ed25519_key
printf '%s\\n' "$AUTHORIZED_KEY" > /home/git/.ssh/authorized_keys
chown -R git:git /home/git/.ssh && chmod 700 /home/git/.ssh
exec /usr/sbin/sshd -D -e -h /etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no
"""


def keypair(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def run_sshd(
    docker_client: Any, ssh_image: str, identity: Path, host_key: Path, **placement: Any
) -> Any:
    """Our sshd container, started: `host_key` its host key, `identity` (its .pub) the one key
    it lets in as git; `placement` (name, network, ports) says where it sits."""
    return docker_client.containers.run(
        ssh_image,
        ["sh", "-c", START],
        detach=True,
        labels=TEST_LABELS,
        environment={
            "HOST_KEY": host_key.read_text(),
            "AUTHORIZED_KEY": identity.with_suffix(".pub").read_text().strip(),
        },
        **placement,
    )


@dataclass
class SshUpstream:
    container: Any
    port: int
    identity: Path
    known_hosts: Path
    wrong_known_hosts: Path

    def new_repo(self) -> str:
        """A fresh bare repository with one commit on main; returns its ssh URL."""
        name = f"repo-{uuid.uuid4().hex[:8]}.git"
        self.exec(["git", "init", "-q", "--bare", "-b", "main", f"/home/git/{name}"])
        return f"ssh://git@127.0.0.1:{self.port}/home/git/{name}"

    def ref(self, url: str, ref: str) -> str | None:
        path = url.split(str(self.port), 1)[1]
        code, out = self.container.exec_run(
            ["git", f"--git-dir={path}", "rev-parse", "--verify", "--quiet", ref], user="git"
        )
        return out.decode().strip() if code == 0 else None

    def exec(self, command: list[str]) -> None:
        code, out = self.container.exec_run(command, user="git")
        assert code == 0, out.decode()


@pytest.fixture(scope="module")
def ssh_upstream(
    docker_client: Any, ssh_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SshUpstream]:
    keys = tmp_path_factory.mktemp("ssh-keys")
    identity = keypair(keys, "bottle_identity")
    host_key = keypair(keys, "host_key")
    other_host_key = keypair(keys, "other_host_key")
    container = run_sshd(
        docker_client, ssh_image, identity, host_key, ports={"22/tcp": ("127.0.0.1", None)}
    )
    try:
        port = int(published_port(container))
        known_hosts = keys / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.with_suffix('.pub').read_text()}")
        wrong = keys / "wrong_known_hosts"
        wrong.write_text(f"[127.0.0.1]:{port} {other_host_key.with_suffix('.pub').read_text()}")
        upstream = SshUpstream(container, port, identity, known_hosts, wrong)
        wait_for_sshd(upstream)
        yield upstream
    finally:
        container.remove(force=True)


def published_port(container: Any) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get("22/tcp")
        if bindings:
            return str(bindings[0]["HostPort"])
        time.sleep(0.2)
    raise AssertionError(f"sshd port was never published:\n{container.logs().decode()}")


def wait_for_sshd(upstream: SshUpstream) -> None:
    ssh = ssh_command(str(upstream.identity), str(upstream.known_hosts))
    deadline = time.monotonic() + 30
    while True:
        probe = subprocess.run(
            [*ssh.split(), "-p", str(upstream.port), "git@127.0.0.1", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = upstream.container.logs().decode()
            raise AssertionError(f"sshd not ready: {probe.stderr}\n{logs}")
        time.sleep(0.3)


def seed(upstream: SshUpstream, url: str, work: Path) -> None:
    env_ssh = ssh_command(str(upstream.identity), str(upstream.known_hosts))
    git(work.parent, "init", "-q", "-b", "main", str(work))
    commit_file(work, "README.md", "upstream\n", "initial")
    git(work, "-c", f"core.sshCommand={env_ssh}", "push", "-q", url, "HEAD:main")


@contextmanager
def gate_for(tmp_path: Path, upstream: SshUpstream, url: str, known_hosts: Path) -> Iterator[Path]:
    """Run the gate for one ssh upstream; yields the agent's clone of it."""
    config = loopback_gate_config(
        tmp_path,
        "ssh-gated",
        GitUpstreamConfig(
            name="origin",
            url=url,
            push_branches=("agent/*",),
            identity_file=str(upstream.identity),
            known_hosts_file=str(known_hosts),
        ),
    )
    with gate_on_loopback(tmp_path, config) as (_, agent):
        yield agent


@pytest.fixture
def seeded_url(ssh_upstream: SshUpstream, tmp_path: Path) -> str:
    """A new repository on the ssh upstream with one commit (README.md) on main."""
    url = ssh_upstream.new_repo()
    seed(ssh_upstream, url, tmp_path / "seed")
    return url


def test_clone_through_the_gate_mirrors_the_ssh_upstream(
    ssh_upstream: SshUpstream, seeded_url: str, tmp_path: Path
) -> None:
    url = seeded_url
    with gate_for(tmp_path, ssh_upstream, url, ssh_upstream.known_hosts) as agent:
        assert (agent / "README.md").read_text() == "upstream\n"


def test_allowed_push_arrives_at_the_ssh_upstream(
    ssh_upstream: SshUpstream, seeded_url: str, tmp_path: Path
) -> None:
    url = seeded_url
    with gate_for(tmp_path, ssh_upstream, url, ssh_upstream.known_hosts) as agent:
        head = commit_file(agent, "work.txt", "done\n")
        result = git(agent, "push", "origin", "HEAD:refs/heads/agent/work", check=False)

    assert result.returncode == 0, result.stderr
    assert ssh_upstream.ref(url, "refs/heads/agent/work") == head


def test_disallowed_branch_and_secrets_never_reach_the_ssh_upstream(
    ssh_upstream: SshUpstream, seeded_url: str, tmp_path: Path
) -> None:
    url = seeded_url
    with gate_for(tmp_path, ssh_upstream, url, ssh_upstream.known_hosts) as agent:
        commit_file(agent, "ok.txt", "fine\n")
        to_main = git(agent, "push", "origin", "HEAD:main", check=False)
        commit_file(agent, "creds.ini", f"[aws]\naws_access_key_id = {AWS_KEY}\n")
        with_key = git(agent, "push", "origin", "HEAD:refs/heads/agent/creds", check=False)

    assert "push_branches" in to_main.stderr
    assert "creds.ini:2: AWS Access Key" in with_key.stderr
    main = git(tmp_path / "seed", "rev-parse", "HEAD").stdout.strip()
    assert ssh_upstream.ref(url, "refs/heads/main") == main
    assert ssh_upstream.ref(url, "refs/heads/agent/creds") is None


def test_an_upstream_whose_host_key_differs_from_the_pinned_one_gets_nothing(
    ssh_upstream: SshUpstream, tmp_path: Path
) -> None:
    url = ssh_upstream.new_repo()

    with gate_for(tmp_path, ssh_upstream, url, ssh_upstream.wrong_known_hosts) as agent:
        commit_file(agent, "work.txt", "done\n")
        result = git(agent, "push", "origin", "HEAD:refs/heads/agent/work", check=False)

    assert result.returncode != 0
    assert "Host key verification failed" in result.stderr
    assert ssh_upstream.ref(url, "refs/heads/agent/work") is None
