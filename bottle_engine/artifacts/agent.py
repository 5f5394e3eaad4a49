"""The agent image's `BuildSpec`, made in one place for `build`, `launch` and `pack`.

The plan says what the manifest asks for; `settings` (the environment) and a command-line
option may override the base image and the extra CA bundle. Assembling the spec twice once let
`build` and `launch` resolve ``BOTTLE_CA_BUNDLE=~/ca.pem`` differently. Its context is guarded
against the bottle's real values (`context_values.py`) wherever it is built or reused.
"""

from __future__ import annotations

from pathlib import Path

from bottle_engine.artifacts.base import resolve_base_image
from bottle_engine.artifacts.spec import BuildSpec
from bottle_engine.context_values import guarded
from bottle_engine.plan import BottlePlan
from bottle_engine.settings import EngineSettings


def agent_build_spec(
    plan: BottlePlan,
    settings: EngineSettings,
    ca_option: str | Path | None = None,
    *,
    unset_ok: bool = False,
) -> BuildSpec:
    """What to build for a plan's agent image (`plan.image`); `unset_ok`: a secret whose value
    cannot be read is not searched for in the context (a build; a launch reads them all)."""
    image = plan.image
    spec = BuildSpec(
        name="agent",
        dockerfile=image.dockerfile,
        context=image.context,
        build_args=dict(image.build_args),
        base_image=resolve_base_image(image.base_image, settings),
        ca_bundle=settings.ca_bundle_for(ca_option, image.ca_bundle),
    )
    return guarded(spec, plan, unset_ok=unset_ok)
