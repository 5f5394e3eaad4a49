"""The agent image's build context and the bottle's real secret values.

The agent image is built from the bottle's `context` (by default the project beside
bottle.toml), filtered by `.dockerignore` only. A Dockerfile's everyday `COPY . /src` (or one
the agent wrote and the person merged) baked the secret's `from_file` (kept beside the
manifest), a git-ignored `.env` holding a `from_env` value, or a git history holding one into
the image, where the agent reads it. Images are reused by input key, so the context is checked
on every launch, not once when the image is built.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from bottle_engine.artifacts import prepare_inputs
from bottle_engine.artifacts.agent import agent_build_spec
from bottle_engine.artifacts.inputs import write_context_tar
from bottle_engine.bundle import secret_forms
from bottle_engine.errors import BottleError
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import BottlePlan, plan_bottle
from bottle_engine.progress import RecordingProgress
from bottle_engine.settings import EngineSettings
from tests.archive_attacks import ARCHIVED, dot_env
from tests.gate_attacks import ZSTD_KEY

BASE_DIGEST = "sha256:" + "b" * 64
INVENTED_VALUE = "rt41-invented-api-key-7c2d05"
MANIFEST = """\
[agents.a]
[bottles.b]
context = "."
{build_args}
[bottles.b.secrets.API_KEY]
{source}
hosts = ["api.example.invalid"]
"""
FROM_FILE = 'from_file = ".bottle/api-key"'
FROM_ENV = 'from_env = "RT41_API_KEY"'
SETTINGS = EngineSettings(base_image="bot-bottle/base:bookworm")


def plan_of(project: Path, source: str, build_args: str = "") -> BottlePlan:
    """The plan of a bottle whose image is built from `project` with `COPY . /src`."""
    text = MANIFEST.format(source=source, build_args=build_args)
    (project / "bottle.toml").write_text(text)
    (project / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM $BASE_IMAGE\nCOPY . /src\n")
    manifest = load_manifest_text(text, project / "bottle.toml").require()
    return plan_bottle(manifest, "a", cwd=project)


def sent_to_docker(plan: BottlePlan) -> bytes:
    """The context tar a launch of `plan` would send to `docker build` (and key the image by)."""
    inputs = prepare_inputs(agent_build_spec(plan, SETTINGS), BASE_DIGEST)
    out = io.BytesIO()
    write_context_tar(inputs, out)
    return out.getvalue()


def assert_refused(plan: BottlePlan, *named: str) -> None:
    """The launch of `plan` stops before its image is built or reused, naming `named` (files,
    the secret, the fix), never the value."""
    with pytest.raises(BottleError) as caught:
        sent_to_docker(plan)
    told = f"{caught.value.message}\n{caught.value.fix}"
    for name in named:
        assert name in told
    assert INVENTED_VALUE not in told


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project, the secret's `from_env` value set."""
    monkeypatch.setenv("RT41_API_KEY", INVENTED_VALUE)
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


def test_a_secrets_from_file_beside_the_manifest_is_not_in_the_agent_images_context(
    tmp_path: Path,
) -> None:
    """`.bottle/api-key`, the documented place of a `from_file`, under any name (a hard link)
    and whatever `.dockerignore` says of it (an exception `!` re-including it)."""
    project = tmp_path / "project"
    (project / ".bottle").mkdir(parents=True)
    (project / ".bottle" / "api-key").write_text(INVENTED_VALUE + "\n")
    (project / "src").mkdir()
    (project / "src" / "main.py").write_text("print('work')\n")
    (project / "src" / "key-link").hardlink_to(project / ".bottle" / "api-key")
    # A symbolic link is sent as a link: Docker resolves it inside the context, where the
    # file is not.
    (project / "src" / "key-symlink").symlink_to("../.bottle/api-key")
    (project / ".dockerignore").write_text(".bottle\n!.bottle/api-key\n")
    plan = plan_of(project, FROM_FILE)

    tar = sent_to_docker(plan)

    assert INVENTED_VALUE.encode() not in tar
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        names = archive.getnames()
    assert "src/main.py" in names  # the rest of the project is still built from
    assert ".bottle/api-key" not in names
    assert "src/key-link" not in names


def test_the_engines_state_dir_and_credentials_in_the_context_are_not_built_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A context that holds the engine's state (every bottle's secrets and keys) or the
    person's credentials (a bottle built from the home directory)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RT41_API_KEY", INVENTED_VALUE)
    (tmp_path / "state" / "bottles" / "other").mkdir(parents=True)
    (tmp_path / "state" / "bottles" / "other" / "secret").write_text("other bottle's value\n")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("person's key\n")
    plan = plan_of(tmp_path, FROM_ENV)

    tar = sent_to_docker(plan)

    assert b"other bottle's value" not in tar
    assert b"person's key" not in tar
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        assert "bottle.toml" in archive.getnames()


