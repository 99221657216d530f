#!/usr/bin/env python3
"""Rebuild times: composer against `buildah bud --layers` on an equivalent Containerfile.

Both build the core test recipe (tests/recipes/core-test.toml: trixie base + motd, jq,
greeting, marker) in one private storage, then measure, side by side in the same run:
  - a fully cached rebuild (nothing changed),
  - a one-module change (the 2nd module's file changes: it and the layers after rebuild).
The peer starts FROM composer's own base image, so only the layers are compared.

    python3 bench/rebuild.py [--runs 5]        (as root; needs buildah and debootstrap)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import write_container_config  # noqa: E402  (the tests' private podman config)

RECIPE_DIR = ROOT / "tests" / "recipes"

CONTAINERFILE = """\
FROM {base}
COPY layers/motd/files/motd /etc/motd-composer
ENV MOTD_FILE=/etc/motd-composer PATH=/opt/motd/bin:$PATH
COPY layers/jq/module.toml /tmp/jq-module.toml
RUN apt-get update -q && apt-get install -y -q --no-install-recommends jq && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /etc/greeting && printf 'hello %s\\n' devpod > /etc/greeting/text && echo 3 > /etc/greeting/count
COPY hooks/50-greet.sh /etc/composer/hooks.d/50-greet.sh
RUN mkdir -p /opt/marker && echo plain > /opt/marker/value
ENV COMPOSER_TEST=1
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="composer-bench-"))
    # Storage, run state, locks and networks all under work: the `podman system reset` at
    # the end resets this bench's podman, never the host's.
    env = dict(os.environ, **write_container_config(work))
    # As on a user's machine: Python caches composer's byte code between runs.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tree = work / "recipes"
    shutil.copytree(RECIPE_DIR, tree, ignore=shutil.ignore_patterns("__pycache__"))
    recipe = tree / "core-test.toml"
    composer = [sys.executable, "-m", "composer", "--cache-dir", str(work / "cache")]
    build = [*composer, "build", "-q", "--no-archive", str(recipe)]
    try:
        first = timed(build, env, ROOT)
        plan = json.loads(subprocess.run([*composer, "plan", "--json", str(recipe)], env=env, cwd=ROOT,
                                         check=True, capture_output=True, text=True).stdout)
        base = f"localhost/composer-cache:{plan['base']['key']}"
        (tree / "Containerfile").write_text(CONTAINERFILE.format(base=base))
        bud = ["buildah", "bud", "--layers", "--quiet", "--isolation", "chroot", "-t", "localhost/peer:bench",
               "-f", "Containerfile", "."]
        timed(bud, env, tree)

        results: dict[str, list[float]] = {"composer cached": [], "bud cached": [],
                                           "composer 1-module change": [], "bud 1-module change": []}
        jq_module = tree / "layers" / "jq" / "module.toml"
        original = jq_module.read_text()
        for i in range(args.runs):
            results["composer cached"].append(timed(build, env, ROOT))
            results["bud cached"].append(timed(bud, env, tree))
            jq_module.write_text(original + f"# bench change {i}\n")
            results["composer 1-module change"].append(timed(build, env, ROOT))
            results["bud 1-module change"].append(timed(bud, env, tree))
            jq_module.write_text(original)
            timed(build, env, ROOT)
            timed(bud, env, tree)
    finally:
        subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True)
        subprocess.run(["podman", "system", "reset", "--force"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"first composer build (base bootstrap included): {first:.1f}s")
    print(f"{'case':<28} {'median s':>9} {'min s':>7}   (runs={args.runs})")
    medians = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        print(f"{name:<28} {medians[name]:>9.3f} {min(values):>7.3f}")
    print(f"ratio composer/bud, cached:          {medians['composer cached'] / medians['bud cached']:.2f}")
    print(f"ratio composer/bud, 1-module change: "
          f"{medians['composer 1-module change'] / medians['bud 1-module change']:.2f}")


if __name__ == "__main__":
    main()
