"""The launch directory's copy into the sandbox (`guest.workspace_archive`) and what it leaves
out: the files whose content the launch hands the bundle only."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import tarfile
import tempfile
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle_engine import copied_archives, copied_history
from bottle_engine import git as git_module
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle import secret_forms
from bottle_engine.errors import BottleError
from bottle_engine.git import url_credential
from bottle_engine.guest import guest_trees, workspace_archive
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import WORKSPACE, plan_bottle
from bottle_engine.progress import Progress, RecordingProgress
from tests.archive_attacks import ARCHIVED, dot_env, tar_gz
from tests.gate_attacks import ZSTD_KEY

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


def trees_of(
    project: Path,
    manifest_text: str,
    manifest_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, bytes]:
    """What a launch of `manifest_text`'s agent from `project` copies into the sandbox, the
    manifest written in `manifest_dir` (by default the project); `progress` is told what the
    launch reports. The bottle's state dir is scratch, gone when the copy is made."""
    manifest_dir = manifest_dir or project
    (manifest_dir / "bottle.toml").write_text(manifest_text)
    (manifest_dir / "Dockerfile").write_text("FROM scratch\n")
    manifest = load_manifest_text(manifest_text, manifest_dir / "bottle.toml").require()
    plan = plan_bottle(manifest, "a", cwd=project)
    with tempfile.TemporaryDirectory() as state:
        bottle_dir = BottleDir(Path(state))
        bottle_dir.ca_dir.mkdir(parents=True, exist_ok=True)
        bottle_dir.ca_cert.write_text("-----BEGIN CERTIFICATE-----\n")
        return dict(guest_trees(plan, bottle_dir, system_cas=None, progress=progress))


def copied_files(project: Path, tmp_path: Path) -> dict[str, bytes]:
    """The regular files of the launch's workspace copy, by path, with their content."""
    text = MANIFEST.format(source='from_file = ".bottle/api-key"') + GIT_UPSTREAM
    with tarfile.open(fileobj=io.BytesIO(trees_of(project, text)[WORKSPACE])) as archive:
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
        trees_of(project, MANIFEST.format(source='from_env = "RT37_API_KEY"'))

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


def test_the_persons_credential_files_in_the_launch_directory_are_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`launch` run from the home directory (a bottle.toml kept there, or a stray `cd`) copied
    ~/.ssh, ~/.aws and the rest of the person's credentials into /workspace, for the agent to
    read and send anywhere its egress allows. The places trust review calls out as holding
    credentials are left out of the copy wherever the launch runs."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("rt37-invented-personal-ssh-key\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("aws_secret_access_key = rt37-invented\n")
    (home / ".docker").mkdir()
    (home / ".docker" / "config.json").write_text('{"auths": {}}\n')
    (home / ".docker" / "daemon.json").write_text("{}\n")
    (home / ".netrc").write_text("machine example.invalid password rt37-invented\n")
    # Gerrit's (googlesource) cookie and the GitLab CLI's token: a push with either passes
    # the git gate.
    (home / ".gitcookies").write_text("git.example.invalid\tFALSE\t/\tTRUE\t0\to\trt41\n")
    (home / ".config" / "glab-cli").mkdir(parents=True)
    (home / ".config" / "glab-cli" / "config.yml").write_text("token: rt41-invented\n")
    (home / "notes.txt").write_text("work\n")
    (home / ".bottle").mkdir()
    (home / ".bottle" / "api-key").write_text(INVENTED_VALUE)
    (home / "deploy_key").write_text(INVENTED_KEY)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(tmp_path / "engine-state"))

    copied = copied_files(home, tmp_path)

    assert not [
        name
        for name in copied
        if name.startswith((".ssh", ".aws", ".netrc", ".gitcookies", ".config/glab-cli"))
    ]
    assert ".docker/config.json" not in copied
    assert copied[".docker/daemon.json"] == b"{}\n"  # only the credential file itself
    assert copied["notes.txt"] == b"work\n"


# A value with the characters each encoding writes differently ('/', '+', '&', '"', '<').
ENCODED_VALUE = 'rt38/inv+ent&ed"api<key>4b7e91'


def _base64_at(offset: int, alphabet: str) -> str:
    """`ENCODED_VALUE` base64-encoded inside a longer text, starting `offset` bytes into it."""
    data = b"prefix"[:offset] + ENCODED_VALUE.encode() + b" and more bytes after it"
    encoded = base64.b64encode(data)
    return (
        encoded.translate(bytes.maketrans(b"+/", b"-_")) if alphabet == "url" else encoded
    ).decode()


