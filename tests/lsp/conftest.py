"""A VS Code-like client talking to a real `bottle-lsp` subprocess over stdio.

Each test gets its own server with its own HOME (for `~/.claude/skills`), state directory and
fake-engine state, so tests never see each other's bottles. After each test the server's stderr
must hold no traceback: a server that logs an exception has failed, whatever it answered.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from tests.conftest import REPO_ROOT, fixture_manifest

MANIFEST = fixture_manifest("lsp_project")

ClientFactory = Callable[..., Awaitable[LanguageClient]]


def make_project(root: Path) -> Path:
    """`root/project` with a Dockerfile and a prompt file, and a skills dir in `root/home`."""
    directory = root / "project"
    (directory / "prompts").mkdir(parents=True)
    (directory / "Dockerfile").write_text("FROM scratch\n")
    (directory / "prompts" / "dev.md").write_text("# dev\n")
    skills = root / "home" / ".claude" / "skills"
    (skills / "pdf").mkdir(parents=True)
    (skills / "pdf" / "SKILL.md").write_text("---\nname: pdf\ndescription: Read PDFs\n---\n")
    (skills / "xlsx").mkdir()
    return directory


async def start_client(
    root: Path,
    *,
    fake_engine: bool = True,
    approvals: dict[str, Any] | None = None,
    debounce: float = 0.05,
    bottles_max_age: float = 5.0,
    activity_interval: float = 3.0,
    pool: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> LanguageClient:
    """A VS Code-like client connected to a fresh server whose HOME, state and fake engine
    live under `root`; its log goes to `root/server.log`.

    With `fake_engine` the server is `tests.lsp.fake_server` (the real server around an engine
    whose bottles are records in `root/fake-engine.json`), else the real `bottle-lsp`. It runs in
    `cwd` (default `root`): VS Code starts it in the workspace folder."""
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "BOTTLE_STATE_DIR": str(root / "state"),
        "PYTHONPATH": str(REPO_ROOT),
        **(env or {}),
    }
    log = root / "server.log"
    if fake_engine:
        command = [
            "tests.lsp.fake_server",
            f"--state={root / 'fake-engine.json'}",
            f"--debounce={debounce}",
            f"--bottles-max-age={bottles_max_age}",
            f"--activity-interval={activity_interval}",
        ]
    else:
        command = ["bottle_lsp"]
    client = LanguageClient(converter_factory=default_converter)
    client.changed = []  # type: ignore[attr-defined]
    client.lens_refreshes = 0  # type: ignore[attr-defined]
    client.published = []  # type: ignore[attr-defined]

    def publish(params: types.PublishDiagnosticsParams) -> None:
        client.published.append(params)  # type: ignore[attr-defined]
        client.diagnostics[params.uri] = params.diagnostics

    register_lsp_features(
        client, {**DEFAULT_CLIENT_FEATURES, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish}
    )

    def changed(params: Any) -> None:
        as_dict = params._asdict() if hasattr(params, "_asdict") else params
        client.changed.append(dict(as_dict))  # type: ignore[attr-defined]

    def refresh(params: Any) -> None:
        client.lens_refreshes += 1  # type: ignore[attr-defined]

    client.feature("bottle/changed")(changed)
    client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(refresh)

    await client.start_io(
        sys.executable, "-m", *command, "--log-file", str(log), env=env, cwd=str(cwd or root)
    )
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=(root / "project").as_uri(),
            initialization_options={
                "approvals": approvals or {"poll": False},
                **({"pool": pool} if pool is not None else {}),
            },
        )
    )
    return client


async def stop_client(client: LanguageClient, root: Path) -> None:
    """Shut the server down, then insist that it logged no error or traceback."""
    if not client.stopped:  # a test may have shut it down itself
        await client.shutdown_session()
        await client.stop()  # type: ignore[no-untyped-call]
    log = root / "server.log"
    text = log.read_text() if log.exists() else ""
    assert "Traceback" not in text and " ERROR " not in text, text


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest_asyncio.fixture
async def make_client(tmp_path: Path, project: Path) -> AsyncIterator[ClientFactory]:
    """Start servers for one test (each gets the test's own HOME, state and fake engine)."""
    started: list[LanguageClient] = []

    async def start(**options: Any) -> LanguageClient:
        started.append(await start_client(tmp_path, **options))
        return started[-1]

    yield start
    for client in started:
        await stop_client(client, tmp_path)


@pytest_asyncio.fixture
async def client(make_client: ClientFactory) -> LanguageClient:
    return await make_client()


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsp")
    make_project(root)
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_client(shared_root: Path) -> AsyncIterator[LanguageClient]:
    """One server for a module of read-only feature tests; each test opens its own file."""
    client = await start_client(shared_root)
    yield client
    await stop_client(client, shared_root)


_counter = itertools.count()


def open_new(client: LanguageClient, root: Path, text: str) -> str:
    """Open `text` as a new bottle.toml in its own directory under `root/project`."""
    directory = root / "project" / f"doc{next(_counter)}"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM scratch\n")
    (directory / "prompts").mkdir()
    (directory / "prompts" / "dev.md").write_text("# dev\n")
    return open_document(client, directory / "bottle.toml", text)


def open_document(client: LanguageClient, path: Path, text: str, version: int = 1) -> str:
    """Write `text` to `path` and open it in the editor; its URI."""
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="toml", version=version, text=text
            )
        )
    )
    return uri


def position_of(text: str, needle: str, offset: int = 0) -> types.Position:
    """The position of the first `needle` in `text`, moved `offset` characters right."""
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    character = index - (text.rfind("\n", 0, index) + 1)
    return types.Position(line=line, character=character)


def rng(start: tuple[int, int], end: tuple[int, int]) -> types.Range:
    return types.Range(
        start=types.Position(line=start[0], character=start[1]),
        end=types.Position(line=end[0], character=end[1]),
    )
