"""Progress reporting for long work (builds, packs, launches).

Engine code reports through the `Progress` protocol and never prints. The CLI passes a rich-backed
reporter (or a quiet one for ``--quiet`` / ``--json``); the language server passes one that turns
stages into ``$/progress`` notifications.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def stage(self, name: str) -> None:
        """A new stage of the work begins (e.g. "build agent image")."""

    def detail(self, text: str) -> None:
        """A line of detail inside the current stage (e.g. a build step's output); the next
        detail or stage may replace it on screen."""

    def warn(self, text: str) -> None:
        """A line the person must read (what a check could not look at): kept on screen, and
        shown even where stages and details are not."""


class QuietProgress:
    """Reports nothing."""

    def stage(self, name: str) -> None:
        pass

    def detail(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


class RecordingProgress:
    """Keeps every report; for tests and for callers that show a summary afterwards."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.details: list[str] = []
        self.warnings: list[str] = []

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def detail(self, text: str) -> None:
        self.details.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
