#!/usr/bin/env python3
"""A fanned-out build against a one-machine build of the same recipe, both as the unprivileged
Pods `composer job` prints, played by podman on this one machine.

Setup (not timed): a private storage builds the composer image (tests/recipes/composer-ci.toml)
and a private docker-registry on 127.0.0.1 serves as the cache, which the Pods reach at
10.0.2.2 (slirp4netns). Then, per run, each case with a cache repository of its own (so every
layer is built; blobs an earlier run pushed are not uploaded again, for either case), in an
order that alternates from run to run:
  - fanout: `composer job RECIPE --fan-out`: the parent Pod, then the Indexed Job's Pods all at
            once (one per restacked module), then the final Pod; wall time from the first Pod's
            start to the final Pod's end.
  - alone:  `composer job RECIPE`: one Pod builds the whole recipe.
Each Pod has storage of its own (a fresh emptyDir), as on a cluster. On one machine the
fan-out cannot be faster: its Pods share these cores and each pulls what the one before
pushed. What it shows is the price of the stages (pulls, pushes, three storages) against
which a cluster's parallelism is set; `composer plan --cluster` estimates that side.

    python3 bench/fanout.py [--runs 3] [--json bench/results-fanout-DATE.json]
    (as root; needs buildah, podman, skopeo, slirp4netns, debootstrap and docker-registry)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.registry import Registry, machine, machine_info, summary  # noqa: E402
from tests.conftest import Containers, copy_tree  # noqa: E402
from tests.integration.helpers import HOST_LOOPBACK, job_pod, start_pod, wait_pod  # noqa: E402

RECIPES = ROOT / "tests" / "recipes"
RECIPE = RECIPES / "fanout-ci.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Write the raw figures here.")
    args = parser.parse_args()
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="composer-bench-fanout-"))
    work.chmod(0o755)  # root in a Pod is a stranger to this machine: it must reach /work
    (work / "registry").mkdir()
    registry = Registry(work / "registry")
    inside = registry.host.replace("127.0.0.1", HOST_LOOPBACK)
    recipes = copy_tree(RECIPES, work / "recipes")
    registries_conf = work / "registries.conf"
    registries_conf.write_text(f'[[registry]]\nlocation = "{inside}"\ninsecure = true\n')
    registries_conf.chmod(0o644)
    pods = work / "pods"
    pods.mkdir()
    runs: list[dict[str, Any]] = []
    try:
        with machine(work, "host") as (env, folder):
            box = Containers(folder, env, folder / "cache")
            started = time.perf_counter()
            box.composer("build", "-q", "--no-archive", str(RECIPES / "composer-ci.toml"))
            print(f"composer image: {time.perf_counter() - started:.1f}s", flush=True)
            image = "localhost/composer-ci:test"

            def jobs(*extra: str) -> list[dict[str, Any]]:
                text = box.composer("job", str(RECIPE), "--image", image, "--recipe-path", "/work/fanout-ci.toml",
                                    *extra).stdout
                return list(yaml.safe_load_all(text))

            def run_pod(pod: dict[str, Any]) -> str:
                code, logs, _ = wait_pod(box, start_pod(box, pod, pods))
                if code != "0":
                    raise SystemExit(f"a Pod exited {code}:\n{logs}")
                return logs

            def fanout(i: int) -> dict[str, Any]:
                cache = f"{inside}/fanout-{i}-cache"
                parent, modules, final = jobs("--fan-out", "--cache", cache, "--push", f"{inside}/fanout:{i}")
                started = time.perf_counter()
                run_pod(job_pod(parent, recipes, registries_conf))
                parent_done = time.perf_counter()
                count = int(modules["spec"]["completions"])
                manifests = [start_pod(box, job_pod(modules, recipes, registries_conf, index=n), pods)
                             for n in range(count)]
                for manifest in manifests:
                    code, logs, _ = wait_pod(box, manifest)
                    if code != "0":
                        raise SystemExit(f"an index exited {code}:\n{logs}")
                modules_done = time.perf_counter()
                run_pod(job_pod(final, recipes, registries_conf))
                done = time.perf_counter()
                return {"seconds": done - started, "parent": parent_done - started,
                        "modules": modules_done - parent_done, "final": done - modules_done}

            def alone(i: int) -> dict[str, Any]:
                (job,) = jobs("--cache", f"{inside}/alone-{i}-cache", "--push", f"{inside}/alone:{i}")
                started = time.perf_counter()
                run_pod(job_pod(job, recipes, registries_conf))
                return {"seconds": time.perf_counter() - started}

            cases = {"fanout": fanout, "alone": alone}
            names = list(cases)
            for i in range(args.runs):
                order = names[i % 2:] + names[:i % 2]
                for name in order:
                    figures = cases[name](i)
                    runs.append({"run": i, "case": name, "load": os.getloadavg()[0], **figures})
                    stages = "".join(f"  {k} {figures[k]:.1f}s" for k in ("parent", "modules", "final")
                                     if k in figures)
                    print(f"run {i} {name:<6} {float(figures['seconds']):6.1f}s{stages}", flush=True)
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)

    seconds = {name: [float(r["seconds"]) for r in runs if r["case"] == name] for name in ("fanout", "alone")}
    result = {
        "recipe": str(RECIPE.relative_to(ROOT)), "runs": args.runs, "machine": info,
        "seconds": {name: summary(v) for name, v in seconds.items()},
        "stages": {k: summary([float(r[k]) for r in runs if r["case"] == "fanout"])
                   for k in ("parent", "modules", "final")},
        "ratio": statistics.median(seconds["fanout"]) / statistics.median(seconds["alone"]),
        "paired_ratios": summary([x / y for x, y in zip(seconds["fanout"], seconds["alone"], strict=True)]),
        "raw": runs,
    }
    print(json.dumps({k: result[k] for k in ("seconds", "stages", "ratio", "paired_ratios")}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
