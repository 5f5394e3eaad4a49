"""A bottle.toml the agent wrote (pushed on a branch the person pulls): what it must not do.

Each test is one attack through text of the agent's choosing in the manifest: a value that
reaches a program as an option, a port in other digits, escape sequences that reach the
person's terminal or editor through a problem message or `plan`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts import prepare_inputs
from bottle_engine.artifacts.builder import VerifyResult
from bottle_engine.artifacts.oci import Difference
from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate.gate import check_upstreams, mirror
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.cli import main
from bottle_engine.cli.build import _report_verify
from bottle_engine.errors import BottleError
from bottle_engine.git import GitError
from bottle_engine.manifest import load_manifest_text
from bottle_engine.manifest.egress_rules import EgressRuleError, parse_egress_rule
from bottle_engine.manifest.problems import Problem
from bottle_engine.manifest.validate import MAX_PROBLEMS, _Checker
from bottle_engine.trust import changes, empty_surface, surface_of
from tests.fixtures_artifacts import small_build_spec, write_small_context
from tests.hostile_text import HOSTILE, Hostile

UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def unsafe_characters(text: str) -> list[str]:
    """Characters of `text` that must never reach a person's terminal or editor raw."""
    return [char for char in text if unicodedata.category(char) in UNSAFE]


def toml_string(text: str) -> str:
    """`text` as a TOML basic string, every non-ASCII or control character as an escape."""
    escaped = "".join(
        char if 0x20 <= ord(char) < 0x7F and char not in '"\\' else f"\\U{ord(char):08x}"
        for char in text
    )
    return f'"{escaped}"'


def project(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text("FROM scratch\n")
    manifest = directory / "bottle.toml"
    manifest.write_text(text)
    return manifest


# -- a git url that is an option ------------------------------------------------------------------

INJECTED = "--upload-pack=touch {marker}; false"


def upstream_to(url: str) -> GitUpstreamConfig:
    return GitUpstreamConfig("origin", url, ("bot/*",))


def test_a_git_url_that_is_an_option_runs_nothing_when_the_gate_mirrors(tmp_path: Path) -> None:
    """`url = "--upload-pack=CMD"` was passed to `git fetch` where an option may stand: git
    ran CMD in the bundle, which holds the bottle's secrets and identity and reaches anywhere."""
    gate = tmp_path / "gate.git"
    subprocess.run(["git", "init", "-q", "--bare", str(gate)], check=True)
    marker = tmp_path / "ran"

    with pytest.raises(GitError):
        mirror(gate, upstream_to(INJECTED.format(marker=marker)), ValueSearch([]))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("url", "codes"),
    [
        ("--upload-pack=touch /tmp/x", ["BB310"]),
        ("-oProxyCommand=x", ["BB310"]),
        ("ssh://host/repo.git\nHostName evil", ["BB310"]),
        ("ssh://git@github.com/me/repo.git", []),
        ("git@github.com:me/repo.git", []),
        ("/srv/git/repo.git", []),
    ],
)
def test_a_git_url_that_reads_as_an_option_is_a_problem(
    tmp_path: Path, url: str, codes: list[str]
) -> None:
    """Refused where the person reads it (validate, the editor, launch), before any bundle."""
    text = (
        "[agents.dev]\n[bottles.b]\n[[bottles.b.git]]\n"
        f'name = "origin"\nurl = {toml_string(url)}\npush_branches = ["bot/*"]\n'
    )
    loaded = load_manifest_text(text, project(tmp_path, text))
    assert [problem.code for problem in loaded.problems if problem.code != "BB306"] == codes


# -- a git url whose host reads as another --------------------------------------------------------

SSH_RECORDER = """#!/bin/sh
echo "$@" >> "$0.log"
exit 1
"""