ENCODINGS = {
    "base64 at offset 0": lambda: _base64_at(0, "std").encode(),
    "base64 at offset 1": lambda: _base64_at(1, "std").encode(),
    "base64 at offset 2": lambda: _base64_at(2, "std").encode(),
    "url-safe base64": lambda: _base64_at(1, "url").encode(),
    "base64 wrapped at 20 columns": lambda: "\n".join(
        textwrap.wrap(_base64_at(2, "std"), 20)
    ).encode(),
    "hex": lambda: ENCODED_VALUE.encode().hex().encode(),
    "upper-case hex": lambda: ENCODED_VALUE.encode().hex().upper().encode(),
    "percent-encoded": lambda: urllib.parse.quote(ENCODED_VALUE, safe="").encode(),
    "form-encoded": lambda: urllib.parse.urlencode({"key": ENCODED_VALUE}).encode(),
    "JSON string": lambda: json.dumps({"key": ENCODED_VALUE}).encode(),
    "JSON with HTML-safe escapes": lambda: (
        json.dumps({"key": ENCODED_VALUE})
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .encode()
    ),
    "UTF-16 with a BOM": lambda: f"KEY={ENCODED_VALUE}\n".encode("utf-16"),
    "UTF-16BE": lambda: f"KEY={ENCODED_VALUE}\n".encode("utf-16-be"),
    "UTF-32 with a BOM": lambda: f"KEY={ENCODED_VALUE}\n".encode("utf-32"),
    "UTF-32BE": lambda: f"KEY={ENCODED_VALUE}\n".encode("utf-32-be"),
}


