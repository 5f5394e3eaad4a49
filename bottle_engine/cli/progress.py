"""The CLI's `Progress`: a rich status line per stage on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.status import Status

from bottle_engine.cli.output import err_console
from bottle_engine.display import safe_markup
from bottle_engine.progress import Progress, QuietProgress


class RichProgress:
    """Stages as "✓ stage (1.2s)" lines; details on a live status line (terminal only)."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._started = 0.0
        self._status: Status | None = None
        if err_console.is_terminal:
            self._status = err_console.status("starting")
            self._status.start()

    def stage(self, name: str) -> None:
        self._finish_stage()
        self._stage, self._started = name, time.monotonic()
        if self._status is not None:
            self._status.update(name)
        else:
            err_console.print(f"… {name}", highlight=False)

    def detail(self, text: str) -> None:
        # Details carry `docker build` output, which the agent's Dockerfile writes: shown as
        # text (escapes visible, rich markup inert; a stray `[/x]` would raise).
        if self._status is not None and self._stage:
            self._status.update(f"{self._stage}: {safe_markup(text.strip(), limit=100)}")

    def warn(self, text: str) -> None:
        warn(text)

    def _finish_stage(self) -> None:
        if self._stage is not None:
            elapsed = time.monotonic() - self._started
            err_console.print(f"[green]✓[/] {self._stage} ({elapsed:.1f}s)", highlight=False)
            self._stage = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The live status line off, for a question on the terminal."""
        if self._status is not None:
            self._status.stop()
        try:
            yield
        finally:
            if self._status is not None:
                self._status.start()

    def close(self, ok: bool) -> None:
        if ok:
            self._finish_stage()
        elif self._stage is not None:
            err_console.print(f"[red]✗[/] {self._stage}", highlight=False)
        if self._status is not None:
            self._status.stop()


@contextmanager
def paused(progress: Progress) -> Iterator[None]:
    """`progress` quiet on the terminal for the duration (a question is being asked)."""
    if isinstance(progress, RichProgress):
        with progress.paused():
            yield
    else:
        yield


def warn(text: str) -> None:
    """A warning on stderr, whatever the mode: --quiet and --json keep stdout for the answer."""
    err_console.print(f"[bold yellow]warning:[/] {safe_markup(text)}", highlight=False)


class WarningsOnly(QuietProgress):
    """--quiet and --json: no stages or details, but what the person must read."""

    def warn(self, text: str) -> None:
        warn(text)


@contextmanager
def cli_progress(*, quiet: bool) -> Iterator[Progress]:
    if quiet:
        yield WarningsOnly()
        return
    progress = RichProgress()
    ok = False
    try:
        yield progress
        ok = True
    finally:
        progress.close(ok)
