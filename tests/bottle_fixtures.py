"""Session fixtures for whole bottles on the real daemon (registered as a pytest plugin).

The test world, all created here and removed afterwards:

* an "outside" network with two test hosts of ours: `upstream` (on the allowlist, as
  upstream.test) and `stranger` (not on it), each a tiny HTTP server;
* a server on this host, on all addresses, that no bottle may reach;
* a manifest whose bottle uses that outside network as its way out
  (BOTTLE_EGRESS_NETWORK) and maps the test names in the bundle (BOTTLE_BUNDLE_HOSTS).

Nothing here addresses anything but those hosts and the bottles' own networks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.bundle_helpers import build_bundle_image

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_LABEL = {"bot-bottle.test": "1"}
HTTP_PORT = 8000
TEST_SECONDS = 900  # how long `agent_exec` waits for a test's command (probes wait 60 s)


@dataclass(frozen=True)
class OutsideWorld:
    network: str
    upstream_ip: str
    stranger_ip: str
    host_port: int


@dataclass(frozen=True)
class BottleWorld:
    """Everything a bottle test needs: the manifest, its env, and where state lives."""

    manifest: Path
    env: dict[str, str]
    state_dir: Path
    outside: OutsideWorld
    secret_value: str


class _Quiet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host service\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def host_server() -> Iterator[int]:
    """A server on this host (all addresses): the kind of service a bottle must not reach."""
    server = ThreadingHTTPServer(("0.0.0.0", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def bundle_image(docker_client: Any, base_image: str, session_cache_dir: Path) -> str:
    return build_bundle_image(docker_client, base_image, session_cache_dir)


@pytest.fixture(scope="session")
def outside_world(
    docker_client: Any, bundle_image: str, host_server: int
) -> Iterator[OutsideWorld]:
    run_id = uuid.uuid4().hex[:8]
    network = docker_client.networks.create(f"bbtest-outside-{run_id}", labels=TEST_LABEL)
    hosts = []
    try:
        for role in ("upstream", "stranger"):
            container = docker_client.containers.run(
                bundle_image,
                entrypoint=["python3", "-m", "http.server", str(HTTP_PORT), "-d", "/tmp"],
                name=f"bbtest-{role}-{run_id}",
                network=network.name,
                labels=TEST_LABEL,
                detach=True,
            )
            hosts.append(container)
        ips = []
        for container in hosts:
            container.reload()
            ips.append(container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"])
        yield OutsideWorld(network.name, ips[0], ips[1], host_server)
    finally:
        from bottle_engine.dockerapi.networks import remove_network

        for container in hosts:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        # Disconnects whatever a failed test left on it (a bundle's outbound side), then removes.
        remove_network(docker_client, network.name)


# Agents that only keep their sandbox up, one per user of the world, so that no test ever sees
# another test's bottle among its own: name -> extra keys. probe: the escape suite; twin and
# victim: concurrent and interrupted launches; lifecycle: guest files, stop/resume; editor: the
# LSP test; sandbox and diskfill: gVisor's tests; logfill: the host-share suite.
SLEEPING_AGENTS = {
    "probe": "copy_cwd = false",
    "twin": "copy_cwd = false",
    "victim": "copy_cwd = false",
    "lifecycle": 'copy_cwd = true\nprompt = "Review only."\nskills = ["review"]',
    "editor": "copy_cwd = false",
    "sandbox": "copy_cwd = false",
    "diskfill": "copy_cwd = false",
    "logfill": "copy_cwd = false",
    "door": "copy_cwd = false",
}


def sleeping_agent(name: str, extra: str = "copy_cwd = false") -> str:
    """An agent table whose command only keeps its sandbox up (TOML, no format fields)."""
    return f'[agents.{name}]\ncommand = ["sleep", "infinity"]\n{extra}\n\n'


def bottle_table(name: str = "default") -> str:
    """The bottle every test manifest runs its agents in: the repository's own agent image,
    small limits. A format template: `{repo}` is filled with REPO_ROOT with the rest of the
    manifest."""
    return (
        f"[bottles.{name}]\n"
        'dockerfile = "{repo}/Dockerfile"\n'
        'context = "{repo}"\n'
        'memory = "512m"\n'
        "cpus = 1\n"
    )


TEST_BOTTLE = bottle_table()


def world_secret_table(bottle: str = "default") -> str:
    """The world's secret bound to upstream.test: TEST_TOKEN, whose real value the world puts in
    BOTTLE_TEST_TOKEN (BottleWorld.secret_value). A format template: `{port}` is HTTP_PORT."""
    return (
        f"[bottles.{bottle}.secrets.TEST_TOKEN]\n"
        'from_env = "BOTTLE_TEST_TOKEN"\n'
        'hosts = ["upstream.test:{port}"]\n'
    )


def one_agent_manifest(agent: str, tables: str, bottle: str = "default") -> str:
    """A manifest template of one sleeping `agent` in the test bottle `bottle`, followed by
    `tables` (that bottle's egress, secrets, git). Format fields: those of bottle_table and
    world_secret_table, and whatever `tables` names."""
    return sleeping_agent(agent) + bottle_table(bottle) + "\n" + tables


MANIFEST = (
    "".join(sleeping_agent(name, extra) for name, extra in SLEEPING_AGENTS.items())
    + """\
[agents.neighbour]
bottle = "default"
command = ["node", "-e", "require('http').createServer((q, s) => s.end('hi')).listen(8080)"]
copy_cwd = false

[agents.talker]
command = ["sh", "-c", "echo before; sleep 3; echo after; exit 7"]
copy_cwd = false

"""
    + TEST_BOTTLE
    + """
[bottles.default.egress]
allow = ["upstream.test:{port}", "{upstream_ip}/32:{port}"]

"""
    + world_secret_table()
)


def make_world(
    directory: Path,
    manifest_text: str,
    outside: OutsideWorld,
    *,
    base_image: str,
    cache_dir: Path,
    bundle_hosts: str,
    secrets_env: dict[str, str],
    secret_value: str,
) -> BottleWorld:
    """A world whose bottle.toml (in `directory`, state beside it) is `manifest_text`: its
    bottles leave by the outside network, the bundle maps `bundle_hosts` (NAME=ADDRESS,...),
    the real secret values the manifest names come from `secrets_env`, and images are built
    on `base_image` into the shared `cache_dir`."""
    manifest = directory / "bottle.toml"
    manifest.write_text(manifest_text)
    env = {
        "BOTTLE_BASE_IMAGE": base_image,
        "BOTTLE_CACHE_DIR": str(cache_dir),
        "BOTTLE_STATE_DIR": str(directory / "state"),
        "BOTTLE_EGRESS_NETWORK": outside.network,
        "BOTTLE_BUNDLE_HOSTS": bundle_hosts,
        **secrets_env,
    }
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        env["BOTTLE_CA_BUNDLE"] = "/etc/ssl/certs/ca-certificates.crt"
    return BottleWorld(manifest, env, directory / "state", outside, secret_value)


@pytest.fixture(scope="session")
def bottle_world(
    tmp_path_factory: pytest.TempPathFactory,
    outside_world: OutsideWorld,
    base_image: str,
    session_cache_dir: Path,
) -> BottleWorld:
    secret_value = "real-secret-" + secrets.token_hex(12)
    return make_world(
        tmp_path_factory.mktemp("bottle-world"),
        MANIFEST.format(repo=REPO_ROOT, port=HTTP_PORT, upstream_ip=outside_world.upstream_ip),
        outside_world,
        base_image=base_image,
        cache_dir=session_cache_dir,
        bundle_hosts=(
            f"upstream.test={outside_world.upstream_ip},stranger.test={outside_world.stranger_ip}"
        ),
        secrets_env={"BOTTLE_TEST_TOKEN": secret_value},
        secret_value=secret_value,
    )


def world_for(
    world: BottleWorld,
    directory: Path,
    manifest_template: str,
    *,
    bundle_hosts: str | None = None,
    **fields: object,
) -> BottleWorld:
    """`world` with a manifest of its own, for a suite whose bottle differs from the shared one:
    `manifest_template` filled with REPO_ROOT, HTTP_PORT and `fields`, written to
    `directory`/bottle.toml. `bundle_hosts` (NAME=ADDRESS,...), if given, replaces the names the
    bundle maps."""
    manifest = directory / "bottle.toml"
    manifest.write_text(manifest_template.format(repo=REPO_ROOT, port=HTTP_PORT, **fields))
    env = world.env if bundle_hosts is None else {**world.env, "BOTTLE_BUNDLE_HOSTS": bundle_hosts}
    return replace(world, manifest=manifest, env=env)


@contextlib.contextmanager
def world_env(world: BottleWorld) -> Iterator[None]:
    """The world's environment, for code that runs in this process."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in world.env.items():
            patch.setenv(name, value)
        yield


def audit_log(world: BottleWorld, record: Any) -> Path:
    """Where the bundle of `record`, a bottle of `world`, writes its egress audit log."""
    from bottle_engine import state

    with world_env(world):
        return state.bottle_dir(record.slug) / "egress.jsonl"


def agent_exec(world: BottleWorld, record: Any, argv: list[str]) -> tuple[int, str]:
    """Run `argv` in a bottle of the world as its agent would: (exit code, the end of its
    output); a test's command may take as long as a test may."""
    from bottle_engine.backends import backend_named

    with world_env(world):
        code, output = backend_named("docker").exec_as_agent(record, argv, seconds=TEST_SECONDS)
    return int(code), str(output)


# BOTTLE_TEST_POOLED=1: every bottle of `running_bottle` (the escape suite's among them) is
# launched from a warm pool member made for it just before, and the test fails if it was not.
POOLED = os.environ.get("BOTTLE_TEST_POOLED") == "1"


@contextlib.contextmanager
def running_bottle(world: BottleWorld, agent: str) -> Iterator[Any]:
    """A bottle launched for `agent`, stopped and removed afterwards whatever happens."""
    from bottle_engine import lifecycle

    with world_env(world):
        if POOLED:
            lifecycle.pool_fill(world.manifest, agent, 1)
        record = lifecycle.launch(world.manifest, agent, cwd=world.manifest.parent)
        if POOLED:
            gateway = record.resources.gateway
            assert gateway and gateway.pool_member, "not launched from the pool"
    try:
        yield record
    finally:
        with world_env(world):
            lifecycle.stop(record.slug, remove=True)


@pytest.fixture(scope="session")
def probe_bottle(bottle_world: BottleWorld) -> Iterator[Any]:
    with running_bottle(bottle_world, "probe") as record:
        yield record


@pytest.fixture(scope="session")
def neighbour_bottle(bottle_world: BottleWorld) -> Iterator[Any]:
    with running_bottle(bottle_world, "neighbour") as record:
        yield record


def labelled_leftovers(client: Any, slug_prefix: str) -> list[str]:
    """Containers and networks of bottles whose slug starts with `slug_prefix`."""
    names = [
        c.name
        for c in client.containers.list(all=True, filters={"label": "bot-bottle.slug"})
        if c.labels.get("bot-bottle.slug", "").startswith(slug_prefix)
    ]
    names += [
        n.name
        for n in client.networks.list(filters={"label": "bot-bottle.slug"})
        if (n.attrs.get("Labels") or {}).get("bot-bottle.slug", "").startswith(slug_prefix)
    ]
    return names
