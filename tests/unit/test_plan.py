"""The pure planner: manifest + agent -> everything a launch will do, decided without I/O."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bottle_engine.bundle.config import (
    EGRESS_PORT,
    GIT_KEYS_MOUNT,
    SECRETS_MOUNT,
    SUPERVISE_PORT,
    BundleConfig,
)
from bottle_engine.bundle.egress_policy import EgressPolicy
from bottle_engine.errors import BottleError
from bottle_engine.manifest import Manifest, load_manifest_file, load_manifest_text
from bottle_engine.manifest.model import GitUpstream
from bottle_engine.manifest.schema import INTERCEPT_ALL, INTERCEPT_SECRETS
from bottle_engine.plan import (
    DEFAULT_SUBNET_POOL,
    MAX_INSTANCES,
    PROMPT_PATH,
    BottlePlan,
    base_slug,
    choose_subnet,
    instance_slugs,
    manifest_reads,
    placeholder_for,
    plan_bottle,
    protected_paths,
)

CORPUS = Path(__file__).resolve().parent.parent / "manifests" / "good"
REAL_SECRET = "sk-ant-REAL-VALUE-never-in-a-plan-0123456789"


def corpus(name: str) -> Manifest:
    return load_manifest_file(CORPUS / name).require()


def manifest_from(text: str, directory: Path) -> Manifest:
    (directory / "Dockerfile").write_text("FROM scratch\n")
    return load_manifest_text(text, directory / "bottle.toml").require()


@pytest.fixture
def full(monkeypatch: pytest.MonkeyPatch) -> BottlePlan:
    """The every-field manifest's reviewer, with its from_env secret set in the environment."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_SECRET)
    return plan_bottle(corpus("full.toml"), "reviewer")


# -- slugs -----------------------------------------------------------------------------------------


def test_slug_is_stable_for_the_same_manifest_and_agent(tmp_path: Path) -> None:
    path = tmp_path / "bottle.toml"
    assert base_slug(path, "dev") == base_slug(path, "dev")
    assert base_slug(path, "dev") == base_slug(tmp_path / "." / "bottle.toml", "dev")


