"""Manifest trust without a daemon: the trusted surface, the difference (widening or narrowing),
the store, and what `launch` does before it would build anything.

The launches here stop at the trust check (a refused manifest never reaches Docker); real
launches that pass it are in tests/integration/test_trust.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle, trust_store
from bottle_engine.cli import main
from bottle_engine.manifest import load_manifest_text, schema
from bottle_engine.manifest.model import Egress, GitUpstream, Manifest, build_model
from bottle_engine.progress import RecordingProgress
from bottle_engine.trust import (
    OUTSIDE_SURFACE,
    TrustedSurface,
    changes,
    empty_surface,
    surface_of,
    widening,
)
from bottle_engine.trust_store import UntrustedManifestError
from tests.conftest import fixture_manifest

BASE = fixture_manifest("trust_project")


@dataclass
class Project:
    directory: Path
    home: Path

    @property
    def path(self) -> Path:
        return self.directory / "bottle.toml"

    def manifest(self, text: str = BASE) -> Manifest:
        self.path.write_text(text)
        return load_manifest_text(text, self.path).require()

    def surface(self, text: str = BASE) -> TrustedSurface:
        return surface_of(self.manifest(text), home=self.home)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\n")
    (home / ".ssh" / "id_repo").write_text("key\n")
    (home / ".claude" / "skills" / "pdf").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    directory = tmp_path / "repo"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM scratch\n")
    (directory / "prompt.md").write_text("# hi\n")
    (directory / "token.txt").write_text("t0ken\n")
    return Project(directory, home)


def diff(project: Project, old: str, new: str) -> list[tuple[str, bool]]:
    return [(c.text, c.widening) for c in changes(project.surface(old), project.surface(new))]


# -- the difference, one kind of edit at a time ----------------------------------------------------

WIDENING_EDITS = [
    pytest.param(
        (
            '"pypi.org"]\n\n[bottles.web.secrets',
            '"pypi.org", "collector.example"]\n\n[bottles.web.secrets',
        ),
        "bottle web: allow + collector.example",
        id="new-host",
    ),
    pytest.param(
        ('from_file = "token.txt"', 'from_file = "~/.aws/credentials"'),
        "bottle web: secret TOKEN now read from ~/.aws/credentials (under ~/.aws, a credential "
        "location) (was token.txt",
        id="secret-source-under-aws",
    ),
    pytest.param(
        (
            'hosts = ["api.example.com", "pypi.org"]',
            'hosts = ["api.example.com", "pypi.org", "x.example"]',
        ),
        "bottle web: secret TOKEN now also sent to x.example",
        id="secret-host",
    ),
    pytest.param(
        (
            'hosts = ["api.example.com", "pypi.org"]',
            'hosts = ["api.example.com", "pypi.org"]\n'
            'headers = ["Authorization", "X-Amz-Meta-Note"]',
        ),
        "bottle web: secret TOKEN headers + x-amz-meta-note",
        id="secret-header",
    ),
    pytest.param(
        ("me/repo.git", "me/other.git"),
        "bottle web: git origin: url now on host example.invalid: "
        "ssh://git@example.invalid/me/other.git (was "
        "ssh://git@example.invalid/me/repo.git)",
        id="git-url",
    ),
    pytest.param(
        ('identity = "~/.ssh/id_repo"', 'identity = "/srv/keys/deploy"'),
        "bottle web: git origin: identity /srv/keys/deploy (outside your home and the manifest's "
        "directory) (was ~/.ssh/id_repo)",
        id="git-identity",
    ),
    pytest.param(
        ('known_host_key = "example.invalid ssh-ed25519 AAAA"\n', ""),
        "bottle web: git origin: host key no longer pinned",
        id="host-key-unpinned",
    ),
    pytest.param(
        ('"agent/*", "wip/*"', '"agent/*", "wip/*", "main"'),
        "bottle web: git origin: push branches + main",
        id="push-branch",
    ),
    pytest.param(
        ("allow_force_push = true", "allow_force_push = true\nallow_delete = true"),
        "bottle web: git origin: branch deletion now allowed",
        id="delete",
    ),
    pytest.param(
        ("allow_force_push = true", "allow_force_push = true\nallow_ci_changes = true"),
        "bottle web: git origin: pushes that change CI definitions now allowed",
        id="ci-changes",
    ),
    pytest.param(
        ('runtime = "auto"', 'runtime = "runc"'),
        "bottle web: runtime runc (was auto)",
        id="runtime-weaker",
    ),
    pytest.param(
        ('runtime = "auto"', 'runtime = "auto"\nbackend = "smolmachines"'),
        "bottle web: backend smolmachines (was docker)",
        id="backend",
    ),
    pytest.param(
        ('runtime = "auto"', 'runtime = "auto"\nsupervise = true'),
        "bottle web: supervise on (was off)",
        id="supervise",
    ),
    pytest.param(
        ('runtime = "auto"', 'runtime = "auto"\ncontext = "~"'),
        "bottle web: context read from ~",
        id="context-home",
    ),
    pytest.param(
        ('runtime = "auto"', 'runtime = "auto"\nca_bundle = "/etc/ssl/private/key.pem"'),
        "bottle web: ca_bundle read from /etc/ssl/private/key.pem (outside your home and the "
        "manifest's directory)",
        id="ca-bundle-outside",
    ),
    pytest.param(
        ('prompt_file = "prompt.md"', 'prompt_file = "~/.ssh/id_repo"'),
        "agent dev: prompt_file read from ~/.ssh/id_repo (under ~/.ssh, a credential location)",
        id="prompt-file-is-a-key",
    ),
    pytest.param(
        ('command = ["sleep", "infinity"]', 'command = ["sleep", "infinity"]\nskills = ["pdf"]'),
        "agent dev: skill pdf read from ~/.claude/skills/pdf",
        id="skill",
    ),
    pytest.param(
        (
            "[bottles.web]\n",
            '[agents.other]\nbottle = "wide"\n\n[bottles.wide.egress]\n'
            'allow = ["*.example.com"]\n\n[bottles.web]\n',
        ),
        "bottle wide: allow + *.example.com",
        id="new-bottle",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), WIDENING_EDITS)
def test_a_widening_edit_is_named_and_needs_trust(
    project: Project, edit: tuple[str, str], expected: str
) -> None:
    edited = BASE.replace(*edit)
    assert edited != BASE
    found = diff(project, BASE, edited)
    assert any(text.startswith(expected) and wide for text, wide in found), found


NARROWING_EDITS = [
    pytest.param(
        ('"api.example.com", "pypi.org"]\n\n', '"api.example.com"]\n\n'), id="host-removed"
    ),
    pytest.param(
        ('hosts = ["api.example.com", "pypi.org"]', 'hosts = ["api.example.com"]'),
        id="secret-host-removed",
    ),
    pytest.param(
        (
            'hosts = ["api.example.com", "pypi.org"]',
            'hosts = ["api.example.com", "pypi.org"]\nheaders = ["AUTHORIZATION"]',
        ),
        id="secret-headers-fewer",
    ),
    pytest.param(('"agent/*", "wip/*"', '"agent/*"'), id="push-branch-removed"),
    pytest.param(("allow_force_push = true", "allow_force_push = false"), id="force-push-off"),
    pytest.param(('runtime = "auto"', 'runtime = "runsc"'), id="runtime-gvisor"),
    pytest.param(
        (
            '[bottles.web.secrets.TOKEN]\nfrom_file = "token.txt"\n'
            'hosts = ["api.example.com", "pypi.org"]\n',
            "",
        ),
        id="secret-removed",
    ),
    pytest.param(('identity = "~/.ssh/id_repo"\n', ""), id="identity-removed"),
]


@pytest.mark.parametrize("edit", NARROWING_EDITS)
def test_a_narrowing_edit_needs_no_trust_but_is_listed(
    project: Project, edit: tuple[str, str]
) -> None:
    edited = BASE.replace(*edit)
    assert edited != BASE
    found = diff(project, BASE, edited)
    assert found and not any(wide for _, wide in found), found


def test_an_unchanged_manifest_has_no_difference(project: Project) -> None:
    assert diff(project, BASE, BASE) == []


def test_first_use_lists_everything_the_manifest_allows(project: Project) -> None:
    surface = project.surface()
    found = [c.text for c in changes(empty_surface(surface), surface)]
    assert "bottle web: allow + pypi.org" in found
    assert any(t.startswith("bottle web: secret TOKEN now read from") for t in found)
    assert (
        "bottle web: git origin: new upstream on host example.invalid: "
        "ssh://git@example.invalid/me/repo.git"
    ) in found
    assert any("identity ~/.ssh/id_repo (under ~/.ssh, a credential location)" in t for t in found)
    assert all(c.widening for c in changes(empty_surface(surface), surface))


def test_the_issues_example_reads_as_one_sentence(project: Project) -> None:
    edited = BASE + (
        '\n[bottles.web.secrets.AWS]\nfrom_file = "~/.aws/credentials"\n'
        'hosts = ["collector.example"]\n'
    )
    assert (
        "bottle web: secret AWS now read from ~/.aws/credentials (under ~/.aws, a credential "
        "location) and sent to collector.example",
        True,
    ) in diff(project, BASE, edited)


# -- paths are what they resolve to ----------------------------------------------------------------


def test_a_committed_symlink_reading_credentials_is_caught_without_a_manifest_change(
    project: Project,
) -> None:
    """The manifest keeps `from_file = "token.txt"`; a merged branch made token.txt a link."""
    before = project.surface()
    (project.directory / "token.txt").unlink()
    (project.directory / "token.txt").symlink_to(project.home / ".aws" / "credentials")
    found = [(c.text, c.widening) for c in changes(before, project.surface())]
    assert any(
        "secret TOKEN now read from ~/.aws/credentials (under ~/.aws" in text and wide
        for text, wide in found
    ), found


def test_a_prompt_file_linked_outside_the_directory_is_a_path_read(project: Project) -> None:
    before = project.surface()
    (project.directory / "prompt.md").unlink()
    (project.directory / "prompt.md").symlink_to(project.home / ".ssh" / "id_repo")
    found = [(c.text, c.widening) for c in changes(before, project.surface())]
    assert (
        "agent dev: prompt_file read from ~/.ssh/id_repo (under ~/.ssh, a credential location)",
        True,
    ) in found


def test_paths_inside_the_manifests_directory_are_not_listed(project: Project) -> None:
    surface = project.surface()
    assert surface.bottles["web"].paths == {}
    assert surface.agents["dev"].paths == {}


# -- keys other changes add (read defensively) -----------------------------------------------------


@dataclass(frozen=True)
class _EgressWithMore(Egress):
    upstream_ca: Path | None = None
    ask: tuple[str, ...] = ()


def _with_more(
    manifest: Manifest, *, ca: Path | None, ask: tuple[str, ...], manifest_changes: bool
) -> Manifest:
    bottle = manifest.bottles["web"]
    egress = _EgressWithMore(allow=bottle.egress.allow, upstream_ca=ca, ask=ask)
    git = tuple(replace(u, allow_manifest_changes=manifest_changes) for u in bottle.git)
    return replace(manifest, bottles={"web": replace(bottle, egress=egress, git=git)})


def test_upstream_ca_ask_and_allow_manifest_changes_are_part_of_the_surface(
    project: Project,
) -> None:
    plain = project.manifest()
    before = surface_of(
        _with_more(plain, ca=None, ask=(), manifest_changes=False), home=project.home
    )
    assert before == surface_of(plain, home=project.home)  # absent keys read as their defaults
    after = surface_of(
        _with_more(plain, ca=Path("/opt/ca.pem"), ask=("*.github.com",), manifest_changes=True),
        home=project.home,
    )
    found = {c.text: c.widening for c in changes(before, after)}
    assert found == {
        "bottle web: ask + *.github.com": True,
        "bottle web: git origin: pushes that change the manifest now allowed": True,
        "bottle web: upstream_ca read from /opt/ca.pem (outside your home and the manifest's "
        "directory)": True,
    }


# -- the surface as stored -------------------------------------------------------------------------


def test_the_surface_round_trips_through_json_with_the_same_fingerprint(project: Project) -> None:
    surface = project.surface(
        BASE.replace(
            "[bottles.web]\n", '[agents.x]\nskills = ["pdf"]\nbottle = "web"\n\n[bottles.web]\n'
        )
    )
    again = TrustedSurface.from_json(json.loads(json.dumps(surface.to_json())))
    assert again == surface
    assert again.fingerprint == surface.fingerprint


def test_a_record_stored_before_the_surface_held_the_model_reads_as_the_same(
    project: Project,
) -> None:
    surface = project.surface()
    stored = json.loads(json.dumps(surface.to_json()))
    for upstream in stored["bottles"]["web"]["git"].values():
        del upstream["name"]  # the earlier form kept the name as the key only
    again = TrustedSurface.from_json(stored)
    assert again == surface
    assert changes(again, surface) == []


@dataclass(frozen=True)
class _GitWithNewKey(GitUpstream):
    allow_tags: bool = False


def test_a_git_key_trust_does_not_describe_still_counts_as_widening(project: Project) -> None:
    plain = project.manifest()
    bottle = plain.bottles["web"]

    def with_tags(allowed: bool) -> TrustedSurface:
        git = tuple(_GitWithNewKey(**{**u.__dict__, "allow_tags": allowed}) for u in bottle.git)
        return surface_of(
            replace(plain, bottles={"web": replace(bottle, git=git)}), home=project.home
        )

    found = [(c.text, c.widening) for c in changes(with_tags(False), with_tags(True))]
    assert found == [("bottle web: git origin: allow_tags now True (was False)", True)]


@pytest.mark.parametrize("stored", [{}, {"version": 99}, {"version": 1, "bottles": []}])
def test_a_surface_that_is_not_one_is_a_value_error(stored: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrustedSurface.from_json(stored)


def test_records_are_private_files_one_per_resolved_path(project: Project, tmp_path: Path) -> None:
    reviewed = trust_store.review(project.manifest(), home=project.home)
    assert reviewed.first_use and not reviewed.needs_trust
    path = trust_store.record(reviewed)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    link = tmp_path / "link"
    link.symlink_to(project.directory)
    assert trust_store.record_path(link / "bottle.toml") == path


def test_a_moved_manifest_is_new(project: Project, tmp_path: Path) -> None:
    trust_store.record(trust_store.review(project.manifest(), home=project.home))
    moved = tmp_path / "moved"
    project.directory.rename(moved)
    text = (moved / "bottle.toml").read_text()
    reviewed = trust_store.review(load_manifest_text(text, moved / "bottle.toml").require())
    assert reviewed.first_use


def test_an_unreadable_record_trusts_nothing(project: Project) -> None:
    manifest = project.manifest()
    path = trust_store.record(trust_store.review(manifest, home=project.home))
    path.write_text("{not json")
    reviewed = trust_store.review(manifest, home=project.home)
    assert not reviewed.first_use and reviewed.needs_trust
    assert reviewed.unreadable_record is not None and str(path) in reviewed.unreadable_record
    assert widening(reviewed.changes) == list(reviewed.changes)


def test_recording_checks_the_fingerprint_of_what_was_reviewed(project: Project) -> None:
    shown = trust_store.review(project.manifest(), home=project.home)
    with pytest.raises(Exception, match="changed after it was reviewed"):
        trust_store.record_if_fingerprint(shown, "0" * 64)
    assert not trust_store.record_path(project.path).exists()
    trust_store.record_if_fingerprint(shown, shown.fingerprint)
    assert trust_store.record_path(project.path).exists()


# -- launch, stopped before anything is built ------------------------------------------------------


def _refused(project: Project, text: str, **options: object) -> UntrustedManifestError:
    project.manifest(text)
    with pytest.raises(UntrustedManifestError) as raised:
        lifecycle.launch(project.path, "dev", cwd=project.directory, **options)  # type: ignore[arg-type]
    return raised.value


def _widened() -> str:
    return BASE + (
        '\n[bottles.web.secrets.AWS]\nfrom_file = "~/.aws/credentials"\n'
        'hosts = ["collector.example"]\n'
    )


def _trusted_then_widened(project: Project) -> None:
    """Record trust in the project's manifest as it is, then widen it (a new secret)."""
    trust_store.record(trust_store.review(project.manifest()))
    project.manifest(_widened())


