"""The agent image's `BuildSpec`, made in one place for `build`, `launch` and `pack`.

The plan says what the manifest asks for; `settings` (the environment) and a command-line
option may override the base image and the extra CA bundle. Assembling the spec twice once let
`build` and `launch` resolve ``BOTTLE_CA_BUNDLE=~/ca.pem`` differently.
"""

from __future__ import annotations

from pathlib import Path

from bottle_engine.artifacts.base import resolve_base_image
from bottle_engine.artifacts.spec import BuildSpec
from bottle_engine.plan import ImageInputs
from bottle_engine.settings import EngineSettings


def agent_build_spec(
    image: ImageInputs, settings: EngineSettings, ca_option: str | Path | None = None
) -> BuildSpec:
    """What to build for a plan's agent image (`plan.image`)."""
    return BuildSpec(
        name="agent",
        dockerfile=image.dockerfile,
        context=image.context,
        build_args=dict(image.build_args),
        base_image=resolve_base_image(image.base_image, settings),
        ca_bundle=settings.ca_bundle_for(ca_option, image.ca_bundle),
    )