def test_slug_differs_per_manifest_location(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert base_slug(tmp_path / "a" / "bottle.toml", "dev") != base_slug(
        tmp_path / "b" / "bottle.toml", "dev"
    )


def test_slug_differs_per_agent_even_when_the_names_read_alike(tmp_path: Path) -> None:
    path = tmp_path / "bottle.toml"
    slugs = {base_slug(path, name) for name in ("dev", "a.b", "a_b", "a-b", "A-B")}
    assert len(slugs) == 5


def test_slug_is_readable_and_safe_for_container_names(tmp_path: Path) -> None:
    path = tmp_path / "bottle.toml"
    assert base_slug(path, "Code.Reviewer_2").startswith("code-reviewer-2-")
    assert base_slug(path, "___").startswith("agent-")
    long_slug = base_slug(path, "x" * 100)
    assert len(long_slug) <= 47
    for slug in (base_slug(path, "Code.Reviewer_2"), long_slug):
        assert all(c.isalnum() or c == "-" for c in slug) and slug == slug.lower()


def test_plan_uses_the_base_slug_unless_given_one(full: BottlePlan) -> None:
    manifest = corpus("full.toml")
    assert full.slug == base_slug(manifest.path, "reviewer")
    assert plan_bottle(manifest, "reviewer", slug="custom-2").slug == "custom-2"


def test_instance_slugs_count_up_from_the_base() -> None:
    slugs = list(instance_slugs("dev-abc123"))
    assert slugs[:3] == ["dev-abc123", "dev-abc123-2", "dev-abc123-3"]
    assert slugs[-1] == f"dev-abc123-{MAX_INSTANCES}"
    assert len(slugs) == len(set(slugs)) == MAX_INSTANCES


def test_names_derive_from_the_slug(full: BottlePlan) -> None:
    assert full.name == f"bottle-{full.slug}"
    assert full.bundle_name == f"bottle-{full.slug}-bundle"
    assert full.internal_network == f"bottle-{full.slug}-internal"
    assert full.egress_network == f"bottle-{full.slug}-egress"


# -- subnets and addresses -------------------------------------------------------------------------


def test_subnet_is_a_28_inside_the_pool_derived_from_the_slug() -> None:
    pool = ipaddress.IPv4Network(DEFAULT_SUBNET_POOL)
    subnet = choose_subnet("dev-abc123")
    assert subnet.prefixlen == 28 and subnet.subnet_of(pool)
    assert choose_subnet("dev-abc123") == subnet
    others = {choose_subnet(f"dev-{n}") for n in range(20)}
    assert len(others) > 10, "different slugs spread over the pool"


def test_subnet_moves_past_taken_networks() -> None:
    first = choose_subnet("dev-abc123")
    second = choose_subnet("dev-abc123", taken=[first])
    assert second != first and not second.overlaps(first)
    # A taken network that merely overlaps (a larger one around it) counts as taken.
    around = ipaddress.IPv4Network((int(first.network_address) & ~0xFF, 24))
    moved = choose_subnet("dev-abc123", taken=[around, ipaddress.IPv6Network("fd00::/64")])
    assert not moved.overlaps(around)


def test_subnet_honours_a_small_pool() -> None:
    pool = "10.99.0.0/27"  # room for exactly two /28s
    first = choose_subnet("x", pool)
    second = choose_subnet("x", pool, taken=[first])
    assert {first, second} == set(ipaddress.IPv4Network(pool).subnets(new_prefix=28))


def test_exhausted_pool_is_an_error_naming_the_way_out() -> None:
    with pytest.raises(BottleError) as raised:
        choose_subnet("x", "10.99.0.0/27", taken=[ipaddress.IPv4Network("10.99.0.0/24")])
    assert "10.99.0.0/27" in raised.value.message
    assert raised.value.fix and "BOTTLE_SUBNET_POOL" in raised.value.fix


@pytest.mark.parametrize(
    "pool", ["not-a-network", "10.99.0.1/24", "fd00::/64", "10.99.0.0/29", "10.99.0.0/33"]
)
def test_invalid_pool_is_an_error_naming_the_pool(pool: str) -> None:
    with pytest.raises(BottleError) as raised:
        choose_subnet("x", pool)
    assert pool in raised.value.message
    assert raised.value.fix


def test_plan_takes_the_subnet_pool_and_taken_networks(tmp_path: Path) -> None:
    manifest = corpus("minimal.toml")
    plan = plan_bottle(manifest, "dev", subnet_pool="10.99.0.0/27")
    other = plan_bottle(manifest, "dev", subnet_pool="10.99.0.0/27", taken_subnets=[plan.subnet])
    assert plan.subnet != other.subnet
    assert other.subnet.subnet_of(ipaddress.IPv4Network("10.99.0.0/27"))


def test_gateway_bundle_and_agent_addresses_are_fixed_offsets(full: BottlePlan) -> None:
    base = full.subnet.network_address
    assert full.gateway_ip == str(base + 1)
    assert full.bundle_ip == str(base + 2)
    assert full.agent_ip == str(base + 3)
    assert ipaddress.IPv4Address(full.bundle_ip) in full.subnet


# -- what the agent sees ---------------------------------------------------------------------------


def test_proxy_variables_are_ip_literals_on_the_egress_port(full: BottlePlan) -> None:
    """The agent has no DNS, so every URL it is given names the bundle by address."""
    env = full.guest_env
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == f"http://{full.bundle_ip}:{EGRESS_PORT}"
    assert EGRESS_PORT == 8888
    assert env["GIT_GATE_URL"].startswith(f"git://{full.bundle_ip}:")
    ipaddress.ip_address(env["HTTP_PROXY"].removeprefix("http://").rsplit(":", 1)[0])
    assert env["NO_PROXY"].split(",")[0] == full.bundle_ip


def test_manifest_env_cannot_override_the_proxy(tmp_path: Path) -> None:
    manifest = manifest_from(
        "[agents.dev]\n[bottles.default]\n"
        'env = { HTTPS_PROXY = "http://elsewhere:1", LANG = "C" }\n',
        tmp_path,
    )
    env = plan_bottle(manifest, "dev").guest_env
    assert env["LANG"] == "C"
    assert env["HTTPS_PROXY"].endswith(f":{EGRESS_PORT}")
    assert "elsewhere" not in json.dumps(env)


def test_secrets_appear_only_as_placeholders(full: BottlePlan) -> None:
    secrets = {s.name: s for s in full.secrets}
    assert set(secrets) == {"ANTHROPIC_API_KEY", "GITHUB_TOKEN"}
    for name, secret in secrets.items():
        assert full.guest_env[name] == secret.placeholder
        assert secret.placeholder.startswith("bbph_")
    everything = json.dumps(full.to_json()) + full.bundle_config().to_json()
    assert REAL_SECRET not in everything
    assert "corpus stand-in" not in everything  # the from_file secret's content


def test_a_secret_placeholder_wins_over_a_manifest_env_of_the_same_name(tmp_path: Path) -> None:
    manifest = manifest_from(
        "[agents.dev]\n[bottles.default]\n"
        'env = { TOKEN = "literal" }\negress.allow = ["example.com"]\n'
        '[bottles.default.secrets.TOKEN]\nfrom_env = "TOKEN"\nhosts = ["example.com"]\n',
        tmp_path,
    )
    plan = plan_bottle(manifest, "dev")
    assert plan.guest_env["TOKEN"] == plan.secrets[0].placeholder


def test_placeholders_are_unique_per_launch_and_per_secret() -> None:
    assert placeholder_for("TOKEN", "launch-1") == placeholder_for("TOKEN", "launch-1")
    assert placeholder_for("TOKEN", "launch-1") != placeholder_for("TOKEN", "launch-2")
    assert placeholder_for("TOKEN", "launch-1") != placeholder_for("OTHER", "launch-1")
    manifest = corpus("full.toml")
    one = plan_bottle(manifest, "reviewer", launch_token="a").secrets[0].placeholder
    two = plan_bottle(manifest, "reviewer", launch_token="b").secrets[0].placeholder
    assert one != two


def test_supervise_url_only_when_supervised(full: BottlePlan) -> None:
    assert full.supervise
    supervise_url = f"http://{full.bundle_ip}:{SUPERVISE_PORT}/mcp"
    assert full.guest_env["MCP_SUPERVISE_URL"] == supervise_url
    plain = plan_bottle(corpus("minimal.toml"), "dev")
    assert not plain.supervise
    assert "MCP_SUPERVISE_URL" not in plain.guest_env


def test_prompt_file_is_announced_only_when_there_is_a_prompt(full: BottlePlan) -> None:
    assert full.guest_env["BOTTLE_PROMPT_FILE"] == PROMPT_PATH
    assert "BOTTLE_PROMPT_FILE" not in plan_bottle(corpus("minimal.toml"), "dev").guest_env


def test_claude_gets_the_prompt_appended_to_its_system_prompt(full: BottlePlan) -> None:
    command = full.agent_command
    assert command[:2] == ("sh", "-c")
    assert "--append-system-prompt" in command[2] and PROMPT_PATH in command[2]
    assert command[-3:] == ("claude", "--model", "sonnet")


def test_other_commands_and_prompt_less_agents_run_as_written(tmp_path: Path) -> None:
    assert plan_bottle(corpus("minimal.toml"), "dev").agent_command == ("claude",)
    manifest = manifest_from(
        '[agents.dev]\nprompt = "hi"\ncommand = ["bash", "-l"]\n[bottles.default]\n', tmp_path
    )
    assert plan_bottle(manifest, "dev").agent_command == ("bash", "-l")


# -- what the bundle gets --------------------------------------------------------------------------


def test_bundle_config_carries_secret_file_paths_not_values(full: BottlePlan) -> None:
    config = full.bundle_config()
    bindings = {b.name: b for b in config.secrets}
    assert bindings["ANTHROPIC_API_KEY"].value_file == str(SECRETS_MOUNT / "ANTHROPIC_API_KEY")
    assert bindings["GITHUB_TOKEN"].value_file == str(SECRETS_MOUNT / "GITHUB_TOKEN")
    assert bindings["ANTHROPIC_API_KEY"].hosts == ("api.anthropic.com",)
    assert bindings["ANTHROPIC_API_KEY"].placeholder == full.guest_env["ANTHROPIC_API_KEY"]
    assert REAL_SECRET not in config.to_json()


def test_bundle_config_carries_the_headers_each_secret_may_go_in(full: BottlePlan) -> None:
    """Claude Code sends an API key in x-api-key, an OAuth token in Authorization: the default
    covers both; a manifest's own list replaces it."""
    bindings = {b.name: b for b in full.bundle_config().secrets}
    assert {"Authorization", "X-Api-Key"} <= set(bindings["ANTHROPIC_API_KEY"].headers)
    assert bindings["GITHUB_TOKEN"].headers == ("Authorization",)
    again = BundleConfig.from_json(full.bundle_config().to_json())
    assert again.secrets == full.bundle_config().secrets


def test_bundle_config_mirrors_the_plan(full: BottlePlan) -> None:
    config = full.bundle_config()
    assert (config.slug, config.bundle_ip, config.agent_subnet) == (
        full.slug,
        full.bundle_ip,
        str(full.subnet),
    )
    assert config.egress_allow == full.egress_allow
    assert config.bottle_name == full.bottle == "default"  # named in the proxy's fix hints
    assert config.supervise is True
    origin, docs = config.git
    assert origin.name == "origin" and origin.push_branches == ("bot/*", "release-[0-9]*")
    assert origin.identity_file == str(GIT_KEYS_MOUNT / "origin.key")
    assert origin.known_hosts_file == str(GIT_KEYS_MOUNT / "origin.known_hosts")
    assert docs.identity_file is None and docs.known_hosts_file is None


def test_the_git_gate_guards_the_files_the_manifest_reads(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.md").write_text("Review.\n")
    manifest = manifest_from(
        '[agents.a]\nprompt_file = "agents/a.md"\n[bottles.b]\ncontext = "."\n'
        '[bottles.b.secrets.T]\nfrom_file = "~/.t"\nhosts = ["x.invalid"]\n'
        '[[bottles.b.git]]\nname = "origin"\nurl = "/srv/r.git"\n',
        tmp_path,
    )

    paths = protected_paths(manifest_reads(manifest), tmp_path)
    plan = plan_bottle(manifest, "a", git_protected_paths=paths)

    assert paths == (
        "bottle.toml",
        "Dockerfile",
        "Dockerfile.dockerignore",
        ".dockerignore",
        "agents/a.md",
    )
    [origin] = plan.bundle_config().git
    assert origin.protected_paths == paths and origin.allow_manifest_changes is False
    assert origin.allow_ci_changes is False


@dataclass(frozen=True)
class _GitWithBound(GitUpstream):
    max_push_bytes: int = 0  # a key the gate's config has and the manifest does not (yet)


def test_every_push_policy_key_the_manifest_and_the_gate_share_reaches_the_gate(
    tmp_path: Path,
) -> None:
    manifest = manifest_from(
        '[agents.a]\n[bottles.b]\n[[bottles.b.git]]\nname = "origin"\nurl = "/srv/r.git"\n'
        'push_branches = ["a/*"]\nallow_force_push = true\nallow_delete = true\n'
        "allow_manifest_changes = true\nallow_ci_changes = true\n",
        tmp_path,
    )
    plan = plan_bottle(manifest, "a")
    plan = replace(
        plan, git=tuple(_GitWithBound(**{**g.__dict__, "max_push_bytes": 9}) for g in plan.git)
    )
    [origin] = plan.bundle_config().git
    assert (origin.name, origin.url, origin.push_branches) == ("origin", "/srv/r.git", ("a/*",))
    assert origin.allow_force_push and origin.allow_delete and origin.allow_manifest_changes
    assert origin.allow_ci_changes
    assert origin.max_push_bytes == 9


def test_plan_json_lists_what_a_launch_needs(full: BottlePlan) -> None:
    data = full.to_json()
    assert data["bundle_ip"] == full.bundle_ip and data["subnet"] == str(full.subnet)
    assert data["resources"] == {"cpus": 1.5, "memory_bytes": 4 * 1024**3}
    assert data["image"]["dockerfile"] == str(CORPUS / "Dockerfile")
    assert data["image"]["build_args"] == {"CLAUDE_CODE_VERSION": "2.0.0"}
    assert [s["name"] for s in data["secrets"]] == ["ANTHROPIC_API_KEY", "GITHUB_TOKEN"]
    assert json.loads(json.dumps(data)) == data, "plain JSON values only"


# -- choosing agent and backend --------------------------------------------------------------------


def test_the_only_bottle_is_used_when_the_agent_names_none() -> None:
    assert plan_bottle(corpus("minimal.toml"), "dev").bottle == "default"


def test_each_agent_runs_in_its_own_bottle() -> None:
    manifest = corpus("two_bottles.toml")
    builder = plan_bottle(manifest, "builder")
    browser = plan_bottle(manifest, "browser")
    assert (builder.bottle, builder.backend, builder.memory_bytes) == (
        "build",
        "smolmachines",
        512 * 1024**2,
    )
    assert (browser.bottle, browser.backend, browser.runtime) == ("web", "docker", "runsc")


def test_unknown_agent_error_lists_the_defined_agents() -> None:
    with pytest.raises(BottleError) as raised:
        plan_bottle(corpus("full.toml"), "reviwer")
    assert "'reviwer'" in raised.value.message
    assert "reviewer, writer" in raised.value.message


def test_backend_override_replaces_the_manifest_backend() -> None:
    manifest = corpus("minimal.toml")
    assert plan_bottle(manifest, "dev").backend == "docker"
    assert plan_bottle(manifest, "dev", backend_override="smolmachines").backend == "smolmachines"
    assert plan_bottle(manifest, "dev", backend_override="").backend == "docker"


def test_unknown_backend_override_is_an_error_naming_the_variable() -> None:
    with pytest.raises(BottleError) as raised:
        plan_bottle(corpus("minimal.toml"), "dev", backend_override="podman")
    assert "BOTTLE_BACKEND" in raised.value.message and "podman" in raised.value.message
    assert raised.value.fix and "docker" in raised.value.fix


@given(
    slug=st.text(min_size=1, max_size=20),
    prefix=st.integers(min_value=20, max_value=28),
    taken_indices=st.sets(st.integers(min_value=0, max_value=255), max_size=40),
)
def test_chosen_subnet_is_always_free_and_inside_the_pool(
    slug: str, prefix: int, taken_indices: set[int]
) -> None:
    pool = ipaddress.IPv4Network(f"10.64.0.0/{prefix}")
    slots = list(pool.subnets(new_prefix=28))
    taken = [slots[index] for index in taken_indices if index < len(slots)]
    if len(taken) == len(slots):
        with pytest.raises(BottleError):
            choose_subnet(slug, str(pool), taken)
        return
    subnet = choose_subnet(slug, str(pool), taken)
    assert subnet.prefixlen == 28 and subnet.subnet_of(pool)
    assert not any(subnet.overlaps(other) for other in taken)


def test_protected_paths_are_relative_to_the_repository_holding_the_manifest(
    tmp_path: Path,
) -> None:
    import subprocess

    from bottle_engine.lifecycle import git_protected_paths

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "ops").mkdir()
    manifest = manifest_from(
        '[agents.a]\n[bottles.b]\n[[bottles.b.git]]\nname = "origin"\nurl = "/srv/r.git"\n',
        tmp_path / "ops",
    )

    paths = git_protected_paths(manifest)

    assert paths[:2] == ("ops/bottle.toml", "ops/Dockerfile")


def test_every_link_on_the_way_to_a_file_the_manifest_reads_is_protected(
    tmp_path: Path,
) -> None:
    """docker -> build, build -> ../repo/real (a chain, through '..'): retargeting either
    link changes which Dockerfile a launch builds, so both are guarded where they stand."""
    import subprocess

    from bottle_engine.lifecycle import git_protected_paths, links_on_the_way

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "real").mkdir()
    (repo / "real" / "Dockerfile").write_text("FROM scratch\n")
    (repo / "build").symlink_to("../repo/real")
    (repo / "docker").symlink_to("build")
    (repo / "loop").symlink_to("loop")
    manifest = load_manifest_text(
        '[agents.a]\n[bottles.b]\ndockerfile = "docker/Dockerfile"\n'
        '[[bottles.b.git]]\nname = "origin"\nurl = "/srv/r.git"\n',
        repo / "bottle.toml",
    ).require()

    paths = git_protected_paths(manifest)

    assert {"docker/Dockerfile", "real/Dockerfile", "docker", "build"} <= set(paths)
    assert links_on_the_way(repo / "docker" / "Dockerfile") == [repo / "docker", repo / "build"]
    assert set(links_on_the_way(repo / "loop" / "a.md")) == {repo / "loop"}  # a loop ends


