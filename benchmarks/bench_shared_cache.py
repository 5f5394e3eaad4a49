"""Shared artifact cache: pull by input key from a registry vs. a cold build, same image.

"Machine B" each round: an empty store, the image and its layer cache gone from Docker. The
pull path is what `bottle-engine build` does there with BOTTLE_ARTIFACT_REGISTRY set (look the
key up, fetch and verify every blob, store, docker load); the baseline is the build it saves
(docker build without cache, export, normalize, store, load); ``fetch_verify`` is the pull
without its ``docker load``. The registry is Debian's
docker-registry in a container on 127.0.0.1, so the network is loopback: a remote registry adds
transfer time on the pull side only. Reports medians and the ratio measured in the same run.

    python benchmarks/bench_shared_cache.py [--image small|agent] [--repeat 3] [--json]

Needs a Docker daemon; the base and test registry images are built here when missing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import arguments, median_lines, medians, print_result
from bottle_engine.artifacts.base import ensure_base_image
from bottle_engine.artifacts.builder import build, layer_cache_ref
from bottle_engine.artifacts.remote import RemoteCache, RemoteCacheError, parse_location
from bottle_engine.artifacts.spec import BuildSpec
from bottle_engine.artifacts.store import ArtifactStore
from bottle_engine.dockerapi import connect
from bottle_engine.dockerapi.registry_container import remove_registry, start_registry
from tests.fakes.fixtures import build_registry_image
from tests.fixtures_artifacts import (
    remove_images,
    repository_agent_spec,
    small_build_spec,
    write_small_context,
)


def wait_ready(cache: RemoteCache) -> None:
    for _ in range(300):
        try:
            cache.lookup("sha256:" + "0" * 64)
            return
        except RemoteCacheError:
            time.sleep(0.1)
    raise SystemExit("the registry did not come up")


def forget(client: Any, spec: BuildSpec, image_tag: str) -> None:
    """Make Docker look like a fresh machine for this image."""
    remove_images(client, [image_tag, layer_cache_ref(spec)])


def main() -> int:
    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--image", choices=("small", "agent"), default="small")
    args = parser.parse_args()

    client = connect()
    base = ensure_base_image(client)
    os.environ.setdefault("BOTTLE_REGISTRY_IMAGE", build_registry_image(client, base))
    os.environ["BOTTLE_LAYER_CACHE"] = "0"  # a cold build: no layer cache kept between rounds
    runs: dict[str, list[float]] = {"cold_build": [], "pull_by_key": [], "fetch_verify": []}
    registry = start_registry(
        client, {"bot-bottle.bench": "1"}, os.environ["BOTTLE_REGISTRY_IMAGE"]
    )
    image_tag = ""
    try:
        cache = RemoteCache(parse_location(f"127.0.0.1:{registry.port}/bench/bot-bottle"))
        wait_ready(cache)
        with tempfile.TemporaryDirectory(prefix="bench-shared-") as scratch:
            root = Path(scratch)
            if args.image == "small":
                spec = small_build_spec(write_small_context(root / "context"), base)
            else:
                spec = repository_agent_spec(base)
            for index in range(args.repeat):
                store = ArtifactStore(root / f"build-{index}")
                started = time.perf_counter()
                built = build(client, spec, no_cache=True, store=store, remote=None)
                runs["cold_build"].append(time.perf_counter() - started)
                image_tag = built.artifact.image_tag
                if index == 0:
                    cache.push(built.artifact, spec.name)
                forget(client, spec, image_tag)
                store = ArtifactStore(root / f"pull-{index}")
                started = time.perf_counter()
                pulled = build(client, spec, store=store, remote=cache, require_cache=True)
                runs["pull_by_key"].append(time.perf_counter() - started)
                assert pulled.pulled and pulled.artifact.digest == built.artifact.digest
                # The part of the pull that is not `docker load`: fetch, hash, store.
                started = time.perf_counter()
                cache.pull(built.artifact.input_key, ArtifactStore(root / f"fetch-{index}"))
                runs["fetch_verify"].append(time.perf_counter() - started)
                forget(client, spec, image_tag)
    finally:
        remove_registry(client, registry.container_id)
        if image_tag:
            remove_images(client, [image_tag])

    median = medians(runs)
    pull_over_build = round(median["pull_by_key"] / median["cold_build"], 3)
    result = {
        "image": args.image,
        "repeat": args.repeat,
        "median_seconds": {name: round(seconds, 3) for name, seconds in median.items()},
        "pull_over_build": pull_over_build,
    }
    print_result(
        result,
        as_json=args.json,
        lines=[
            *median_lines(median, repeat=args.repeat, show=lambda s: f"{s:8.2f} s", width=12),
            f"pull by key / cold build: {pull_over_build}x",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