def git_reaches(url: str, tmp_path: Path) -> str:
    """The host `git ls-remote URL` really goes to, observed without leaving this machine: over
    ssh, the destination git hands to ssh (a recorder stands in for it; OpenSSH takes the user
    up to the last '@'); over https, the host git's curl asks a local proxy to CONNECT to."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"}
    if "https://" in url:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(10)
            proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
            with subprocess.Popen(
                ["git", "-c", f"http.proxy={proxy}", "ls-remote", url],
                env={**env, "PATH": os.environ["PATH"]},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ) as git:
                connection, _ = listener.accept()
                with connection:
                    request = connection.recv(4096).split(b"\r\n", 1)[0].decode()
                git.wait(timeout=10)
        method, destination, _ = request.split(" ")
        assert method == "CONNECT"
        return destination.rsplit(":", 1)[0]
    recorder = tmp_path / "ssh"
    recorder.write_text(SSH_RECORDER)
    recorder.chmod(0o755)
    subprocess.run(
        ["git", "ls-remote", url],
        env={**env, "PATH": os.environ["PATH"], "GIT_SSH_COMMAND": str(recorder)},
        capture_output=True,
        timeout=10,
        check=False,
    )
    calls = (tmp_path / "ssh.log").read_text().splitlines()
    words = calls[-1].split()  # the upload-pack call: [options] DESTINATION COMMAND PATH
    destination = next(
        w
        for i, w in enumerate(words)
        if not w.startswith("-") and (i == 0 or words[i - 1] not in ("-o", "-p"))
    )
    return destination.rpartition("@")[2]


def git_manifest(url: str) -> str:
    return (
        "[agents.dev]\n[bottles.b]\n[[bottles.b.git]]\n"
        f'name = "origin"\nurl = {toml_string(url)}\npush_branches = ["bot/*"]\n'
        'known_host_key = "evil.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"\n'
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com@evil.invalid/me/repo.git",
        "https://github.com:443@evil.invalid/me/repo.git",
        "ssh://github.com@evil.invalid/me/repo.git",
        "github.com@evil.invalid:me/repo.git",
        # Braille blanks draw as nothing and are no space: the host went past the line's end.
        "https://github.com" + "\u2800" * 300 + "@evil.invalid/me/repo.git",
    ],
)
def test_the_review_names_the_host_git_reaches_before_the_url(tmp_path: Path, url: str) -> None:
    """The review showed `new upstream https://github.com@evil.invalid/...`: a person reads
    github.com, and the gate pushes the workspace to evil.invalid (no egress rule applies to
    the gate's upstream). The line now starts with the host git reaches, as git reaches it."""
    reached = git_reaches(url, tmp_path / "observe")
    assert reached == "evil.invalid"
    text = git_manifest(url)
    manifest = load_manifest_text(text, project(tmp_path / "repo", text)).require()
    surface = surface_of(manifest, home=tmp_path)
    (line,) = [c.text for c in changes(empty_surface(surface), surface) if "new upstream" in c.text]
    assert line.startswith(f"bottle b: git origin: new upstream on host {reached}: ")


@pytest.mark.parametrize(
    ("url", "reached"),
    [
        # git hands ssh "git@github.com@evil.invalid"; ssh takes the last '@'.
        ("ssh://git@github.com@evil.invalid/me/repo.git", "evil.invalid"),
        ("git@github.com@evil.invalid:me/repo.git", "evil.invalid"),
        # git decodes %40 before it hands the destination to ssh.
        ("git+ssh://git@github.com%40evil.invalid/me/repo.git", "evil.invalid"),
        # git reads brackets in the scp-like form: the host is what they hold.
        ("[git@evil.invalid]:me/repo.git", "evil.invalid"),
        ("[github.com]@evil.invalid:me/repo.git", "github.com"),
        # curl takes a backslash as the end of the userinfo; a URL parser keeps it in the host.
        ("https://github.com\\@evil.invalid/me/repo.git", "evil.invalid"),
        # `TRANSPORT::ADDRESS` goes to the remote helper, which reads ADDRESS its own way.
        ("https::https://github.com@evil.invalid/me/repo.git", "evil.invalid"),
    ],
)
def test_a_git_url_whose_host_programs_read_differently_is_a_problem(
    tmp_path: Path, url: str, reached: str
) -> None:
    """Where git, ssh and curl disagree with a plain reading of the URL, no line of a review
    can say where pushes go: such a url is refused, by validation and by the gate."""
    assert git_reaches(url, tmp_path / "observe") == reached
    text = git_manifest(url)
    loaded = load_manifest_text(text, project(tmp_path / "repo", text))
    assert [p.code for p in loaded.problems if p.code != "BB306"] == ["BB315"]
    upstream = replace(upstream_to(url), known_hosts_file="/run/known_hosts")
    with pytest.raises(BottleError, match="cannot tell which host"):
        check_upstreams(BundleConfig("s", "10.0.0.2", "10.0.0.0/28", git=(upstream,)))


# -- ports in other digits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "203.0.113.7:\u00b2",  # superscript two: isdigit(), but int() refuses it
        "[2001:db8::1]:\u00b2",
        "example.com:\u00b2",
        "203.0.113.7:\u09ea\u09ea3",  # Bengali four looks like 8: reads ":883", allows 443
        "198.51.100.0/24:\uff14\uff14\uff13",  # fullwidth digits
    ],
)
def test_a_port_in_other_digits_is_a_clear_error(entry: str) -> None:
    with pytest.raises(EgressRuleError, match="port must be a number"):
        parse_egress_rule(entry)


