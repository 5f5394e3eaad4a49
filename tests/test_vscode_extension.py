"""The VS Code extension (editors/vscode), driven from pytest.

* The committed JSON Schema the extension gives Even Better TOML is what the engine prints.
* The extension's own checks (npm ci, ESLint, unit tests, .vsix packaging and contents) pass.
* With BOT_BOTTLE_VSCODE_E2E=1 (scripts/test sets it where it can install the tools): the
  packaged extension in code-server + Chromium, a real launch included.

Node and npm are expected on the machines; without them these tests skip, except in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bottle_fixtures import BottleWorld

EXTENSION_DIR = Path(__file__).resolve().parent.parent / "editors" / "vscode"
IN_CI = os.environ.get("CI") == "true"


def _require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not on PATH (Node >= 20 builds the VS Code extension)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command,
        cwd=EXTENSION_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}{_server_logs()}"
    return output


def _server_logs() -> str:
    """The end of each language server log the editor tests kept (e2e/artifacts): what the
    server saw when a view stayed empty."""
    logs = sorted((EXTENSION_DIR / "e2e" / "artifacts").glob("*language-server.log"))
    return "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}" for log in logs)


def _code_server_processes() -> set[int]:
    """The processes running this checkout's code-server (the server and what it forks)."""
    marker = str(EXTENSION_DIR / "e2e" / "node_modules" / "code-server").encode()
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue  # ended meanwhile
    return found


def _run_in_editors(command: list[str], env: dict[str, str] | None = None) -> str:
    """`_run` of an e2e suite, which must leave no code-server process of its own behind: each
    editor's extension hosts (about 80 MB each) once outlived the suite."""
    before = _code_server_processes()
    output = _run(command, env)
    left = _code_server_processes() - before
    assert not left, f"code-server processes left running: {sorted(left)}"
    return output


def test_committed_schema_is_what_the_engine_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "bottle_engine", "schema"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committed = (EXTENSION_DIR / "schemas" / "bottle.schema.json").read_text()
    assert json.loads(committed) == json.loads(printed), (
        "editors/vscode/schemas/bottle.schema.json is stale: run `npm run schema` there"
    )


def test_extension_unit_tests_pass_and_vsix_has_the_expected_files() -> None:
    _require_node()
    output = _run(["bash", "scripts/check-vsix.sh"])
    assert "eslint --max-warnings 0 src test" in output  # `npm run lint` ran, and passed
    assert "bot-bottle.vsix: 10 entries, contents as expected" in output
    assert "# fail 0" in output


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("BOT_BOTTLE_VSCODE_E2E") != "1",
    reason="set BOT_BOTTLE_VSCODE_E2E=1 (code-server + Chromium; see editors/vscode/README.md)",
)
def test_extension_works_in_code_server() -> None:
    _require_node()
    output = _run_in_editors(["bash", "scripts/e2e.sh"])
    assert "# fail 0" in output


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("BOT_BOTTLE_VSCODE_E2E") != "1",
    reason="set BOT_BOTTLE_VSCODE_E2E=1 (code-server + Chromium; see editors/vscode/README.md)",
)
def test_egress_view_of_a_real_bottle_in_code_server(bottle_world: BottleWorld) -> None:
    """The Egress view, the status bar and Allow in code-server, with a real bottle of the test
    world making an allowed and a refused request to the world's test hosts."""
    _require_node()
    _run(["npm", "run", "package"])
    _run(["bash", "e2e/setup.sh"])
    world = json.dumps({"env": bottle_world.env, "manifest": str(bottle_world.manifest)})
    output = _run_in_editors(
        ["node", "--test", "--test-name-pattern=real bottle", "e2e/extension.e2e.mjs"],
        env={"BOT_BOTTLE_VSCODE_E2E_WORLD": world},
    )
    assert "# fail 0" in output, output[-3000:]
    for title in ("launches the bottle", "fills the Egress view", "Allow on stranger.test"):
        assert re.search(rf"^\s*ok \d+ - {title}", output, re.M), output[-3000:]
