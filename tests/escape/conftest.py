"""Every test here attacks a real bottle from inside: it needs the Docker daemon, runs whole
bottles, and is a sandbox-escape probe. The three marks are given here, once, so that a new file
cannot leave one out and run in the fast selection (`-m "not docker and not slow"`)."""

from __future__ import annotations

from pathlib import Path

import pytest

ESCAPE_TESTS = Path(__file__).parent
MARKS = (pytest.mark.docker, pytest.mark.slow, pytest.mark.escape)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the whole run's items, not only this directory's.
    for item in items:
        if item.path.is_relative_to(ESCAPE_TESTS):
            for mark in MARKS:
                item.add_marker(mark)