def bound_from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> str:
    """A manifest binding `value`, read from the launch's environment, as the secret API_KEY."""
    monkeypatch.setenv("RT38_API_KEY", value)
    return MANIFEST.format(source='from_env = "RT38_API_KEY"')


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_a_real_value_stored_encoded_in_the_launch_directory_is_refused(
    encoding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal searched the copy for the value as written only: the same value kept
    encoded (a Kubernetes secret's base64, a hex dump, a URL with it as a query parameter, a
    JSON config, a file saved as UTF-16 by a Windows editor) reached /workspace, where the
    agent decodes it in one line."""
    manifest = bound_from_env(monkeypatch, ENCODED_VALUE)
    project = tmp_path / "project"
    (project / "deploy").mkdir(parents=True)
    (project / "deploy" / "stored").write_bytes(b"data: " + ENCODINGS[encoding]() + b"\n")

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert "deploy/stored" in caught.value.message


def test_a_short_value_is_refused_only_as_a_whole_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value of a few characters occurs by chance inside longer words (of any project of
    some size); the launch is refused for it standing alone, not for every word that holds it."""
    manifest = bound_from_env(monkeypatch, "q7x2")
    project = tmp_path / "project"
    project.mkdir()
    (project / "words.txt").write_text("aq7x2b q7x2z 0q7x2\n")

    assert WORKSPACE in trees_of(project, manifest)

    (project / ".env").write_text("PIN=q7x2\n")
    with pytest.raises(BottleError):
        trees_of(project, manifest)


@pytest.mark.parametrize("where", ["file", "history"])
def test_a_short_value_ending_a_line_is_refused(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short value is searched as a whole word, and every value also with the line breaks
    taken out (a wrapped key): there, the next line's first letter touched the value's end,
    and a `.env` with another setting after it was copied, value and all."""
    manifest = bound_from_env(monkeypatch, "q7x2")
    project = tmp_path / "project"
    text = "PIN=q7x2\r\nDEBUG=1\n"
    if where == "file":
        project.mkdir()
        (project / ".env").write_text(text, newline="")
    else:
        committed_then_removed(project, ".env", text)

    with pytest.raises(BottleError, match=r"\.env" if where == "file" else "history"):
        trees_of(project, manifest)


def test_a_launch_from_inside_the_engines_state_dir_copies_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state dir was left out only where it lay inside the launch directory: `launch` run
    from inside it (a bottle's own dir, or `bottles/` holding every bottle's) copied what lay
    under the launch directory: other bottles' secret values, git keys and bundle configs."""
    state_root = tmp_path / "state-root"
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(state_root))
    for bottle in ("one", "two"):
        (state_root / "bottles" / bottle / "secrets").mkdir(parents=True)
        (state_root / "bottles" / bottle / "secrets" / "TOKEN").write_text(
            f"rt38-{bottle}-bottles-value\n"
        )
    for inside in (state_root / "bottles", state_root / "bottles" / "one", state_root):
        with pytest.raises(BottleError) as caught:
            trees_of(inside, MANIFEST.format(source='from_env = "HOME"'))
        assert "state" in caught.value.message


def test_a_real_value_in_a_skill_or_the_prompt_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the workspace copy was searched: a skill from ~/.claude/skills or a prompt_file
    holding the value (an example call with the real key in it) was copied into the sandbox,
    where the agent reads both."""
    base = bound_from_env(monkeypatch, INVENTED_VALUE)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    skill = tmp_path / "home" / ".claude" / "skills" / "deploy"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(f"curl -H 'Authorization: {INVENTED_VALUE}' ...\n")
    project = tmp_path / "project"
    project.mkdir()

    with_skill = base.replace("[agents.a]\n", '[agents.a]\nskills = ["deploy"]\n')
    with pytest.raises(BottleError) as caught:
        trees_of(project, with_skill)
    assert "deploy" in caught.value.message

    (skill / "SKILL.md").write_text("no value here\n")
    prompt = tmp_path / "prompt.md"
    prompt.write_text(f"Use the key {base64.b64encode(INVENTED_VALUE.encode()).decode()}\n")
    with_prompt = base.replace("[agents.a]\n", f'[agents.a]\nprompt_file = "{prompt}"\n')
    with pytest.raises(BottleError) as caught:
        trees_of(project, with_prompt)
    assert "prompt" in caught.value.message


def test_a_git_upstreams_password_in_the_copy_is_refused(tmp_path: Path) -> None:
    """An https upstream is reached with the password its url carries, which only the bundle
    is to use (as it does an ssh `identity`); the manifest beside the project, and a remote of
    the project's own `.git/config` with the same token, were copied into /workspace, and the
    agent pushed with it through any allowed host, past the gate."""
    token = "ghp_rt38InventedToken0a1b2c3d"
    manifest = (
        MANIFEST.format(source='from_env = "HOME"')
        + '[[bottles.b.git]]\nname = "origin"\n'
        + f'url = "https://x-access-token:{token}@git.example.invalid/team/repo.git"\n'
    )
    outside = tmp_path / "config"
    outside.mkdir()
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "config").write_text(f'[remote "origin"]\n\turl = https://me:{token}@h/r\n')

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)
    assert "bottle.toml" in caught.value.message and token not in str(caught.value)

    (project / "bottle.toml").unlink()
    (project / "Dockerfile").unlink()
    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest, manifest_dir=outside)
    assert ".git/config" in caught.value.message


@pytest.mark.parametrize(
    ("url", "credential"),
    [
        ("https://x-access-token:ghp_rt38a1b2@h.invalid/r.git", "ghp_rt38a1b2"),
        ("https://ghp_rt38InventedToken0a1b@h.invalid/r.git", "ghp_rt38InventedToken0a1b"),
        ("https://x-access-token@h.invalid/r.git", None),  # a login name, not a token
        # git hands the address after `TRANSPORT::` to git-remote-https, token and all
        ("https::https://u:ghp_rt41a1b2@h.invalid/r.git", "ghp_rt41a1b2"),
        ("ssh://git@h.invalid/r.git", None),
        ("git@h.invalid:r.git", None),
    ],
)
def test_the_credential_of_an_upstream_url(url: str, credential: str | None) -> None:
    assert url_credential(url) == credential


def with_identity(key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A manifest whose git upstream's identity is `key`, kept outside the project."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "deploy_key").write_text(key)
    return MANIFEST.format(source='from_env = "HOME"') + GIT_UPSTREAM.replace(
        '"deploy_key"', f'"{keys / "deploy_key"}"'
    )


def test_a_git_identitys_key_elsewhere_in_what_is_copied_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the identity file itself was left out (by device and inode): the same key in a
    skill (a hard link beside the skill's scripts) or a copy of it in the project with other
    line endings reached the sandbox, and the agent pushed as the deploy key past the gate."""
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nrt38b3BlbnNzaC1rZXktdjEAAAAA\nQUJDREVGR0g=\n"
    manifest = with_identity(key, tmp_path, monkeypatch)
    skill = tmp_path / "home" / ".claude" / "skills" / "release"
    skill.mkdir(parents=True)
    (skill / "key").hardlink_to(tmp_path / "keys" / "deploy_key")
    project = tmp_path / "project"
    project.mkdir()

    with pytest.raises(BottleError) as caught:
        trees_of(
            project,
            manifest.replace("[agents.a]\n", '[agents.a]\nskills = ["release"]\n'),
        )
    assert "release/key" in caught.value.message

    (project / "backup").mkdir()
    (project / "backup" / "key.txt").write_text(key.replace("\n", "\r\n"))
    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)
    assert "backup/key.txt" in caught.value.message and "rt38b3" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "indent"),
    [("deploy/secret.yaml", "    "), ("group_vars/all.yml", "\t  "), ("main.tf", "")],
)
def test_a_git_identitys_key_kept_indented_in_the_project_is_refused(
    name: str, indent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key as a YAML block (`ssh-privatekey: |`, each line indented, as a Kubernetes
    Secret or an Ansible variable keeps it) was found neither as written nor with its line
    breaks taken out, and the agent read the deploy key in /workspace."""
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nrt41b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n"
        "bm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    manifest = with_identity(key, tmp_path, monkeypatch)
    project = tmp_path / "project"
    (project / name).parent.mkdir(parents=True)
    block = "".join(f"{indent}{line}\n" for line in key.splitlines())
    (project / name).write_text(f"stringData:\n  ssh-privatekey: |\n{block}kind: Secret\n")

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert name in caught.value.message and "rt41b3" not in str(caught.value)


def test_a_refusal_names_the_files_when_a_name_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file name that is not UTF-8 (kept as its bytes in the copy) made the refusal's own
    listing of the files fail with an encoding error instead of naming the value's file."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"API_KEY={INVENTED_VALUE}\n")
    with open(bytes(project) + b"/caf\xe9.txt", "w") as latin1_named:
        latin1_named.write("a name in Latin-1\n")

    with pytest.raises(BottleError, match=r"/workspace/\.env"):
        trees_of(project, manifest)


def test_a_link_to_the_persons_ssh_dir_is_copied_as_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's link to ~/.ssh is copied as the link (pointing at nothing in the sandbox),
    never as the keys it leads to."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE-rt37-ssh-key\n")
    monkeypatch.setenv("HOME", str(home))
    project = tmp_path / "project"
    (project / ".bottle").mkdir(parents=True)
    (project / ".bottle" / "api-key").write_text(INVENTED_VALUE + "\n")
    (project / "deploy_key").write_text(INVENTED_KEY)
    (project / "keys").symlink_to(home / ".ssh")

    files = copied_files(project, tmp_path)

    assert not any(b"PRIVATE-rt37" in data for data in files.values())


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a person does (a fixed author, no config of this machine's)."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    ).stdout


def committed_then_removed(repo: Path, name: str, text: str, object_format: str = "sha1") -> None:
    """A repository in `repo` whose history holds `text` in `name`, removed again since: the
    usual story of a `.env` committed by mistake, taken out in the next commit."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main", f"--object-format={object_format}")
    (repo / "README.md").write_text("a project\n")
    (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    (repo / name).unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "take the key out")


