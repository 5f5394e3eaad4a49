"""The extension's copy of the command contract (editors/vscode/src/contract.ts) is the one the
server converts arguments with: generated from bottle_lsp/commands.py, and complete."""

from __future__ import annotations

from pathlib import Path

from bottle_lsp.commands import COMMANDS
from bottle_lsp.contract import END, START, render
from bottle_lsp.engine import Engine
from bottle_lsp.server import create_server
from tests.conftest import REPO_ROOT
from tests.lsp.fake_engine import FakeLifecycle

CONTRACT = REPO_ROOT / "editors" / "vscode" / "src" / "contract.ts"


def test_the_committed_contract_is_what_the_commands_render() -> None:
    committed = CONTRACT.read_text()
    assert render(committed) == committed, "contract.ts is stale: run scripts/update-contract"


def test_every_command_the_server_registers_is_in_the_contract(tmp_path: Path) -> None:
    """A command registered beside `COMMANDS` would reach the extension without a type."""
    server = create_server(Engine(FakeLifecycle(tmp_path / "state.json")))
    registered = set(server.protocol.fm.commands)
    assert registered == {command.name for command in COMMANDS}
    block = CONTRACT.read_text().split(START)[1].split(END)[0]
    for name in registered:
        assert f'"{name}"' in block, name


def test_argument_shapes_reach_the_typescript_side() -> None:
    block = render(f"{START}\n{END}\n")
    assert "export interface LogsArgs {" in block
    assert "  egress?: boolean;" in block  # optional in Python (default False), so here too
    assert "  fingerprint?: string;" in block  # `str | None`
    assert '  "bottle.list": undefined;' in block  # takes no argument
