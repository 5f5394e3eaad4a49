"""The launch directory's copy into the sandbox (`guest.workspace_archive`) and what it leaves
out: the files whose content the launch hands the bundle only."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from bottle_engine.bottle_dir import BottleDir
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
from_file = ".bottle/api-key"
hosts = ["api.example.invalid"]
[[bottles.b.git]]
name = "origin"
url = "git@git.example.invalid:team/repo.git"
identity = "deploy_key"
"""


def copied_files(project: Path, tmp_path: Path) -> dict[str, bytes]:
    """The regular files of the launch's workspace copy, by path, with their content."""
    (project / "bottle.toml").write_text(MANIFEST)
    (project / "Dockerfile").write_text("FROM scratch\n")
    manifest = load_manifest_text(MANIFEST, project / "bottle.toml").require()
    plan = plan_bottle(manifest, "a", cwd=project)
    bottle_dir = BottleDir(tmp_path / "state")
    bottle_dir.ca_dir.mkdir(parents=True)
    bottle_dir.ca_cert.write_text("-----BEGIN CERTIFICATE-----\n")
    trees = dict(guest_trees(plan, bottle_dir, system_cas=None))
    with tarfile.open(fileobj=io.BytesIO(trees[WORKSPACE])) as archive:
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
