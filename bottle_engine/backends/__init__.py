"""Sandboxes: one `Backend` protocol, a docker and a smolmachines implementation."""

from __future__ import annotations

from bottle_engine.backends.base import Backend
from bottle_engine.settings import EngineSettings, check_backend


def backend_named(name: str, settings: EngineSettings | None = None) -> Backend:
    """The backend called `name` (a plan's or a record's `backend`); an unknown name is an
    error, never a silent fall back to Docker."""
    check_backend(name, source="backend name")
    if name == "smolmachines":
        from bottle_engine.backends.smolmachines import SmolmachinesBackend

        return SmolmachinesBackend(settings=settings)
    from bottle_engine.backends.docker import DockerBackend

    return DockerBackend(settings=settings)


__all__ = ["Backend", "backend_named"]
