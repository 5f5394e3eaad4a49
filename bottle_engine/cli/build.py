"""`bottle-engine build`: build (or reuse) an agent's image; prove it reproducible with --verify."""

from __future__ import annotations

import argparse

from bottle_engine.artifacts import BuildSpec, VerifyResult
from bottle_engine.artifacts.agent import agent_build_spec
from bottle_engine.artifacts.normalize import NormalizeRules, describe_rules
from bottle_engine.artifacts.store import ArtifactStore
from bottle_engine.cli.output import (
    Subparsers,
    add_command,
    add_quiet_and_json_options,
    console,
    err_console,
    print_json,
)
from bottle_engine.cli.progress import cli_progress
from bottle_engine.cli.trust import print_review
from bottle_engine.display import safe_text
from bottle_engine.host import Host
from bottle_engine.lifecycle import planner_for, require_trust
from bottle_engine.settings import EngineSettings

HELP = """\
Build AGENT's image, or reuse it: the input key (a sha256 over the Dockerfile, the context as
.dockerignore filters it, build args, base image digest and extra CA bundle) names a stored
artifact when nothing changed, and then no `docker build` runs at all. A build is normalized into
an OCI layout whose manifest digest (the artifact digest) is the same for the same inputs on
any machine; the image is loaded into Docker as bot-bottle/agent:<digest12>.

environment:
  BOTTLE_BASE_IMAGE   base image (build arg BASE_IMAGE); e.g. bot-bottle/base:bookworm made by
                      `bottle-engine base bootstrap` where no registry is reachable
  BOTTLE_CA_BUNDLE    extra CA bundle (PEM) trusted during the build (--ca-bundle wins)
  SOURCE_DATE_EPOCH   clamp time for mtimes (default: newest commit of the context's files,
                      else 0)
  BOTTLE_LAYER_CACHE  0: do not keep Docker's own build as a layer cache for the next build

exit codes: 0 built or reused (with --verify: the two builds agree), 1 error or mismatch

examples:
  bottle-engine build dev
  bottle-engine build dev --verify            # two builds from scratch, same digest?
  bottle-engine build dev --explain           # what the input key covers
  bottle-engine build dev --json | jq -r .image_tag
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "build",
        help="build (or reuse) an agent's image, reproducibly",
        description=HELP,
        run=run,
        subject="agent",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="ignore the artifact store and Docker's layer cache; build from scratch",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify",
        action="store_true",
        help="build twice from scratch and compare digests; list differing paths on a mismatch",
    )
    mode.add_argument(
        "--explain",
        action="store_true",
        help="print what the input key covers and whether the store has it; build nothing",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="PATH",
        help="extra CA bundle (PEM) to trust during the build (default: $BOTTLE_CA_BUNDLE, "
        "then the bottle's ca_bundle)",
    )
    parser.add_argument(
        "--require-cache",
        action="store_true",
        help="fail instead of building when neither the store nor the shared cache "
        "($BOTTLE_ARTIFACT_REGISTRY) has the artifact",
    )
    add_quiet_and_json_options(parser)


def build_spec_for(
    file: str | None,
    agent: str,
    ca_option: str | None,
    settings: EngineSettings,
    *,
    show_first_use: bool = False,
) -> BuildSpec:
    """The agent image's `BuildSpec`, from the same planner and settings a launch uses; refused
    like a launch when the manifest widens what was trusted (`require_trust`). On a first use
    (`show_first_use`) the manifest's surface is shown, as a launch shows it."""
    planner = planner_for(file, agent, settings=settings, launch_token="plan")
    review = require_trust(planner.manifest)
    if review.first_use and show_first_use:
        print_review(review)
    return agent_build_spec(planner(planner.base_slug), settings, ca_option, unset_ok=True)