def test_which_tunnels_the_proxy_opens_reaches_the_bundle(tmp_path: Path) -> None:
    """`[egress] intercept`: the plan, `plan --json` and the bundle's config agree; the
    default opens only a secret's host's tunnels."""
    text = '[agents.a]\n[bottles.b]\ncontext = "."\n[bottles.b.egress]\nallow = ["x.test"]\n'
    default = plan_bottle(manifest_from(text, tmp_path), "a")
    assert default.bundle_config().egress_intercept == INTERCEPT_SECRETS
    opened = plan_bottle(manifest_from(text + 'intercept = "all"\n', tmp_path), "a")
    assert opened.to_json()["egress_intercept"] == INTERCEPT_ALL
    config = BundleConfig.from_json(opened.bundle_config().to_json())
    assert config.egress_intercept == INTERCEPT_ALL
    assert EgressPolicy.from_config(config).intercept_all


def test_a_bundle_config_naming_an_unknown_interception_is_refused(full: BottlePlan) -> None:
    """A bundle that read an unknown mode as the default would open fewer tunnels than its
    bottle asked for: it refuses the config instead."""
    raw = json.loads(full.bundle_config().to_json())
    with pytest.raises(ValueError, match="egress_intercept"):
        BundleConfig.from_json(json.dumps({**raw, "egress_intercept": "everything"}))
