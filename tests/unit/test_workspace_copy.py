"""The launch directory's copy into the sandbox (`guest.workspace_archive`) and what it leaves
out: the files whose content the launch hands the bundle only."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from bottle_engine.bottle_dir import BottleDir
from bottle_engine.errors import BottleError
from bottle_engine.guest import guest_trees
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import WORKSPACE, plan_bottle

INVENTED_VALUE = "rt37-invented-api-key-4b7e91"
INVENTED_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nrt37-invented-deploy-key\n"
MANIFEST = """\
[agents.a]
[bottles.b]
context = "."
[bottles.b.secrets.API_KEY]
{source}
hosts = ["api.example.invalid"]
"""
GIT_UPSTREAM = """\
[[bottles.b.git]]
name = "origin"
url = "git@git.example.invalid:team/repo.git"
identity = "deploy_key"
"""


def trees_of(project: Path, tmp_path: Path, manifest_text: str) -> dict[str, bytes]:
    """What a launch of `manifest_text`'s agent from `project` copies into the sandbox."""
    (project / "bottle.toml").write_text(manifest_text)
    (project / "Dockerfile").write_text("FROM scratch\n")
    manifest = load_manifest_text(manifest_text, project / "bottle.toml").require()
    plan = plan_bottle(manifest, "a", cwd=project)
    bottle_dir = BottleDir(tmp_path / "state")
    bottle_dir.ca_dir.mkdir(parents=True)
    bottle_dir.ca_cert.write_text("-----BEGIN CERTIFICATE-----\n")
    return dict(guest_trees(plan, bottle_dir, system_cas=None))


def copied_files(project: Path, tmp_path: Path) -> dict[str, bytes]:
    """The regular files of the launch's workspace copy, by path, with their content."""
    text = MANIFEST.format(source='from_file = ".bottle/api-key"') + GIT_UPSTREAM
    with tarfile.open(fileobj=io.BytesIO(trees_of(project, tmp_path, text)[WORKSPACE])) as archive:
        members = archive.getmembers()
        # Every entry extracts on its own: no hard link to a file left out.
        assert not [m.name for m in members if m.islnk()]
        return {
            member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in members
            if member.isfile()
        }


def test_a_secret_file_or_git_key_in_the_launch_directory_never_reaches_the_sandbox(
    tmp_path: Path,
) -> None:
    """`from_file` is relative to the manifest, so a project keeps its key beside it (git-
    ignored); `launch` run there copied the whole directory into /workspace, and the agent read
    the real value, and the git gate's deploy key, from its own workspace."""
    project = tmp_path / "project"
    (project / ".bottle").mkdir(parents=True)
    (project / ".bottle" / "api-key").write_text(INVENTED_VALUE + "\n")
    (project / "deploy_key").write_text(INVENTED_KEY)
    (project / "src").mkdir()
    (project / "src" / "main.py").write_text("print('work')\n")
    # The same file under another name (a hard link) is the same secret.
    (project / "src" / "key-link").hardlink_to(project / ".bottle" / "api-key")

    copied = copied_files(project, tmp_path)

    everything = b"".join(copied.values())
    assert INVENTED_VALUE.encode() not in everything
    assert b"rt37-invented-deploy-key" not in everything
    assert copied["src/main.py"] == b"print('work')\n"  # the rest of the work is there
    assert "bottle.toml" in copied


def test_a_launch_whose_workspace_copy_holds_a_real_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual way to have a `from_env` value: a git-ignored `.env` in the project, sourced
    before `launch`. The copy of the launch directory carried it into /workspace, where the
    agent read the value it was only to hold a placeholder of. The launch stops, naming the
    file and the secret, never the value."""
    monkeypatch.setenv("RT37_API_KEY", INVENTED_VALUE)
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "config" / ".env").write_text(f"RT37_API_KEY={INVENTED_VALUE}\n")

    with pytest.raises(BottleError) as caught:
        trees_of(project, tmp_path, MANIFEST.format(source='from_env = "RT37_API_KEY"'))

    told = f"{caught.value.message}\n{caught.value.fix}"
    assert "config/.env" in told
    assert "API_KEY" in told
    assert INVENTED_VALUE not in told


def test_the_engines_state_dir_in_the_launch_directory_is_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`launch` run from a directory holding the engine's state (from the home directory, with
    the state under ~/.local/state, or a state dir set inside the project) copied that state
    into /workspace: every bottle's secret values, git keys, configs and approvals."""
    project = tmp_path / "project"
    other_bottle = project / ".local" / "state" / "bot-bottle" / "bottles" / "other"
    (other_bottle / "secrets").mkdir(parents=True)
    (other_bottle / "secrets" / "TOKEN").write_text("rt37-another-bottles-value\n")
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(project / ".local" / "state" / "bot-bottle"))
    (project / "notes.txt").write_text("work\n")
    (project / ".bottle").mkdir()
    (project / ".bottle" / "api-key").write_text(INVENTED_VALUE)

    copied = copied_files(project, tmp_path)

    assert not [name for name in copied if "bot-bottle" in name]
    assert copied["notes.txt"] == b"work\n"