def test_a_port_in_other_digits_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    text = '[agents.dev]\n[bottles.b]\negress.allow = ["203.0.113.7:\\u00b2"]\n'
    loaded = load_manifest_text(text, project(tmp_path, text))
    assert [problem.code for problem in loaded.problems] == ["BB301"]


# -- escape sequences in what the person reads -----------------------------------------------------


def hostile_manifest(attack: str) -> str:
    """A manifest whose every agent-written place that a problem message quotes holds `attack`."""
    s = toml_string(attack)
    return (
        f"[agents.dev]\nbottle = {s}\n"
        f'[agents.{s}]\nbottle = "b"\nprompt_file = {s}\n'
        f"[bottles.b]\nbackend = {s}\nmemory = {s}\negress.allow = [{s}]\n"
        f"{s} = 1\n"
        f"[bottles.b.secrets.K]\nfrom_file = {s}\nhosts = [{s}]\n"
        f'[[bottles.b.git]]\nname = {s}\nurl = "/srv/x"\npush_branches = [{s}]\n'
    )


@pytest.mark.parametrize("attack", HOSTILE, ids=lambda hostile: hostile.name)
def test_problem_messages_show_agent_text_only_made_safe(tmp_path: Path, attack: Hostile) -> None:
    """Messages reach `bottle-engine validate` (a terminal) and the editor's diagnostics raw."""
    text = hostile_manifest(attack.text)
    loaded = load_manifest_text(text, project(tmp_path, text))
    assert len(loaded.problems) > 5
    for problem in loaded.problems:
        assert unsafe_characters(problem.message) == [], problem.message
        for fix in problem.fixes:
            assert unsafe_characters(fix.title) == [], fix.title


def test_validate_prints_no_escape_sequence_of_the_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attack = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"
    manifest = project(tmp_path, hostile_manifest(attack))

    code = main(["validate", "-f", str(manifest)])

    out = capsys.readouterr().out
    assert code == 1
    assert unsafe_characters(out.replace("\n", "")) == []
    assert "\\x1b[2J" in out


def test_plan_prints_no_escape_sequence_of_the_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    erase = "\x1b[2K\x1b[1A\rok"
    clipboard = "y\x1b]52;c;cm0gLXJmIH4=\x07"
    manifest = project(
        tmp_path,
        f"[agents.dev]\ncommand = [{toml_string('claude' + erase)}]\n"
        f'[bottles.b]\negress.allow = ["example.com"]\n'
        f"env = {{ X = {toml_string(clipboard)} }}\n",
    )

    code = main(["plan", "dev", "-f", str(manifest)])

    out = capsys.readouterr().out
    assert code == 0
    assert unsafe_characters(out.replace("\n", "")) == []
    assert "claude\\x1b[2K" in out and "y\\x1b]52;c;" in out


def test_an_env_name_holding_escapes_is_refused_with_the_escapes_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = project(
        tmp_path,
        '[agents.dev]\n[bottles.b]\negress.allow = ["example.com"]\n'
        f'env = {{ {toml_string("X" + chr(27) + "[2K")} = "1" }}\n',
    )

    assert main(["plan", "dev", "-f", str(manifest)]) == 1

    err = capsys.readouterr().err
    assert "BB316" in err and "X\\" in err and "x1b[2K" in err  # the ESC shown as an escape
    assert unsafe_characters(err.replace("\n", "")) == []


