"""How the gate reaches an upstream, and the configurations it refuses to start with."""

from __future__ import annotations

import shlex

import pytest

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate.gate import check_upstreams, parse_updates, upstream_env
from bottle_engine.bundle.gitgate.policy import RefUpdate
from bottle_engine.errors import BottleError
from bottle_engine.git import is_local_url, is_ssh_url, ssh_command


@pytest.mark.parametrize(
    ("url", "ssh", "local"),
    [
        ("git@github.com:org/repo.git", True, False),
        ("github.com:org/repo.git", True, False),
        ("ssh://git@example.invalid:2222/srv/repo.git", True, False),
        ("git+ssh://example.invalid/repo", True, False),
        ("https://example.invalid/org/repo.git", False, False),
        ("git://example.invalid/repo", False, False),
        ("file:///srv/repo.git", False, True),
        ("/srv/repo.git", False, True),
        ("./relative/repo", False, True),
    ],
)
def test_url_kinds(url: str, ssh: bool, local: bool) -> None:
    assert (is_ssh_url(url), is_local_url(url)) == (ssh, local)


def test_ssh_command_uses_only_the_bottles_key_and_pinned_host_keys() -> None:
    words = shlex.split(ssh_command("/run/keys/id", "/run/keys/known_hosts"))

    assert words[:3] == ["ssh", "-F", "/dev/null"]  # no user ssh config
    for option in (
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/run/keys/known_hosts",
        "GlobalKnownHostsFile=/dev/null",
        "IdentityAgent=none",
        "IdentitiesOnly=yes",
        "BatchMode=yes",
    ):
        assert option in words
    assert words[words.index("-i") + 1] == "/run/keys/id"


def config_with(*upstreams: GitUpstreamConfig) -> BundleConfig:
    return BundleConfig(slug="s", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/24", git=upstreams)


def test_an_ssh_upstream_without_a_pinned_host_key_is_refused_at_start() -> None:
    upstream = GitUpstreamConfig("origin", "git@example.invalid:o/r.git", ("main",))

    with pytest.raises(BottleError, match=r"'origin'.*no known host key") as raised:
        check_upstreams(config_with(upstream))
    assert "known_host_key" in (raised.value.fix or "")


def test_the_ssh_environment_carries_the_identity_and_known_hosts() -> None:
    upstream = GitUpstreamConfig(
        "origin", "ssh://git@example.invalid/r.git", ("main",), False, False, "/k/id", "/k/kh"
    )

    env = upstream_env(upstream)

    assert env["GIT_SSH_COMMAND"] == ssh_command("/k/id", "/k/kh")
    assert env["GIT_TERMINAL_PROMPT"] == "0"


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b"])
def test_upstream_names_that_are_not_plain_repository_names_are_refused(name: str) -> None:
    with pytest.raises(BottleError, match="cannot be used as a repository name"):
        check_upstreams(config_with(GitUpstreamConfig(name, "/srv/r.git", ("main",))))


def test_an_upstream_configured_twice_is_refused() -> None:
    upstream = GitUpstreamConfig("origin", "/srv/r.git", ("main",))

    with pytest.raises(BottleError, match="configured twice"):
        check_upstreams(config_with(upstream, upstream))


def test_pre_receive_input_lines_become_ref_updates() -> None:
    text = f"{'0' * 40} {'a' * 40} refs/heads/agent/x\n{'b' * 40} {'0' * 40} refs/heads/old\n"

    updates = parse_updates(text)

    assert updates == [
        RefUpdate("refs/heads/agent/x", "0" * 40, "a" * 40),
        RefUpdate("refs/heads/old", "b" * 40, "0" * 40),
    ]
    assert [u.kind for u in updates] == ["create", "delete"]


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x1c", "\r", "\x0b"])
def test_a_ref_name_holding_a_line_separator_stays_one_update(separator: str) -> None:
    """git ends each line of the hook's input with "\\n" alone; a ref name may hold other
    characters `splitlines` splits at (git allows any non-ASCII). Split there, the hook judged
    and forwarded a ref named by the agent's text after it, not the ref receive-pack updates."""
    made_up = f"{'0' * 40} {'c' * 40} refs/heads/agent/made-up"
    text = f"{'0' * 40} {'a' * 40} refs/heads/agent/x{separator}{made_up}\n"

    updates = parse_updates(text)

    assert updates == [RefUpdate(f"refs/heads/agent/x{separator}{made_up}", "0" * 40, "a" * 40)]