def test_launch_refuses_a_widened_manifest_naming_the_change_and_the_command(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust_store.record(trust_store.review(project.manifest()))
    monkeypatch.setattr(lifecycle, "backend_named", _no_backend)
    error = _refused(project, _widened())
    assert "secret AWS now read from ~/.aws/credentials" in error.message
    assert "Nothing was built or started" in error.message
    assert error.fix is not None and f"bottle-engine trust -f {project.path}" in error.fix


def test_launch_asks_and_a_no_stops_it(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    trust_store.record(trust_store.review(project.manifest()))
    monkeypatch.setattr(lifecycle, "backend_named", _no_backend)
    asked = []
    _refused(project, _widened(), confirm=lambda review: asked.append(review) or False)
    assert next(c.text for c in asked[0].widening).startswith("bottle web: secret AWS")
    # Still refused afterwards: a "no" records nothing.
    _refused(project, _widened())


def test_launch_records_on_first_use_and_after_a_yes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached = []

    class Backend:
        def launch(self, planner: object, progress: object, **_: object) -> str:
            reached.append(planner)
            return "launched"

    monkeypatch.setattr(lifecycle, "backend_named", lambda name, settings=None: Backend())
    progress = RecordingProgress()
    project.manifest()
    assert lifecycle.launch(project.path, "dev", progress=progress) == "launched"
    assert any("recorded as trusted" in stage for stage in progress.stages)
    project.manifest(_widened())
    assert lifecycle.launch(project.path, "dev", confirm=lambda review: True) == "launched"
    assert not trust_store.review(project.manifest(_widened())).changes
    project.manifest(BASE)  # narrowing back: launches, and the record follows
    assert lifecycle.launch(project.path, "dev") == "launched"
    project.manifest(_widened())
    with pytest.raises(UntrustedManifestError):
        lifecycle.launch(project.path, "dev")
    assert lifecycle.launch(project.path, "dev", trust=True) == "launched"
    assert len(reached) == 4


def _no_backend(name: str, settings: object = None) -> object:
    raise AssertionError("a refused launch must not reach a backend")


def test_agent_text_in_the_refusal_is_made_safe(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust_store.record(trust_store.review(project.manifest()))
    monkeypatch.setattr(lifecycle, "backend_named", _no_backend)
    # A path, which no pattern bounds (a git url with controls is refused before: BB310).
    hostile = _widened().replace(
        "~/.aws/credentials", "~/.aws/credentials\\u001b]52;c;aGk=\\u0007\\u202e"
    )
    error = _refused(project, hostile)
    assert "\x1b" not in str(error) and "\u202e" not in str(error) and "\x07" not in str(error)
    assert "\\x1b]52" in str(error) and "\\u202e" in str(error)


# -- the CLI ---------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_trust_dry_run_shows_the_difference_and_records_nothing(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _trusted_then_widened(project)
    code, out, err = cli(capsys, "trust", "-f", str(project.path), "--dry-run")
    assert code == 1 and out == ""
    assert "+ bottle web: secret AWS now read from ~/.aws/credentials" in err
    assert trust_store.review(project.manifest(_widened())).needs_trust


def test_trust_records_and_then_launch_needs_nothing(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _trusted_then_widened(project)
    code, out, _ = cli(capsys, "trust", "-f", str(project.path), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["recorded"] is True and shown["trusted"] is False and not shown["first_use"]
    assert [c["widening"] for c in shown["changes"]] == [True]
    assert not trust_store.review(project.manifest(_widened())).needs_trust
    code, _, err = cli(capsys, "trust", "-f", str(project.path), "--dry-run")
    assert code == 0 and "no change since it was last trusted" in err


def test_launch_without_a_terminal_exits_1_with_the_difference(project: Project) -> None:
    _trusted_then_widened(project)
    done = subprocess.run(
        [sys.executable, "-m", "bottle_engine", "launch", "-f", str(project.path), "dev"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "secret AWS now read from ~/.aws/credentials" in done.stderr
    assert f"bottle-engine trust -f {project.path}" in done.stderr
    assert "Traceback" not in done.stderr and "docker" not in done.stderr.lower()


def test_launch_in_a_terminal_asks_and_no_declines(project: Project) -> None:
    """A real pseudo-terminal: the question shows the difference; "n" launches nothing."""
    import pty

    _trusted_then_widened(project)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bottle_engine", "launch", "-f", str(project.path), "dev"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    os.close(follower)
    try:
        seen = _read_pty(leader, until=b"[y/N]")
        os.write(leader, b"n\n")
        assert process.wait(timeout=60) == 1
        seen += _read_pty(leader, until=None)
    finally:
        process.kill()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert "secret AWS now read from ~/.aws/credentials" in text
    assert "changed since it was last trusted" in text
    assert trust_store.review(project.manifest(_widened())).needs_trust


def _read_pty(leader: int, until: bytes | None, seconds: float = 60) -> bytes:
    """What the terminal shows until `until` appears (or, for None, the process is gone)."""
    import select

    seen = b""
    for _ in range(int(seconds * 10)):
        if until is not None and until in seen:
            return seen
        ready, _, _ = select.select([leader], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other side is closed
            chunk = b""
        if not chunk:
            break
        seen += chunk
    assert until is None, f"the terminal never showed {until!r}: {seen!r}"
    return seen


def test_a_first_launch_from_the_cli_says_what_it_trusted(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Backend:
        def launch(self, planner: object, progress: object, **_: object) -> object:
            return type("Record", (), {"slug": "dev-1"})()

    monkeypatch.setattr(lifecycle, "backend_named", lambda name, settings=None: Backend())
    project.manifest()
    code, out, err = cli(capsys, "launch", "-f", str(project.path), "dev", "--detach")
    assert (code, out.strip()) == (0, "dev-1")
    assert "has not been trusted before; it says:" in err
    assert "+ bottle web: allow + pypi.org" in err
    assert not trust_store.review(project.manifest()).changes


def test_another_home_is_no_change_of_the_manifest(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~` is the person's, not the manifest's: a launch under another HOME (tests, sudo -E)
    reads the same kind of file and needs no new trust; the paths it shows follow HOME."""
    text = BASE.replace('command = ["sleep", "infinity"]', 'command = ["x"]\nskills = ["pdf"]')
    before = project.surface(text)
    other = tmp_path / "other-home"
    other.mkdir()
    monkeypatch.setenv("HOME", str(other))  # `~` in the manifest expands with it
    after = surface_of(project.manifest(text), home=other)
    assert changes(before, after) == []
    assert after.fingerprint == before.fingerprint
    assert after.agents["dev"].paths == {"skill pdf": "~/.claude/skills/pdf"}


def test_turning_ask_on_widens_and_says_what_it_means(project: Project) -> None:
    plain = project.manifest()
    bottle = plain.bottles["web"]
    asking = replace(
        plain, bottles={"web": replace(bottle, egress=replace(bottle.egress, ask=True))}
    )
    found = {
        c.text: c.widening
        for c in changes(
            surface_of(plain, home=project.home), surface_of(asking, home=project.home)
        )
    }
    assert found == {"bottle web: ask + unlisted hosts held for a person's answer": True}
    back = changes(surface_of(asking, home=project.home), surface_of(plain, home=project.home))
    assert [c.widening for c in back] == [False]  # turning it off narrows


# -- the bottle's share of the host ---------------------------------------------------------------

RESOURCE_EDITS = [
    pytest.param(('runtime = "auto"', 'runtime = "auto"\nmemory = "1t"'), "memory", id="memory"),
    pytest.param(('runtime = "auto"', 'runtime = "auto"\ncpus = 256'), "cpus", id="cpus"),
]


@pytest.mark.parametrize(("edit", "key"), RESOURCE_EDITS)
def test_a_larger_share_of_the_host_needs_trust(
    project: Project, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], key: str
) -> None:
    """Nothing on the host clamps `memory` or `cpus` (the schema allows 1 TiB and 256 CPUs, and
    the agent's /tmp is a tmpfs of half its memory): raising them takes more of the host, so a
    launch asks before it does."""
    trust_store.record(trust_store.review(project.manifest()))
    monkeypatch.setattr(lifecycle, "backend_named", _no_backend)
    error = _refused(project, BASE.replace(*edit))
    assert f"bottle web: {key} " in error.message


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(('runtime = "auto"', 'runtime = "auto"\nmemory = "1g"'), id="memory"),
        pytest.param(('runtime = "auto"', 'runtime = "auto"\ncpus = 1'), id="cpus"),
    ],
)
def test_a_smaller_share_of_the_host_needs_no_trust(
    project: Project, edit: tuple[str, str]
) -> None:
    found = diff(project, BASE, BASE.replace(*edit))
    assert found and not any(wide for _, wide in found), found


def test_a_record_without_resources_asks_once_for_them(project: Project) -> None:
    """A record stored before the surface held the bottle's size trusts no size."""
    stored = project.surface().to_json()
    for bottle in stored["bottles"].values():
        del bottle["cpus"], bottle["memory"]
    old = TrustedSurface.from_json(stored)
    found = [(c.text, c.widening) for c in changes(old, project.surface())]
    assert ("bottle web: memory 4 GiB (was not recorded)", True) in found
    assert ("bottle web: cpus 2 (was not recorded)", True) in found


def test_a_record_without_secret_headers_is_narrowed_by_any_list(project: Project) -> None:
    """A record stored before the surface held a secret's headers trusted any header (the proxy
    then substituted in every one): the default list, or any other, narrows it."""
    stored = project.surface().to_json()
    for secret in stored["bottles"]["web"]["secrets"].values():
        del secret["headers"]
    old = TrustedSurface.from_json(stored)
    found = [(c.text, c.widening) for c in changes(old, project.surface())]
    assert found == [
        (
            "bottle web: secret TOKEN now sent only in headers api-key, authorization, "
            "private-token, x-api-key, x-auth-token, x-goog-api-key",
            False,
        )
    ]


# -- the manifest's path --------------------------------------------------------------------------


def _link_manifest_to(project: Project, target: Path, text: str) -> None:
    """Replace the trusted `bottle.toml` with a committed symlink to `target` holding `text`,
    beside copies of the files it names."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for name in ("Dockerfile", "prompt.md", "token.txt"):
        (target.parent / name).write_text((project.directory / name).read_text())
    target.write_text(text)
    project.path.unlink()
    project.path.symlink_to(target)


@pytest.mark.parametrize("where", ["inside", "trusted-elsewhere"])
def test_a_manifest_replaced_by_a_symlink_is_compared_with_what_its_path_trusted(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    """Trust is kept per path the person launches: `bottle.toml` turned into a link to a wider
    manifest (new, so a first use; or one trusted for another project) is still a widening of
    what `bottle.toml` was trusted with."""
    trust_store.record(trust_store.review(project.manifest()))
    if where == "inside":
        target = project.directory / ".bottle" / "bottle.toml"
    else:
        target = tmp_path / "other" / "bottle.toml"
        target.parent.mkdir()
        (target.parent / "bottle.toml").write_text(_widened())
        for name in ("Dockerfile", "prompt.md", "token.txt"):
            (target.parent / name).write_text((project.directory / name).read_text())
        other = load_manifest_text(_widened(), target).require()
        trust_store.record(trust_store.review(other))
    _link_manifest_to(project, target, _widened())
    monkeypatch.setattr(lifecycle, "backend_named", _no_backend)
    with pytest.raises(UntrustedManifestError) as raised:
        lifecycle.launch(project.path, "dev", cwd=project.directory)
    assert "secret AWS now read from ~/.aws/credentials" in raised.value.message


# -- what the review does not cover ---------------------------------------------------------------


def test_a_review_says_the_dockerfile_and_build_context_are_not_in_it(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """A build runs the Dockerfile's RUN steps with the network of the host's Docker, and its
    content is no part of the trusted surface (by design: README, Manifest trust). A changed
    Dockerfile is "no change" to trust, so the review says what it did not look at."""
    trust_store.record(trust_store.review(project.manifest()))
    (project.directory / "Dockerfile").write_text(
        "FROM scratch\nRUN wget -q -O- http://collector.invalid/\n"
    )
    code, _, err = cli(capsys, "trust", "-f", str(project.path), "--dry-run")
    assert code == 0 and "no change since it was last trusted" in err
    assert "not reviewed here: the content of Dockerfile and the build context ." in err
    assert "a build runs their RUN steps with the network of the host's Docker" in err


# -- every key of the schema is in the surface, or says why not -----------------------------------

_EXAMPLE_TABLE = {"AGENT": "dev", "BOTTLE": "web", "SECRET": "TOKEN"}


def _mutated(field: schema.Field, current: object) -> object:
    """A value for `field` other than `current`, of its kind (the model is built unvalidated)."""
    if field.kind == schema.Kind.BOOLEAN:
        return not current
    if field.kind in (schema.Kind.NUMBER, schema.Kind.INTEGER):
        return field.maximum if field.maximum is not None else 1000
    if field.enum:
        return next(value for value in field.enum if value != current)
    if field.kind == schema.Kind.STRING_MAP:
        return {"MUTATED": "1"}
    if field.kind == schema.Kind.STRING_LIST:
        return ["pdf"] if field.refers_to == schema.Ref.SKILL else ["mutated.invalid"]
    return {
        schema.Format.MEMORY: "1t",
        schema.Format.PATH: "/srv/elsewhere/file",
        schema.Format.GIT_URL: "ssh://git@mutated.invalid/x.git",
    }.get(field.format, "mutated")  # type: ignore[arg-type]


def _schema_leaves() -> list[str]:
    return [path for path, field in schema.walk() if not field.is_table]


@pytest.mark.parametrize("key", _schema_leaves())
def test_every_schema_key_is_in_the_surface_or_listed_as_outside_it(
    project: Project, key: str
) -> None:
    """A key added to the schema is either part of what trust compares or named, with its
    reason, in `trust.OUTSIDE_SURFACE`: nothing is left out by forgetting it."""
    import tomllib

    data = tomllib.loads(BASE)
    parts = [_EXAMPLE_TABLE.get(part, part) for part in key.replace("[]", ".0").split(".")]
    table: Any = data
    for part in parts[:-1]:
        table = table[int(part)] if part.isdigit() else table.setdefault(part, {})
    field = schema.field_at(tuple(int(p) if p.isdigit() else p for p in parts))
    assert field is not None
    current = table.get(parts[-1], field.default)
    table[parts[-1]] = _mutated(field, current)
    if key.endswith(".from_env"):
        table.pop("from_file", None)  # one source at a time
    before = project.surface()
    after = surface_of(build_model(project.path, data), home=project.home)
    assert (before != after) == (key not in OUTSIDE_SURFACE), (key, changes(before, after))


def test_opening_fewer_tunnels_widens(project: Project) -> None:
    """`intercept = "all"` lets the proxy judge every request inside TLS; going back to a
    secret's hosts only puts a shared front's other sites back in reach, which needs trust."""
    opened = BASE.replace('"pypi.org"]\n\n', '"pypi.org"]\nintercept = "all"\n\n', 1)
    assert opened != BASE
    assert diff(project, BASE, opened) == [("bottle web: intercept all (was secrets)", False)]
    assert diff(project, opened, BASE) == [("bottle web: intercept secrets (was all)", True)]


def test_a_record_from_before_intercept_reads_as_secret_hosts_only(project: Project) -> None:
    stored = project.surface().to_json()
    for bottle in stored["bottles"].values():
        del bottle["intercept"]
    assert changes(TrustedSurface.from_json(stored), project.surface()) == []