def test_build_explain_shows_a_context_file_name_made_safe(tmp_path: Path) -> None:
    """`build --explain` lists every context file: names the agent committed, printed raw."""
    spec = small_build_spec(write_small_context(tmp_path / "ctx"), "bot-bottle/base:bookworm")
    name = "x\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\u202e"
    (spec.context / name).write_text("hi\n")

    lines = prepare_inputs(spec, "sha256:" + "b" * 64).explain()

    assert all(unsafe_characters(line) == [] for line in lines)
    assert any("x\\x1b]52;c;" in line for line in lines)


def test_build_verify_shows_an_image_path_made_safe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`build --verify` lists paths that differ between two builds of the agent's Dockerfile
    (`RUN touch "$(printf '\\033[2J')"` makes such a path)."""
    spec = small_build_spec(write_small_context(tmp_path / "ctx"), "bot-bottle/base:bookworm")
    inputs = prepare_inputs(spec, "sha256:" + "b" * 64)
    odd = "/x\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07"
    verified = VerifyResult(
        inputs, "sha256:1", "sha256:2", [Difference("layer 1", odd, odd, "(absent)")], None
    )

    assert _report_verify(verified, as_json=False) == 1

    out = capsys.readouterr().out
    assert unsafe_characters(out.replace("\n", "")) == []
    assert "/x\\x1b[2J" in out


# -- a NUL in a path ------------------------------------------------------------------------------

NUL_PATHS = {
    "context": '[bottles.b]\ncontext = "a\\u0000b"\n',
    "dockerfile": '[bottles.b]\ndockerfile = "Docker\\u0000file"\n',
    "ca_bundle": '[bottles.b]\nca_bundle = "ca\\u0000.pem"\n',
    "secret": '[bottles.b]\negress.allow = ["a.example"]\n'
    '[bottles.b.secrets.k]\nfrom_file = "k\\u0000ey"\nhosts = ["a.example"]\n',
    "prompt_file": '[bottles.b]\n[agents.dev]\nprompt_file = "p\\u0000.md"\n',
}


@pytest.mark.parametrize("key", sorted(NUL_PATHS))
def test_a_path_holding_a_nul_is_a_problem_not_a_crash(
    tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No file name holds a NUL: such a path is refused where the person reads it, and every
    command that reads paths (the trust review, build, plan) says so instead of a traceback."""
    body = NUL_PATHS[key]
    text = body if body.startswith("[bottles.b]\n[agents") else "[agents.dev]\n" + body
    manifest = project(tmp_path, text)
    loaded = load_manifest_text(text, manifest)
    assert "BB312" in [problem.code for problem in loaded.problems]
    for command in (["build", "dev"], ["plan", "dev"], ["trust"]):
        code = main([*command, "-f", str(manifest)])
        said = capsys.readouterr()
        assert code != 0, command
        assert "Traceback" not in said.err and "BB312" in said.err, (command, said.err)


# -- more problems than anyone reads ---------------------------------------------------------------


def test_checking_stops_after_max_problems_and_the_cut_list_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Warnings only (a secret bound to a host the allowlist lacks), past the cap: the problems
    that are not reported are not made, and what is reported does not pass for valid."""
    made: list[str] = []
    problem = _Checker.problem

    def counted(self: _Checker, code: str, *args: Any, **kwargs: Any) -> Problem:
        made.append(code)
        return problem(self, code, *args, **kwargs)

    monkeypatch.setattr(_Checker, "problem", counted)
    secrets = "".join(
        f'S{n} = {{ from_env = "X", hosts = ["h.example"] }}\n' for n in range(3 * MAX_PROBLEMS)
    )
    text = f'[agents.dev]\ncommand = ["sh"]\n[bottles.b]\n[bottles.b.secrets]\n{secrets}'
    loaded = load_manifest_text(text, tmp_path / "bottle.toml")
    assert len(made) <= MAX_PROBLEMS + 1
    assert len(loaded.problems) == MAX_PROBLEMS + 1
    assert [p.code for p in loaded.errors] == ["BB003"]
    assert loaded.manifest is None
