"""`EngineSettings`: the environment read in one place, so `plan`, `build` and `launch` agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.artifacts.spec import BuildSpec
from bottle_engine.backends import backend_named
from bottle_engine.backends.docker import DockerBackend
from bottle_engine.cli import main
from bottle_engine.cli.build import build_spec_for
from bottle_engine.errors import BottleError
from bottle_engine.progress import QuietProgress
from bottle_engine.settings import DEFAULT_SUBNET_POOL, EngineSettings

MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "good" / "minimal.toml"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    settings = EngineSettings.from_env(
        {
            "HOME": str(tmp_path),
            "BOTTLE_SUBNET_POOL": "10.99.0.0/24",
            "BOTTLE_BACKEND": "smolmachines",
            "BOTTLE_RUNTIME": "runc",
            "BOTTLE_EGRESS_NETWORK": "shared-out",
            "BOTTLE_BUNDLE_HOSTS": "git.internal=10.1.2.3, upstream.test=10.1.2.4",
            "BOTTLE_CA_BUNDLE": "/etc/ca.pem",
            "BOTTLE_BASE_IMAGE": "mine:1",
            "BOTTLE_CACHE_DIR": "/c",
            "BOTTLE_STATE_DIR": "/s",
            "BOTTLE_SMOLVM": "/opt/smolvm",
            "BOTTLE_SMOLVM_STATE_DIR": "/sv",
            "BOTTLE_REGISTRY_IMAGE": "registry:local",
            "BOTTLE_ARTIFACT_REGISTRY": "cache.lan/bb",
            "BOTTLE_ARTIFACT_REGISTRY_INSECURE": "1",
            "BOTTLE_LAYER_CACHE": "0",
            "DOCKER_CONFIG": "/d",
            "SOURCE_DATE_EPOCH": "1700000000",
        }
    )
    assert settings == EngineSettings(
        subnet_pool="10.99.0.0/24",
        backend="smolmachines",
        runtime="runc",
        egress_network="shared-out",
        bundle_hosts={"git.internal": "10.1.2.3", "upstream.test": "10.1.2.4"},
        ca_bundle=Path("/etc/ca.pem"),
        base_image="mine:1",
        cache_dir=Path("/c"),
        state_dir=Path("/s"),
        smolvm="/opt/smolvm",
        smolvm_state_dir="/sv",
        registry_image="registry:local",
        artifact_registry="cache.lan/bb",
        artifact_registry_insecure=True,
        layer_cache=False,
        docker_config_dir=Path("/d"),
        source_date_epoch="1700000000",
    )
    assert settings.clamp_time() == 1700000000


def test_the_lower_modules_take_their_values_from_the_settings(tmp_path: Path) -> None:
    """smolvm, the registry container and the shared cache read no environment of their own."""
    from bottle_engine.artifacts.remote import RemoteCache
    from bottle_engine.dockerapi.registry_container import DEFAULT_REGISTRY_IMAGE, registry_image
    from bottle_engine.smolvm import Smolvm, SmolvmInfo, find_binary

    binary = tmp_path / "smolvm"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    settings = EngineSettings(
        smolvm=str(binary),
        smolvm_state_dir="/sv",
        registry_image="registry:local",
        artifact_registry="cache.lan/bb",
    )
    assert find_binary(settings) == binary.resolve()
    info = SmolvmInfo(binary, "1.0", accepts_archives=True, error_format_json=False)
    assert Smolvm(info, settings=settings).command(["machine", "ls"]) == [
        str(binary),
        "--state-dir",
        "/sv",
        "machine",
        "ls",
    ]
    assert registry_image(settings) == "registry:local"
    assert registry_image(EngineSettings()) == DEFAULT_REGISTRY_IMAGE
    cache = RemoteCache.from_settings(settings)
    assert cache is not None and cache.location.host == "cache.lan"
    assert RemoteCache.from_settings(EngineSettings()) is None


def test_unset_and_empty_variables_leave_the_defaults() -> None:
    settings = EngineSettings.from_env({"BOTTLE_BACKEND": "", "BOTTLE_EGRESS_NETWORK": " "})
    assert settings.backend is None and settings.egress_network is None
    assert settings.subnet_pool == DEFAULT_SUBNET_POOL and settings.bundle_hosts == {}


def test_a_tilde_in_the_ca_bundle_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    settings = EngineSettings.from_env({"BOTTLE_CA_BUNDLE": "~/ca.pem"})
    assert settings.ca_bundle == Path("/home/someone/ca.pem")
    assert EngineSettings().ca_bundle_for("~/cli.pem", None) == Path("/home/someone/cli.pem")


@pytest.mark.parametrize(
    ("variable", "value", "fix_names"),
    [
        ("BOTTLE_BACKEND", "nope", "docker"),
        ("BOTTLE_RUNTIME", "kata", "runsc"),
        ("BOTTLE_BUNDLE_HOSTS", "git.internal", "NAME=ADDRESS"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(
    variable: str, value: str, fix_names: str
) -> None:
    with pytest.raises(BottleError) as raised:
        EngineSettings.from_env({variable: value})
    assert variable in raised.value.message and value in raised.value.message
    assert raised.value.fix and (fix_names in raised.value.fix or fix_names in raised.value.message)


def test_an_unknown_backend_name_is_an_error_not_docker() -> None:
    with pytest.raises(BottleError) as raised:
        backend_named("nope")
    assert "'nope' is not a backend" in raised.value.message
    assert raised.value.fix and "docker" in raised.value.fix


def test_launch_with_an_unknown_bottle_backend_stops_before_any_backend(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_BACKEND", "nope")
    monkeypatch.setattr(lifecycle, "backend_named", _no_backend)
    code, _, err = cli(capsys, "launch", "dev", "-f", str(MANIFEST), "--detach", "--trust")
    assert code == 1 and "BOTTLE_BACKEND 'nope' is not a backend" in err


def _no_backend(name: str, settings: object = None) -> object:
    raise AssertionError("a bad setting must stop the launch before a backend")


def test_plan_json_names_the_egress_network_launch_uses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_EGRESS_NETWORK", "shared-out")
    code, out, _ = cli(capsys, "plan", "dev", "--json", "-f", str(MANIFEST))
    assert code == 0
    planned = json.loads(out)

    launched: list[Any] = []

    class Backend:
        def launch(self, planner: Any, progress: object, **_: object) -> object:
            launched.append(planner(planner.base_slug))
            return "launched"

    monkeypatch.setattr(lifecycle, "backend_named", lambda name, settings=None: Backend())
    lifecycle.launch(MANIFEST, "dev", trust=True)
    assert planned["networks"]["egress"] == launched[0].egress_network == "shared-out"
    assert planned["subnet"] == str(launched[0].subnet)


def test_build_and_launch_read_a_tilde_ca_bundle_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.pem").write_text(PEM)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BOTTLE_CA_BUNDLE", "~/ca.pem")
    monkeypatch.setenv("BOTTLE_BASE_IMAGE", "mine:1")

    built = build_spec_for(str(MANIFEST), "dev", None, EngineSettings.from_env())

    specs: list[BuildSpec] = []

    def ensure_artifact(client: object, spec: BuildSpec, **_: object) -> object:
        specs.append(spec)
        return object()

    monkeypatch.setattr("bottle_engine.backends.docker.ensure_artifact", ensure_artifact)
    planner = lifecycle.planner_for(MANIFEST, "dev")
    DockerBackend(client=object()).prepare(planner(planner.base_slug), QuietProgress())
    agent, bundle = specs
    assert built.ca_bundle == agent.ca_bundle == bundle.ca_bundle == tmp_path / "ca.pem"
    assert built.base_image == agent.base_image == bundle.base_image == "mine:1"
    assert built == agent
