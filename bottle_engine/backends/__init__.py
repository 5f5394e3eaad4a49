"""Sandboxes: one `Backend` protocol, a docker and a smolmachines implementation."""

from __future__ import annotations

from bottle_engine.backends.base import Backend


def backend_named(name: str) -> Backend:
    """The backend for a manifest's `backend` value (or BOTTLE_BACKEND)."""
    if name == "smolmachines":
        from bottle_engine.backends.smolmachines import SmolmachinesBackend

        return SmolmachinesBackend()
    from bottle_engine.backends.docker import DockerBackend

    return DockerBackend()


__all__ = ["Backend", "backend_named"]
