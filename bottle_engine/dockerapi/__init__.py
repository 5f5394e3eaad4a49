"""The one place that speaks to the Docker daemon.

Nobody else in the engine imports the ``docker`` SDK. Each module here speaks the engine's
vocabulary (images, networks, containers) and translates SDK errors once, into `BottleError`
with the fix in the message.
"""

from bottle_engine.dockerapi.client import connect, docker_errors

__all__ = ["connect", "docker_errors"]