@pytest.mark.parametrize("run_bytes", [secret_forms.RUN_BYTES, 1])
def test_a_context_holding_a_real_value_is_refused_naming_the_file_and_secret(
    project: Path, run_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual home of a `from_env` value: a git-ignored `.env` in the project (the entries
    searched in one run, or each in its own)."""
    monkeypatch.setattr(secret_forms, "RUN_BYTES", run_bytes)
    (project / "a.txt").write_text("before\n")
    (project / "z.txt").write_text("after\n")
    (project / "config").mkdir()
    (project / "config" / ".env").write_text(f"RT41_API_KEY={INVENTED_VALUE}\n")

    assert_refused(plan_of(project, FROM_ENV), "config/.env", "API_KEY", ".dockerignore")


def test_a_value_in_a_link_target_of_the_context_is_refused(project: Path) -> None:
    (project / "note").symlink_to(f"/nowhere/{INVENTED_VALUE}")

    assert_refused(plan_of(project, FROM_ENV), "note", "API_KEY")


@pytest.mark.parametrize(
    "init", [["init", "-q"], ["init", "-q", "--object-format=sha256"]], ids=["sha1", "sha256"]
)
def test_a_value_committed_once_in_the_contexts_git_history_is_refused(
    init: list[str], project: Path
) -> None:
    """Taken out of the file since, the value stays in `.git/objects`, which `COPY . /src`
    copies too: `git log -p` reads it back (of a SHA-256 repository too, packed: the config
    that says so is read with the objects)."""
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, *init], check=True)
    (project / "settings.py").write_text(f"KEY = '{INVENTED_VALUE}'\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (project / "settings.py").write_text("KEY = None\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    subprocess.run([*git, "gc", "-q", "--prune=now"], check=True)

    assert_refused(plan_of(project, FROM_ENV), ".git/objects", "API_KEY")


def test_a_pack_without_its_index_in_the_context_is_refused(project: Path) -> None:
    """An interrupted fetch's `tmp_pack_*` holds objects git reads back in one command."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    fetched = project.parent / "fetched"
    subprocess.run([*git, "init", "-q", str(fetched)], check=True)
    (fetched / "settings.py").write_text(f"KEY = '{INVENTED_VALUE}'\n")
    subprocess.run([*git, "-C", str(fetched), "add", "."], check=True)
    subprocess.run([*git, "-C", str(fetched), "commit", "-qm", "one"], check=True)
    pack = subprocess.run(
        [*git, "-C", str(fetched), "pack-objects", "--all", "--stdout"],
        input=b"",
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run([*git, "init", "-q", str(project)], check=True)
    (project / "README.md").write_text("a project\n")
    subprocess.run([*git, "-C", str(project), "add", "."], check=True)
    subprocess.run([*git, "-C", str(project), "commit", "-qm", "one"], check=True)
    (project / ".git" / "objects" / "pack" / "tmp_pack_Xy12ab").write_bytes(pack)

    assert_refused(plan_of(project, FROM_ENV), "tmp_pack_Xy12ab")


def test_a_build_arg_holding_a_real_value_is_refused(project: Path) -> None:
    """A build arg is readable in the image (`ENV KEY=$ARG`, a file a RUN writes, the image
    history): a real value is never one."""
    build_args = f'build_args = {{ TOKEN = "{INVENTED_VALUE}" }}'

    assert_refused(plan_of(project, FROM_ENV, build_args), "TOKEN", "API_KEY")


def test_a_context_without_real_values_builds(project: Path) -> None:
    (project / "main.py").write_text("print('work')\n")
    plan = plan_of(project, FROM_ENV)

    with tarfile.open(fileobj=io.BytesIO(sent_to_docker(plan))) as archive:
        assert "main.py" in archive.getnames()


def test_a_credential_in_a_git_config_of_the_context_is_refused(project: Path) -> None:
    """`COPY . /src` takes .git with it: a token in a remote's url reached the image, and the
    agent pushed with it past the gate."""
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    token = "ghp_rt41InventedContextToken0a1b2c3d4e5"
    subprocess.run(
        ["git", "-C", str(project), "remote", "add", "origin", f"https://{token}@forge.invalid/r"],
        check=True,
    )

    assert_refused(plan_of(project, FROM_ENV), ".git/config", "remote.origin.url")


@pytest.mark.parametrize("kind", sorted(ARCHIVED))
def test_a_real_value_inside_an_archive_in_the_context_is_refused(kind: str, project: Path) -> None:
    """`COPY . /src` puts a `backup.tar.gz` of the project's `.env` in the image as it is,
    where compression hid the value from the search and the agent unpacks it."""
    name, make, inside = ARCHIVED[kind]
    data = make(".env", dot_env(f"RT41_API_KEY={INVENTED_VALUE}"))
    assert INVENTED_VALUE.encode() not in data  # hidden by the compression
    (project / name).write_bytes(data)

    assert_refused(
        plan_of(project, FROM_ENV), name, f"{inside}-inflated content", "API_KEY", ".dockerignore"
    )


def test_an_archive_in_the_context_the_search_cannot_open_is_named_in_a_warning(
    project: Path,
) -> None:
    """A .zst is built from (the gate refuses to push it, a person's context may hold it),
    and the launch says it was not searched inside."""
    (project / "data.zst").write_bytes(ZSTD_KEY)
    progress = RecordingProgress()

    prepare_inputs(
        agent_build_spec(plan_of(project, FROM_ENV), SETTINGS), BASE_DIGEST, progress=progress
    )

    [warning] = [line for line in progress.warnings if "could not be opened" in line]
    assert "data.zst: a zstd stream" in warning