def run(args: argparse.Namespace) -> int:
    settings = EngineSettings.from_env()
    spec = build_spec_for(
        args.file,
        args.agent,
        args.ca_bundle,
        settings,
        show_first_use=not (args.quiet or args.json),
    )
    host = Host()
    if args.explain:
        return _explain(host, spec, as_json=args.json)
    with cli_progress(quiet=args.quiet or args.json) as progress:
        if args.verify:
            verified = host.verify(spec, progress=progress, settings=settings)
        else:
            result = host.build(
                spec,
                no_cache=args.no_cache,
                progress=progress,
                require_cache=args.require_cache,
                settings=settings,
            )
    if args.verify:
        return _report_verify(verified, as_json=args.json)
    artifact = result.artifact
    if args.json:
        print_json(
            {
                "agent": args.agent,
                "input_key": artifact.input_key,
                "digest": artifact.digest,
                "image_tag": artifact.image_tag,
                "layout_dir": str(artifact.layout_dir),
                "built": result.built,
                "pulled": result.pulled,
                "loaded": result.loaded,
                "notes": list(result.notes),
            }
        )
    elif not args.quiet:
        console.print(f"input key  {artifact.input_key}")
        console.print(f"artifact   {artifact.digest}")
        how = "built" if result.built else "reused from the store (no docker build)"
        if result.pulled:
            how = "pulled from the shared cache (no docker build)"
        console.print(f"image      {artifact.image_tag}  ({how})")
    _print_notes(result.notes)
    return 0


def _print_notes(notes: tuple[str, ...]) -> None:
    """Warnings about the shared cache (registry text in them is made safe), on stderr."""
    for note in notes:
        for number, line in enumerate(note.splitlines()):
            prefix = "warning: " if number == 0 else ""
            err_console.print(prefix + safe_text(line), markup=False, highlight=False)


def _explain(host: Host, spec: BuildSpec, *, as_json: bool) -> int:
    inputs = host.inputs(spec)
    stored = ArtifactStore().lookup(inputs.input_key)
    rules = describe_rules(NormalizeRules(source_date_epoch=inputs.source_date_epoch))
    if as_json:
        print_json(
            {
                "input_key": inputs.input_key,
                "parts": inputs.key_parts(),
                "context": [entry.key_line() for entry in inputs.entries],
                "normalization": rules,
                "stored_digest": stored.digest if stored else None,
            }
        )
        return 0
    for line in inputs.explain():
        console.print(line, highlight=False, markup=False)
    console.print("normalization:")
    for line in rules:
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(f"stored: {stored.digest if stored else 'no (the next build runs docker build)'}")
    return 0


def _report_verify(verified: VerifyResult, *, as_json: bool) -> int:
    if as_json:
        print_json(
            {
                "input_key": verified.inputs.input_key,
                "reproducible": verified.reproducible,
                "first_digest": verified.first_digest,
                "second_digest": verified.second_digest,
                "shared_digest": verified.shared_digest,
                "notes": list(verified.notes),
                "image_tag": verified.artifact.image_tag if verified.artifact else None,
                "differences": [vars(difference) for difference in verified.differences],
            }
        )
        return 0 if verified.reproducible else 1
    console.print(f"input key  {verified.inputs.input_key}")
    console.print(f"build 1    {verified.first_digest}")
    console.print(f"build 2    {verified.second_digest}")
    if verified.shared_digest is not None:
        console.print(f"shared     {verified.shared_digest}  (the shared cache's, side 2 below)")
    _print_notes(verified.notes)
    if verified.artifact is not None:
        console.print(f"[green]reproducible[/]: {verified.artifact.image_tag}")
        return 0
    console.print(f"[red]not reproducible[/]: {len(verified.differences)} difference(s)")
    for difference in verified.differences[:60]:
        # Paths and summaries come from images the agent's Dockerfile may have made.
        first, second = safe_text(difference.first), safe_text(difference.second)
        console.print(
            f"  {difference.where}: {safe_text(difference.path)}\n"
            f"      1: {first}\n      2: {second}",
            highlight=False,
            markup=False,
        )
    if len(verified.differences) > 60:
        console.print(f"  … and {len(verified.differences) - 60} more (--json lists all)")
    return 1