def history_holds(tree: bytes, value: str, tmp_path: Path) -> bool:
    """Whether the agent, with git, reads `value` back from the workspace copy's history."""
    unpacked = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(unpacked, filter="tar")
    return value in git(unpacked, "-c", "safe.directory=*", "log", "-p", "--all")


def test_a_real_value_in_the_projects_git_history_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search read the copy's files as stored: a value committed once and removed since
    lies zlib-compressed in .git/objects, where no stored form is found, and the launch copied
    it into /workspace, where `git log -p` shows the agent the real value."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, ".env", f"API_KEY={INVENTED_VALUE}\n")

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    told = f"{caught.value.message}\n{caught.value.fix}"
    assert ".git/objects" in told and "API_KEY" in told
    assert INVENTED_VALUE not in told
    assert "history" in told


@pytest.mark.parametrize(
    "where", ["packed as a delta", "in a nested repository", "in an object no commit names"]
)
def test_a_real_value_in_packed_or_nested_git_history_is_refused(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packed, git keeps an older version of a file as a delta against the newer one, the
    value in compressed pieces; a nested repository (a vendored clone, a submodule's git dir
    under .git/modules) keeps its own objects."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    if where == "packed as a delta":
        body = "".join(f"setting_{n} = {n}\n" for n in range(2000))
        committed_then_removed(project, "settings.py", body + f"API_KEY = '{INVENTED_VALUE}'\n")
        (project / "settings.py").write_text(body)
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "settings again")
        git(project, "gc", "-q", "--aggressive", "--prune=now")
        assert not list((project / ".git" / "objects").glob("??/*"))  # all of it packed
    elif where == "in a nested repository":
        project.mkdir()
        committed_then_removed(project / "vendor" / "lib", ".env", f"KEY={INVENTED_VALUE}\n")
    else:  # a dropped stash, an amended commit: `git fsck --lost-found` lists them
        committed_then_removed(project, "notes.txt", "nothing\n")
        (project / "scratch").write_text(f"KEY={INVENTED_VALUE}\n")
        git(project, "hash-object", "-w", "scratch")
        (project / "scratch").unlink()

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert INVENTED_VALUE not in str(caught.value)


