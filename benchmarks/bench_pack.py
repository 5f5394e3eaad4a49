"""Pack pipeline: direct archive vs. ephemeral registry hop for the same artifact, and a cache hit.

Runs the engine's real pipeline (archive writing, registry container, HTTP push, cache rename)
against the smolvm contract fake (microVMs cannot boot on CI machines; the fake really reads the
archive or pulls and verifies every blob over HTTP, as smolvm does before flattening). Reports
medians and ratios measured in the same run:

* ``registry_over_direct``: what the registry hop costs, for smolvm releases without archives;
* ``direct_over_cache_hit``: what the pack cache saves on every launch after the first.

    python benchmarks/bench_pack.py [--layer-mib 64] [--repeat 5] [--json]

Needs a Docker daemon and the test registry image (built here from the base image when missing).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import arguments, median_lines, medians, print_result, timed
from bottle_engine.artifacts.base import ensure_base_image
from bottle_engine.artifacts.pack import pack_artifact
from bottle_engine.dockerapi import connect
from tests.fakes.fixtures import build_registry_image, install_fake_smolvm
from tests.fakes.oci_layout import make_layout


def main() -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--layer-mib", type=int, default=64, help="incompressible layer size")
    args = parser.parse_args()

    client = connect()
    os.environ.setdefault(
        "BOTTLE_REGISTRY_IMAGE", build_registry_image(client, ensure_base_image(client))
    )
    with tempfile.TemporaryDirectory(prefix="bench-pack-") as scratch:
        root = Path(scratch)
        fake = install_fake_smolvm(root / "smolvm", "1.32.2")
        os.environ["BOTTLE_SMOLVM"] = str(fake.binary)
        artifact = make_layout(
            root, "bench", payload_bytes=args.layer_mib << 20, random_payload=True
        )
        runs: dict[str, list[float]] = {"direct": [], "registry": [], "cache_hit": []}
        for index in range(args.repeat):
            # A fresh cache each time, so both paths really pack; same artifact throughout.
            for method in ("direct", "registry"):
                os.environ["BOTTLE_CACHE_DIR"] = str(root / f"cache-{method}-{index}")
                runs[method].append(
                    timed(
                        lambda method=method: pack_artifact(
                            artifact, via_registry=method == "registry", docker_client=client
                        )
                    )
                )
            runs["cache_hit"].append(timed(lambda: pack_artifact(artifact)))

    median = medians(runs)
    median_seconds = {name: round(seconds, 4) for name, seconds in median.items()}
    registry_over_direct = round(median["registry"] / median["direct"], 2)
    direct_over_cache_hit = round(median["direct"] / median["cache_hit"], 1)
    result = {
        "layer_mib": args.layer_mib,
        "repeat": args.repeat,
        "median_seconds": median_seconds,
        "registry_over_direct": registry_over_direct,
        "direct_over_cache_hit": direct_over_cache_hit,
    }
    print_result(
        result,
        as_json=args.json,
        lines=[
            *median_lines(
                median_seconds, repeat=args.repeat, show=lambda s: f"{s * 1000:9.1f} ms", width=10
            ),
            f"registry hop / direct: {registry_over_direct}x",
            f"direct / cache hit:    {direct_over_cache_hit}x",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
