"""The CLI core as a user meets it: validate, schema, plan, init, --help and --version.

Most tests call `bottle_engine.cli.main` in-process (fast, output via capsys); a few run the real
`python -m bottle_engine` to check what only a process shows: exit status, no traceback, and
that `plan` never needs a Docker daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bottle_engine import __version__
from bottle_engine.cli import build_parser, main
from bottle_engine.errors import BottleError
from bottle_engine.manifest.schema import markdown_reference, to_json_schema

CORPUS = Path(__file__).resolve().parent.parent / "manifests"
GOOD_MINIMAL = CORPUS / "good" / "minimal.toml"
GOOD_FULL = CORPUS / "good" / "full.toml"
TEXT_LINE = re.compile(r"^(?P<file>.+):(\d+):(\d+): (error|warning): \[BB\d{3}\] .+$")
REAL_SECRET = "sk-ant-REAL-VALUE-must-never-be-printed"

VALID = '[agents.dev]\nprompt = "hi"\n\n[bottles.default]\n'


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr). Usage errors exit via SystemExit."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI where it must refuse (exit 1): what it printed on stderr."""
    code, _, err = cli(capsys, *args)
    assert code == 1, err
    return err


def cli_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bottle_engine", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def project(directory: Path, text: str = VALID) -> Path:
    """A project directory holding a manifest and the Dockerfile it builds."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text("FROM scratch\n")
    manifest = directory / "bottle.toml"
    manifest.write_text(text)
    return manifest


def no_manifest_above(directory: Path) -> None:
    for parent in (directory, *directory.parents):
        if (parent / "bottle.toml").exists():
            pytest.skip(f"{parent / 'bottle.toml'} exists above the test's temp dir")


# -- validate --------------------------------------------------------------------------------------


def test_validate_is_quiet_and_exits_0_for_a_good_manifest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(capsys, "validate", "-f", str(GOOD_MINIMAL)) == (0, "", "")


def test_validate_prints_one_text_line_per_problem_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CORPUS / "bad" / "unknown_keys.toml"
    code, out, _ = cli(capsys, "validate", "-f", str(path))
    assert code == 1
    lines = out.splitlines()
    assert [TEXT_LINE.match(line) is not None for line in lines] == [True] * 4, out
    assert lines[0] == (
        f"{path}:6:1: error: [BB101] colour: unknown key 'colour'; "
        "expected one of 'agents', 'bottles'"
    )
    assert lines[1].startswith(f"{path}:9:1: error: [BB101] agents.reviewer.botle: ")
    assert "did you mean 'bottle'?" in lines[1]


def test_validate_exits_0_when_there_are_only_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = cli(capsys, "validate", "-f", str(CORPUS / "good" / "warnings_only.toml"))
    assert code == 0
    assert [line.split(": ")[1] for line in out.splitlines()] == ["warning"] * 5


def test_validate_json_gives_positions_for_editors_and_scripts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CORPUS / "bad" / "bad_enums.toml"
    code, out, _ = cli(capsys, "validate", "-f", str(path), "--format", "json")
    assert code == 1
    first, second = json.loads(out)
    assert {"file", "line", "column", "end_line", "end_column", "severity", "code", "message"} <= (
        set(first)
    )
    assert first["file"] == str(path)
    assert (first["line"], first["column"], first["end_line"], first["end_column"]) == (
        7,
        11,
        7,
        18,
    )
    assert (first["severity"], first["code"]) == ("error", "BB103")
    assert "dockr" in first["message"]
    assert second["code"] == "BB103" and second["line"] == 8


def test_validate_json_is_an_empty_list_for_a_good_manifest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = cli(capsys, "validate", "-f", str(GOOD_FULL), "--format", "json")
    assert (code, json.loads(out)) == (0, [])


@pytest.mark.parametrize(
    "args", [("validate", "--bogus"), ("validate", "--format", "xml"), (), ("frobnicate",)]
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "usage: bottle-engine" in err


def test_manifest_is_found_in_a_parent_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = project(tmp_path / "repo", VALID + "memory = 4\n")
    deeper = tmp_path / "repo" / "src" / "pkg"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    code, out, _ = cli(capsys, "validate")
    assert code == 1
    assert out.startswith(f"{manifest}:5:10: error: [BB102] bottles.default.memory: ")


def test_file_option_overrides_the_manifest_here(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)  # a valid one in the working directory
    monkeypatch.chdir(tmp_path)
    bad = CORPUS / "bad" / "bad_enums.toml"
    assert cli(capsys, "validate", "-f", str(bad))[0] == 1
    assert cli(capsys, "validate", "--file", str(bad))[0] == 1
    assert cli(capsys, "validate")[0] == 0


def test_file_option_accepts_a_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project(tmp_path / "elsewhere", "[agents.dev]\n")
    code, out, _ = cli(capsys, "validate", "-f", str(tmp_path / "elsewhere"))
    assert code == 1
    assert "[BB202]" in out


def test_missing_manifest_names_the_fix_without_a_traceback(tmp_path: Path) -> None:
    no_manifest_above(tmp_path)
    result = cli_process("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"no bottle.toml in {tmp_path.resolve()} or any parent directory" in result.stderr
    assert "bottle-engine init" in result.stderr
    assert result.stdout == ""


def test_missing_file_option_names_the_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = cli_error(capsys, "validate", "-f", str(tmp_path / "nope.toml"))
    assert "nope.toml: no such manifest" in err and "-f" in err


def test_debug_shows_the_traceback_instead(tmp_path: Path) -> None:
    with pytest.raises(BottleError):
        main(["--debug", "validate", "-f", str(tmp_path / "nope.toml")])


def test_validate_text_output_through_the_real_entry_point(tmp_path: Path) -> None:
    manifest = project(tmp_path, VALID + 'backend = "dockr"\n')
    result = cli_process("validate", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{manifest}:5:11: error: [BB103] bottles.default.backend: ")


# -- schema ----------------------------------------------------------------------------------------


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "schema")
    assert code == 0
    assert json.loads(out) == to_json_schema()


def test_schema_markdown_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "schema", "--markdown")
    assert (code, out) == (0, markdown_reference())


# -- plan ------------------------------------------------------------------------------------------


def test_plan_json_needs_no_docker_and_shows_only_placeholders(tmp_path: Path) -> None:
    bogus = tmp_path / "no-daemon" / "docker.sock"
    result = cli_process(
        "plan",
        "reviewer",
        "--json",
        "-f",
        str(GOOD_FULL),
        cwd=tmp_path,
        env={"DOCKER_HOST": f"unix://{bogus}", "ANTHROPIC_API_KEY": REAL_SECRET},
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["agent"] == "reviewer" and plan["backend"] == "docker"
    assert plan["bundle_ip"] in plan["guest_env"]["HTTPS_PROXY"]
    placeholder = plan["guest_env"]["ANTHROPIC_API_KEY"]
    assert placeholder.startswith("bbph_")
    assert REAL_SECRET not in result.stdout + result.stderr
    assert not bogus.exists()


def test_plan_text_lists_the_essentials(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "plan", "dev", "-f", str(GOOD_MINIMAL))
    assert code == 0
    for label in ("slug", "backend", "subnet", "bundle_ip", "guest env"):
        assert label in out
    assert re.search(r"HTTPS_PROXY=http://[0-9.]+:8888", out)
    assert re.search(r"opened +tunnels to a secret's hosts", out)


def test_plan_unknown_agent_lists_the_defined_agents(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "plan", "nobody", "-f", str(GOOD_FULL))
    assert code == 1 and out == ""
    assert "no agent named 'nobody' (defined: reviewer, writer)" in err


def test_plan_refuses_a_manifest_with_errors_and_lists_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CORPUS / "bad" / "bad_enums.toml"
    err = cli_error(capsys, "plan", "dev", "-f", str(path))
    assert "has 2 error(s)" in err
    assert f"{path}:7:11: error: [BB103]" in err
    assert "bottle-engine validate" in err


def test_plan_honours_bottle_backend_and_subnet_pool(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_BACKEND", "smolmachines")
    monkeypatch.setenv("BOTTLE_SUBNET_POOL", "10.99.0.0/27")
    code, out, _ = cli(capsys, "plan", "dev", "--json", "-f", str(GOOD_MINIMAL))
    assert code == 0
    plan = json.loads(out)
    assert plan["backend"] == "smolmachines"
    assert plan["subnet"] in ("10.99.0.0/28", "10.99.0.16/28")


def test_plan_rejects_an_unknown_bottle_backend(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_BACKEND", "podman")
    err = cli_error(capsys, "plan", "dev", "-f", str(GOOD_MINIMAL))
    assert "BOTTLE_BACKEND 'podman' is not a backend" in err


def test_plan_text_prints_markup_like_values_verbatim(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = project(
        tmp_path,
        '[agents.dev]\ncommand = ["sh", "-c", "echo [red]hi[/red] [/x]"]\n'
        '[bottles.default]\negress.allow = ["[2001:db8::1]:443"]\nenv = { X = "[/y]" }\n',
    )
    code, out, _ = cli(capsys, "plan", "dev", "-f", str(manifest))
    assert code == 0
    assert "sh -c echo [red]hi[/red] [/x]" in out
    assert "[2001:db8::1]:443" in out
    assert "X=[/y]" in out


def test_error_messages_quoting_markup_like_input_are_printed_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = cli_error(capsys, "plan", "[/x]", "-f", str(GOOD_MINIMAL))
    assert "no agent named '[/x]'" in err


def test_unreadable_manifest_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "bottle.toml"
    manifest.write_bytes(b"[agents.dev]\nprompt = '\xff\xfe'\n")
    err = cli_error(capsys, "validate", "-f", str(manifest))
    assert "cannot read the manifest" in err


def test_plan_needs_an_agent_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "plan", "-f", str(GOOD_MINIMAL))[0] == 2


# -- init ------------------------------------------------------------------------------------------


def test_init_writes_a_manifest_that_validates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "init")
    assert code == 0
    assert "wrote" in out and (tmp_path / "bottle.toml").is_file()
    code, out, _ = cli(capsys, "validate", "--format", "json")
    assert code == 0
    assert json.loads(out) == []
    assert (tmp_path / "Dockerfile").read_text().startswith("# The agent image")
    code, out, _ = cli(capsys, "plan", "dev", "--json")
    assert code == 0 and json.loads(out)["agent"] == "dev"
    assert json.loads(out)["egress_intercept"] == "all"  # a new project judges every request


def test_init_writes_into_a_named_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli(capsys, "init", str(tmp_path))[0] == 0
    assert (tmp_path / "bottle.toml").is_file()


def test_init_refuses_to_overwrite_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "bottle.toml"
    manifest.write_text("# mine\n")
    err = cli_error(capsys, "init", str(tmp_path))
    assert "already exists" in err and "--force" in err
    assert manifest.read_text() == "# mine\n"
    assert cli(capsys, "init", str(tmp_path), "--force")[0] == 0
    assert manifest.read_text() != "# mine\n"


def test_init_keeps_an_existing_dockerfile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM mine\n")
    assert cli(capsys, "init", str(tmp_path))[0] == 0
    assert (tmp_path / "Dockerfile").read_text() == "FROM mine\n"


def test_init_keeps_the_build_context_to_the_dockerfile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bottle_engine.artifacts.inputs import context_entries

    assert cli(capsys, "init", str(tmp_path))[0] == 0
    (tmp_path / "src.py").write_text("print('the project, not the image')\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    kept = [entry.path for entry in context_entries(tmp_path, "Dockerfile")]
    assert kept == [".dockerignore", "Dockerfile"]  # no project files, no .git


def test_init_never_overwrites_a_dockerignore(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / ".dockerignore").write_text("node_modules\n")
    assert cli(capsys, "init", str(tmp_path), "--force")[0] == 0
    assert (tmp_path / ".dockerignore").read_text() == "node_modules\n"


@pytest.mark.parametrize("name", ["bottle.toml", "Dockerfile", ".dockerignore"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_init_never_writes_through_a_link_a_repository_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, force: bool
) -> None:
    """`init` runs in a repository someone else wrote. A link there named as a file it writes,
    pointing outside (dangling, so `exists()` said no), made `init` create the file it named,
    as root in the quick start: `~/.bash_profile`, `/etc/cron.d/x`, anything."""
    repository, outside = tmp_path / "repo", tmp_path / "home"
    repository.mkdir()
    outside.mkdir()
    (repository / name).symlink_to(outside / "created")
    (outside / "kept").write_text("a person's file\n")
    (repository / "also").symlink_to(outside / "kept")
    err = cli_error(capsys, "init", str(repository), *(["--force"] if force else []))
    assert f"{repository / name} is a link" in err
    assert not (outside / "created").exists()
    assert sorted(path.name for path in outside.iterdir()) == ["kept"]
    assert (repository / name).is_symlink()


@pytest.mark.timeout(30)
def test_init_refuses_a_fifo_where_it_writes_instead_of_waiting_on_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Opening a FIFO to write waits for a reader: `init --force` in a repository holding one
    named `Dockerfile` hung for good."""
    os.mkfifo(tmp_path / "Dockerfile")
    err = cli_error(capsys, "init", str(tmp_path), "--force")
    assert f"{tmp_path / 'Dockerfile'} is not a regular file" in err
    assert not (tmp_path / "bottle.toml").exists()


