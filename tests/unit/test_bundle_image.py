"""Which files make the bundle's build context, found by following the bundle's imports."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import bottle_engine
from bottle_engine.artifacts.bundle_image import bundle_source_files

PACKAGE_ROOT = Path(bottle_engine.__file__).resolve().parent


def test_the_context_holds_the_bundle_and_what_it_imports_but_not_the_host_side() -> None:
    names = {path.relative_to(PACKAGE_ROOT).as_posix() for path in bundle_source_files()}
    assert {"__init__.py", "bundle/egress.py", "bundle/config.py"} <= names
    assert not any(name.startswith(("cli/", "backends/", "artifacts/")) for name in names)


def test_nothing_in_the_bundle_package_runs_on_the_host_only() -> None:
    """The bundle package is what runs in the bundle: all of it is in the image's context
    (the builder of that image, which runs on the host, lives in artifacts/)."""
    bundle = PACKAGE_ROOT / "bundle"
    in_package = {p for p in bundle.rglob("*.py") if "__pycache__" not in p.parts}
    assert in_package <= bundle_source_files()
    assert not (bundle / "image.py").exists()


@pytest.fixture
def thread_switches_inside_parsing() -> Iterator[None]:
    """Garbage collections often, each one letting other threads run (as a finalizer that
    waits on I/O would): threads then interleave inside `ast.parse`."""

    def pause(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            time.sleep(0.0005)

    threshold = gc.get_threshold()
    gc.callbacks.append(pause)
    gc.set_threshold(50)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(pause)


def test_concurrent_launches_find_the_same_files(thread_switches_inside_parsing: None) -> None:
    """Two launches in one process (the language server runs each in a thread) both work out
    the bundle's context."""
    expected = bundle_source_files()
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: bundle_source_files(), range(8)))
    assert found == [expected] * 8
