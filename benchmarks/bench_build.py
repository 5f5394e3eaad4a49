"""No-change rebuild: the input-key path vs. a plain `docker build` with a warm layer cache.

Both sides are measured in the same run on the same Dockerfile (default: the repository's agent
image). The input-key path is what `bottle-engine build` / a launch does when nothing changed:
hash the Dockerfile, the filtered context and the CA bundle, inspect the base image, find the
key in the store, check that Docker has the image. The baseline is what the reference system
does on every launch: `docker build` of the same context, every step a layer-cache hit.

    python benchmarks/bench_build.py                 # agent image (built first if needed)
    python benchmarks/bench_build.py --rounds 10
    BOTTLE_BASE_IMAGE=bot-bottle/base:bookworm python benchmarks/bench_build.py

Prints the median of each side and the ratio (baseline / input-key path).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import timed
from bottle_engine.artifacts import BuildSpec, build, resolve_base_image
from bottle_engine.artifacts.base import DEFAULT_BASE_TAG, ensure_base_image
from bottle_engine.artifacts.inputs import BuildInputs, write_context_tar
from bottle_engine.dockerapi import connect
from tests.fixtures_artifacts import repository_agent_spec


def agent_spec(client: Any) -> BuildSpec:
    """The agent image as the test suite builds it (the same inputs, so the same key)."""
    base_image = resolve_base_image(DEFAULT_BASE_TAG)
    if base_image == DEFAULT_BASE_TAG:
        ensure_base_image(client)
    return repository_agent_spec(base_image)


def plain_docker_build(client: Any, inputs: BuildInputs) -> str:
    """`docker build` of the same context and args (as the Docker CLI sends them: a tar made
    per build); returns the image ID."""
    context = io.BytesIO()
    write_context_tar(inputs, context)
    context.seek(0)
    image_id = ""
    for event in client.api.build(
        fileobj=context,
        custom_context=True,
        dockerfile=inputs.dockerfile_path,
        buildargs=dict(inputs.build_args),
        rm=True,
        decode=True,
    ):
        if "error" in event:
            raise RuntimeError(event["error"])
        aux = event.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            image_id = str(aux["ID"])
    return image_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    client = connect()
    spec = agent_spec(client)
    print("preparing: build (or reuse) the agent image and warm the layer cache ...", flush=True)
    first = build(client, spec)
    plain_docker_build(client, first.inputs)  # warm: from here on every step is cached

    key_path = [timed(lambda: build(client, spec)) for _ in range(args.rounds)]
    if build(client, spec).built:
        print("error: the input-key path rebuilt; the store is not being hit", file=sys.stderr)
        return 1
    baseline = [timed(lambda: plain_docker_build(client, first.inputs)) for _ in range(args.rounds)]

    key_median, base_median = statistics.median(key_path), statistics.median(baseline)
    print(f"artifact           {first.artifact.digest}")
    print(f"rounds             {args.rounds}")
    print(f"input-key path     median {key_median * 1000:8.1f} ms")
    print(f"docker build warm  median {base_median * 1000:8.1f} ms")
    print(f"ratio              {base_median / key_median:8.1f}x faster (docker build / input key)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