@pytest.mark.parametrize("packed", [False, True])
def test_a_real_value_in_a_sha256_repositorys_history_is_refused(
    packed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The objects were read as those of a SHA-1 repository of the search's, which passes
    over SHA-256 names and refuses a SHA-256 pack index: a SHA-256 project's history was
    searched and found to hold nothing, and `git log -p` showed the agent the value."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, ".env", f"KEY={INVENTED_VALUE}\n", object_format="sha256")
    if packed:
        git(project, "gc", "-q", "--prune=now")
        assert not list((project / ".git" / "objects").glob("??/*"))

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert "history" in caught.value.message and INVENTED_VALUE not in str(caught.value)

    committed_then_removed(tmp_path / "clean", "notes.txt", "nothing\n", object_format="sha256")
    assert WORKSPACE in trees_of(tmp_path / "clean", manifest)


@pytest.mark.parametrize("name", ["tmp_pack_Xy12ab", "pack-0123abcd.pack"])
def test_a_pack_without_its_index_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git reads a pack through its index; an interrupted fetch leaves the pack it was
    receiving without one (`tmp_pack_*`). The search passed over it, and the agent reads it
    back in one command (`git index-pack`, `git unpack-objects`)."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    source = tmp_path / "fetched"
    committed_then_removed(source, ".env", f"KEY={INVENTED_VALUE}\n")
    pack = subprocess.run(
        ["git", "-C", str(source), "pack-objects", "--all", "--stdout"],
        input=b"",
        capture_output=True,
        check=True,
    ).stdout
    (project / ".git" / "objects" / "pack" / name).write_bytes(pack)

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert name in caught.value.message and INVENTED_VALUE not in str(caught.value)


def test_a_project_whose_history_holds_no_value_is_copied_with_its_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search refuses the value only: a repository without it is copied whole, its history
    with it (the agent works with git)."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, ".env", "API_KEY=placeholder-only\n")

    tree = trees_of(project, manifest)[WORKSPACE]

    assert history_holds(tree, "placeholder-only", tmp_path)


def test_a_history_git_cannot_read_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is not read is not known to hold no value: a damaged object stops the launch with
    the place named and a way out."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    (project / ".git" / "objects" / "ab").mkdir(exist_ok=True)
    (project / ".git" / "objects" / "ab" / ("c" * 38)).write_bytes(b"not zlib at all")

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert "/workspace/.git/objects" in caught.value.message
    assert "copy_cwd = false" in (caught.value.fix or "")


def test_an_object_store_outside_the_copy_is_not_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone made with --shared names its source's objects in objects/info/alternates, a host
    path that is not copied (the agent's git finds nothing there): the value in the source's
    history is no reason to refuse the launch, and the host's stores are not read."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    source = tmp_path / "source"
    committed_then_removed(source, ".env", f"KEY={INVENTED_VALUE}\n")
    project = tmp_path / "project"
    git(tmp_path, "clone", "-q", "--shared", str(source), str(project))
    assert (project / ".git" / "objects" / "info" / "alternates").exists()

    assert WORKSPACE in trees_of(project, manifest)


def test_an_object_larger_than_the_search_reads_is_refused_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object is searched whole or the launch stops: one past the bound is not passed over
    (its value would reach the sandbox unseen)."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "data.bin", "x" * 4096)
    monkeypatch.setattr(copied_history, "MAX_OBJECT_BYTES", 1024)

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert "/workspace/.git/objects" in caught.value.message
    assert "4096 bytes" in caught.value.message


@pytest.mark.parametrize(
    "where",
    [
        '[bottles.b.env]\nDEPLOY_TOKEN = "{value}"\n',
        '[agents.a]\ncommand = ["deploy", "--token={value}"]\n',
    ],
)
def test_a_real_value_in_the_agents_environment_or_command_is_refused(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only copied files were searched: a manifest kept outside the project (`--file`) that
    also wrote the value into the bottle's `env` or the agent's command handed it to the
    agent, whose environment and command line it reads in /proc."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    if where.startswith("[agents.a]"):
        manifest = manifest.replace("[agents.a]\n", "")
    manifest += where.format(value=INVENTED_VALUE)
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "manifests"
    elsewhere.mkdir()

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest, manifest_dir=elsewhere)

    assert "API_KEY" in caught.value.message and INVENTED_VALUE not in str(caught.value)


def objects_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the history objects each search reads from now on, as it reads them."""
    read: list[str] = []
    reading = git_module.read_stored_objects

    def counted(*args: object, **kwargs: object) -> Iterator[tuple[git_module.ObjectInfo, bytes]]:
        for info, content in reading(*args, **kwargs):  # type: ignore[arg-type]
            read.append(info.oid)
            yield info, content

    monkeypatch.setattr(git_module, "read_stored_objects", counted)
    return read


def test_a_pack_found_clean_is_not_read_again_until_the_values_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack never changes: one searched clean for the bottle's values is passed over at the
    next launch, while what came since (a loose object) is read; a value planted in a new
    commit is still refused, and a pack is searched again for values it was not searched for."""
    project = tmp_path / "project"
    committed_then_removed(project, ".env", f"OLD_KEY={INVENTED_VALUE}\n")
    git(project, "gc", "-q", "--prune=now")
    read = objects_read(monkeypatch)

    other = bound_from_env(monkeypatch, "rt41-a-value-the-history-lacks")
    trees_of(project, other)
    packed = len(read)
    assert packed >= 5  # two commits, their trees, the blobs
    trees_of(project, other)
    assert len(read) == packed  # passed over

    (project / "later.txt").write_text("KEY=rt41-a-value-the-history-lacks\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "a later commit, loose")
    (project / "later.txt").unlink()  # the file goes; its loose objects stay, and are read
    with pytest.raises(BottleError, match="history"):
        trees_of(project, other)

    with pytest.raises(BottleError, match="history"):  # the old pack, for another value
        trees_of(project, bound_from_env(monkeypatch, INVENTED_VALUE))


def test_a_pack_found_clean_by_an_older_search_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache of clean packs outlives the engine that wrote it: a pack an older search
    passed (one that missed a short value ending a line) was passed over by the search that
    finds it, for the same values, and its history copied."""
    project = tmp_path / "project"
    committed_then_removed(project, ".env", "PIN=q7x2\n")
    git(project, "gc", "-q", "--prune=now")
    manifest = bound_from_env(monkeypatch, "rt41-a-value-the-history-lacks")
    read = objects_read(monkeypatch)
    trees_of(project, manifest)
    packed = len(read)

    monkeypatch.setattr(
        secret_forms,
        "SEARCH_VERSION",
        getattr(secret_forms, "SEARCH_VERSION", 0) + 1,
        raising=False,
    )
    trees_of(project, manifest)
    assert len(read) == 2 * packed


PERSONS_TOKEN = "ghp_rt41InventedPersonsToken0a1b2c3d4e5"


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        (
            [
                "remote",
                "add",
                "origin",
                f"https://x-access-token:{PERSONS_TOKEN}@github.invalid/t/r",
            ],
            "remote.origin.url",
        ),
        (
            [
                "config",
                f"url.https://{PERSONS_TOKEN}@github.invalid/.insteadOf",
                "https://github.invalid/",
            ],
            "insteadof",
        ),
        (
            [
                "config",
                "http.https://github.invalid/.extraHeader",
                f"Authorization: Bearer {PERSONS_TOKEN}",
            ],
            "extraheader",
        ),
        (  # the token as the user, GitHub's old way: the key is shown without either part
            [
                "config",
                f"url.https://{PERSONS_TOKEN}:x-oauth-basic@github.invalid/.insteadOf",
                "https://github.invalid/",
            ],
            "insteadof",
        ),
        (  # a CI script's helper, the token written into it when the script ran
            [
                "config",
                "credential.helper",
                f"!f() {{ echo username=x-access-token; echo password={PERSONS_TOKEN}; }}; f",
            ],
            "credential.helper",
        ),
        (
            [
                "config",
                "credential.https://github.invalid.helper",
                f'!f() {{ printf "password=%s\\n" {PERSONS_TOKEN}; }}; f',
            ],
            "credential.https://github.invalid.helper",
        ),
    ],
)
def test_a_credential_in_the_projects_git_config_is_refused(
    setting: list[str], key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone made with a token in its url keeps it in .git/config, which the copy carried
    into /workspace: the agent pushed with it straight to the forge (any allowed host that is
    the forge), past the gate that was to judge every push, whose own key it never holds."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    git(project, *setting)

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    told = f"{caught.value.message}\n{caught.value.fix}"
    assert ".git/config" in told and key in told.lower()
    assert PERSONS_TOKEN not in told


def test_a_projects_git_config_without_credentials_is_copied_and_a_broken_one_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    git(project, "remote", "add", "origin", "https://github.invalid/team/repo.git")
    git(project, "remote", "add", "fork", "git@github.invalid:someone/repo.git")

    assert WORKSPACE in trees_of(project, manifest)

    config = project / ".git" / "config"
    config.write_text(config.read_text() + '[remote "broken"\n')  # a section never closed
    with pytest.raises(BottleError, match=r"\.git/config"):
        trees_of(project, manifest)


def test_a_credential_in_a_file_the_git_config_includes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[include] path = ../.gitconfig.local` (relative: the config's own directory) brings
    another file of the copy into the config the agent's git reads, token and all."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    (project / "config").mkdir()
    (project / "config" / "git.inc").write_text(
        f'[url "https://{PERSONS_TOKEN}@github.invalid/"]\n\tinsteadOf = https://github.invalid/\n'
    )
    git(project, "config", "include.path", "../config/git.inc")
    assert PERSONS_TOKEN in git(project, "config", "--list")  # as git reads it

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert "config/git.inc" in caught.value.message
    assert PERSONS_TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "holder"),
    [
        (["credential.helper", "store --file=.git/credentials"], ".git/credentials"),
        (["credential.helper", "store --file .git-token"], ".git-token"),
        (["http.cookieFile", ".git/cookies"], ".git/cookies"),
        (["core.askPass", "scripts/askpass.sh"], "scripts/askpass.sh"),
        (["http.https://github.invalid/.sslKey", ".git/client.key"], ".git/client.key"),
    ],
)
def test_a_credentials_file_in_the_copy_that_the_git_config_names_is_refused(
    setting: list[str], holder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`credential.helper = store --file=.git/credentials` (or `http.cookieFile`) keeps the
    token in a file of the copy beside a config that holds none: the agent's git sent it on
    the first push to the forge, past the gate."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    (project / holder).parent.mkdir(parents=True, exist_ok=True)
    (project / holder).write_text(f"https://x-access-token:{PERSONS_TOKEN}@github.invalid\n")
    git(project, "config", *setting)

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert ".git/config" in caught.value.message
    assert setting[0].lower() in caught.value.message.lower()
    assert PERSONS_TOKEN not in str(caught.value)


def test_a_store_helper_outside_the_copy_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that keeps nothing in the project (the default store in the home directory,
    a helper program) is no credential in the copy."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    git(project, "config", "--add", "credential.helper", "store")
    git(project, "config", "--add", "credential.helper", "!gh auth git-credential")
    git(project, "config", "--add", "credential.helper", "store --file ~/.my-credentials")

    assert WORKSPACE in trees_of(project, manifest)


@pytest.mark.parametrize("config", [".gitconfig", ".config/git/config"])
def test_a_credential_in_a_copied_user_git_config_is_refused(
    config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launch from the home directory copies the person's own git config (~/.gitconfig,
    ~/.config/git/config), beside no HEAD, where an `insteadOf` with a token is often kept;
    so does a project that keeps one for `[include]`."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    home = tmp_path / "home"
    (home / config).parent.mkdir(parents=True, exist_ok=True)
    (home / config).write_text(
        f'[url "https://{PERSONS_TOKEN}@github.invalid/"]\n\tinsteadOf = https://github.invalid/\n'
    )

    with pytest.raises(BottleError) as caught:
        trees_of(home, manifest)

    assert config in caught.value.message
    assert PERSONS_TOKEN not in str(caught.value)


def test_a_credential_in_a_submodules_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.gitmodules`, a git config committed with the project, names each submodule's url:
    `git submodule update --init` clones with the token in it (and writes it into
    .git/config), as the agent reads it."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    committed_then_removed(project, "notes.txt", "nothing\n")
    (project / ".gitmodules").write_text(
        f'[submodule "lib"]\n\tpath = lib\n\turl = https://{PERSONS_TOKEN}@github.invalid/t/l\n'
    )

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert ".gitmodules" in caught.value.message and "submodule.lib.url" in caught.value.message
    assert PERSONS_TOKEN not in str(caught.value)


@pytest.mark.parametrize("store", [".git-credentials", "ci/.git-credentials"])
def test_a_git_credential_store_in_the_copy_is_refused(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git credential-store` keeps each token as a url, a line each; one in the project (a CI
    job's, a person's `store --file` since set back) was copied for the agent to push with.
    Only ~/.git-credentials itself was left out."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    project = tmp_path / "project"
    (project / store).parent.mkdir(parents=True)
    (project / store).write_text(f"https://x-access-token:{PERSONS_TOKEN}@github.invalid\n")

    with pytest.raises(BottleError) as caught:
        trees_of(project, manifest)

    assert store in caught.value.message and "github.invalid" in caught.value.message
    assert PERSONS_TOKEN not in str(caught.value)

    (project / store).write_text("https://github.invalid\n")  # no credential in it
    assert WORKSPACE in trees_of(project, manifest)


def test_a_credential_in_a_file_a_user_git_config_includes_from_home_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[include] path = ~/.gitconfig.work` in a copied ~/.gitconfig: the token is in the
    file it names, which the same launch copied."""
    manifest = bound_from_env(monkeypatch, INVENTED_VALUE)
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text("[include]\n\tpath = ~/.gitconfig.work\n")
    (home / ".gitconfig.work").write_text(
        f"[http]\n\textraHeader = Authorization: Bearer {PERSONS_TOKEN}\n"
    )

    with pytest.raises(BottleError) as caught:
        trees_of(home, manifest)

    assert ".gitconfig.work" in caught.value.message
    assert PERSONS_TOKEN not in str(caught.value)


@pytest.mark.parametrize("kind", sorted(ARCHIVED))
def test_a_real_value_inside_an_archive_or_compressed_file_is_refused(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archived `.env` (a backup, a zipped config, a gzip inside a zip, an .xz): the
    search read the copy's bytes as stored, where compression hides the value, and the agent
    read it with `tar xzf`. The launch stops naming the file and the stream, never the value."""
    monkeypatch.setenv("RT37_API_KEY", INVENTED_VALUE)
    name, make, inside = ARCHIVED[kind]
    project = tmp_path / "project"
    (project / "old").mkdir(parents=True)
    data = make(".env", dot_env(f"RT37_API_KEY={INVENTED_VALUE}"))
    assert INVENTED_VALUE.encode() not in data  # hidden by the compression
    (project / "old" / name).write_bytes(data)

    with pytest.raises(BottleError) as caught:
        trees_of(project, MANIFEST.format(source='from_env = "RT37_API_KEY"'))

    told = f"{caught.value.message}\n{caught.value.fix}"
    assert f"old/{name}" in told
    assert f"{inside}-inflated content" in told
    if kind in ("tar.gz", "zip"):
        assert "entry .env" in told  # the tar member or zip entry that holds it
    assert "API_KEY" in told
    assert INVENTED_VALUE not in told


def test_an_archive_the_launch_cannot_open_is_named_in_a_warning_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .zst (no decompressor here) and a .tar.gz inflating past the bound are copied (a
    person's project may hold them; the gate refuses to push them), and the launch says in
    one line that they were not searched inside, and why."""
    monkeypatch.setenv("RT37_API_KEY", INVENTED_VALUE)
    monkeypatch.setattr(copied_archives, "MAX_FILE_INFLATED_BYTES", 64 * 1024)
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.zst").write_bytes(ZSTD_KEY)
    (project / "big.tar.gz").write_bytes(tar_gz("zeros", bytes(256 * 1024)))
    (project / "small.tar.gz").write_bytes(tar_gz("notes", dot_env("NOTE=nothing secret")))
    progress = RecordingProgress()

    trees = trees_of(
        project, MANIFEST.format(source='from_env = "RT37_API_KEY"'), progress=progress
    )

    assert WORKSPACE in trees
    [warning] = [line for line in progress.warnings if "could not be opened" in line]
    assert "/workspace/data.zst: a zstd stream" in warning
    assert "/workspace/big.tar.gz: gzip content inflates beyond the bound" in warning
    assert "small.tar.gz" not in warning


def test_what_the_launch_inflates_in_all_is_bounded_and_the_rest_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many archives (an agent's earlier session may have written them) cost a launch no more
    than the bound: those past it are named, not searched."""
    monkeypatch.setenv("RT37_API_KEY", INVENTED_VALUE)
    monkeypatch.setattr(copied_archives, "MAX_COPY_INFLATED_BYTES", 100 * 1024)
    project = tmp_path / "project"
    project.mkdir()
    for n in range(4):
        (project / f"part{n}.gz").write_bytes(gzip.compress(bytes(40 * 1024)))
    progress = RecordingProgress()

    trees_of(project, MANIFEST.format(source='from_env = "RT37_API_KEY"'), progress=progress)

    [warning] = [line for line in progress.warnings if "could not be opened" in line]
    assert "part0.gz" not in warning
    assert "/workspace/part3.gz: the bound of inflated content was spent" in warning


def test_the_copys_git_objects_are_left_to_the_history_search(tmp_path: Path) -> None:
    """Loose objects are zlib streams: read through git already (`copied_history`), they are
    not inflated a second time."""
    project = tmp_path / "project"
    project.mkdir()
    committed_then_removed(project, "settings.py", "KEY = 'nothing'\n")
    (project / "notes.gz").write_bytes(gzip.compress(b"notes"))

    with tarfile.open(fileobj=io.BytesIO(workspace_archive(project))) as archive:
        copied = archive.getnames()
        names = [name for name, _ in copied_archives.tar_files(archive)]

    assert [name for name in copied if name.startswith(".git/objects/")]  # loose objects
    assert "notes.gz" in names
    assert not [name for name in names if name.startswith(".git/objects/")]