def test_init_into_a_missing_directory_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = cli_error(capsys, "init", str(tmp_path / "missing"))
    assert "no such directory" in err


# -- help and version ------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--version")
    assert (code, out) == (0, f"bottle-engine {__version__}\n")


def test_top_level_help_lists_commands_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("init", "validate", "schema", "plan"):
        assert command in out
    assert "examples:" in out


def _commands() -> list[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_help_teaches_with_an_example(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    _usage, _, body = out.partition("\n\n")
    assert f"bottle-engine {command}" in body, f"`{command} --help` shows no example invocation"


def _runnable_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command and group action, by its full name (`cache ls`): what `main` runs."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [(" ".join(path), parser)]
    return [
        found
        for name, sub in groups[0].choices.items()
        for found in _runnable_commands(sub, (*path, name))
    ]


def test_every_command_and_action_names_what_it_runs() -> None:
    # `main` calls `args.run`: a command registered without it would fail with an
    # AttributeError instead of running.
    commands = _runnable_commands(build_parser())
    assert {"launch", "cache ls", "pool fill", "gvisor install", "approve"} <= dict(commands).keys()
    for name, parser in commands:
        assert callable(parser.get_default("run")), f"`{name}` runs nothing"


@pytest.mark.parametrize(
    ("auth", "secret", "other"),
    [
        ("api-key", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        ("subscription", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY"),
    ],
)
def test_init_binds_the_chosen_claude_credential_to_api_anthropic_com(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    auth: str,
    secret: str,
    other: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "init", "--auth", auth)[0] == 0
    text = (tmp_path / "bottle.toml").read_text()
    assert "@auth@" not in text
    assert other in text  # the comment names the other way to sign in
    code, out, _ = cli(capsys, "plan", "dev", "--json")
    assert code == 0
    secrets = json.loads(out)["secrets"]
    assert [(s["name"], s["hosts"]) for s in secrets] == [(secret, ["api.anthropic.com"])]
