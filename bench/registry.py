#!/usr/bin/env python3
"""A fresh machine with a warm registry cache against a cold build, composer's pull of
a built image against `skopeo copy` of the same image, and a verified pull (--verify-key)
against an unverified one of the same signed cache.

A private docker-registry on 127.0.0.1 (config and storage of its own, like the tests'
fixture) is warmed once: a seed storage builds the recipe with --cache-to REPO, signing
each layer with a fresh key pair (--sign-key), and pushes the image with --push. Then, per
run, each in a fresh storage and a fresh composer cache (a new machine), in an order that
rotates from run to run:
  - cold:     composer build RECIPE --no-archive                    (no registry)
  - warm:     composer build RECIPE --no-archive --cache-from REPO  (every layer pulled, unverified)
  - verified: the same with --verify-key PUB                        (every layer's signature checked)
  - skopeo:   skopeo copy docker://IMAGE containers-storage:IMAGE   (the final image alone)
Bytes moved: for cold, what the build downloaded (the debootstrap and package downloads
composer keeps in its cache); for warm and skopeo, the bytes the registry served (its
access log). The raw figures, the commit and the machine go to a JSON file.

    python3 bench/registry.py [--runs 5] [--full] [--cases warm,verified] [--json bench/results-registry-DATE.json]
    (as root; needs buildah, podman, skopeo, debootstrap and docker-registry)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import write_container_config  # noqa: E402  (the tests' private podman config)

CI_RECIPE = ROOT / "tests" / "recipes" / "core-test.toml"
FULL_RECIPE = ROOT / "tests" / "recipes" / "devpod-ci.toml"
# docker-registry's access log: ... "GET /v2/<repo>/blobs/sha256:... HTTP/1.1" 200 <bytes> ...
ACCESS = re.compile(r'"(?:GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) (\d+)')


class Registry:
    """docker-registry on a free port of 127.0.0.1, its log the access log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            self.host = f"127.0.0.1:{s.getsockname()[1]}"
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.log = folder / "registry.log"
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"docker-registry did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def served(self) -> int:
        """Bytes of blobs and manifests served since the last call (the log is then emptied)."""
        time.sleep(0.5)  # the access log line is written after the response
        text = self.log.read_text(errors="replace")
        self.log.write_text("")
        return sum(int(m.group(3)) for m in ACCESS.finditer(text)
                   if m.group(2) == "200" and ("/blobs/" in m.group(1) or "/manifests/" in m.group(1)))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@contextlib.contextmanager
def machine(work: Path, name: str) -> Iterator[tuple[dict[str, str], Path]]:
    """A fresh machine: its own storage, podman config and composer cache; gone afterwards."""
    folder = work / name
    folder.mkdir()
    env = dict(os.environ, **write_container_config(folder))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine
    try:
        yield env, folder
    finally:
        subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True)
        subprocess.run(["podman", "system", "reset", "--force"], env=env, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def composer(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "composer", "--cache-dir", str(folder / "cache"), *args]


def image_id(env: dict[str, str], ref: str) -> str:
    return subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def machine_info() -> dict[str, object]:
    def first_line(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"commit": commit + ("-dirty" if dirty else ""), "host": platform.node(), "kernel": platform.release(),
            "cores": os.cpu_count(), "memory": first_line("grep", "MemTotal", "/proc/meminfo"),
            "load_before": os.getloadavg(), "buildah": first_line("buildah", "--version"),
            "skopeo": first_line("skopeo", "--version"), "python": platform.python_version()}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full", action="store_true", help=f"Build {FULL_RECIPE.relative_to(ROOT)} instead.")
    parser.add_argument("--json", type=Path, help="Write the raw figures here.")
    parser.add_argument("--cases", default="cold,warm,verified,skopeo",
                        help="Which cases to run, comma-separated (default: all four).")
    args = parser.parse_args()
    chosen = [c for c in args.cases.split(",") if c]
    recipe = FULL_RECIPE if args.full else CI_RECIPE
    info = machine_info()

    work = Path(tempfile.mkdtemp(prefix="composer-bench-registry-"))
    (work / "registry").mkdir()
    registry = Registry(work / "registry")
    repo, pushed = f"{registry.host}/bench-cache", f"{registry.host}/bench/image:latest"
    http = "--no-tls-verify"
    runs: list[dict[str, object]] = []
    keys = work / "keys"
    keys.mkdir()
    (keys / "passphrase").write_text("bench passphrase\n")
    subprocess.run([sys.executable, "-m", "composer", "keygen", "--output-prefix", str(keys / "bench"),
                    "--passphrase-file", str(keys / "passphrase")], cwd=ROOT, check=True, capture_output=True)
    sign = ("--sign-key", str(keys / "bench.private"), "--sign-passphrase-file", str(keys / "passphrase"))
    try:
        with machine(work, "seed") as (env, folder):
            report = folder / "report.json"
            seed = timed(composer(folder, "build", "-q", "--no-archive", "--cache-to", repo, "--push", pushed, http,
                                  *sign, "--report", str(report), str(recipe)), env)
            final = json.loads(report.read_text())["layers"][-1]["key"]
            seed_id = image_id(env, f"localhost/composer-cache:{final}")
        registry.served()
        print(f"seed build and push: {seed:.1f}s", flush=True)

        def cold(env: dict[str, str], folder: Path) -> dict[str, object]:
            seconds = timed(composer(folder, "build", "-q", "--no-archive", str(recipe)), env)
            downloaded = sum(folder_bytes(folder / "cache" / name) for name in ("debootstrap", "packages")
                             if (folder / "cache" / name).is_dir())
            return {"seconds": seconds, "bytes": downloaded}

        def warm(env: dict[str, str], folder: Path, *verify: str) -> dict[str, object]:
            report = folder / "report.json"
            seconds = timed(composer(folder, "build", "-q", "--no-archive", "--cache-from", repo, http, *verify,
                                     "--report", str(report), str(recipe)), env)
            document = json.loads(report.read_text())
            assert document["totals"]["misses"] == 0, document["totals"]
            same = image_id(env, f"localhost/composer-cache:{document['layers'][-1]['key']}") == seed_id
            return {"seconds": seconds, "bytes": registry.served(), "same_image": same}

        def copy(env: dict[str, str], folder: Path) -> dict[str, object]:
            seconds = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{pushed}",
                             "containers-storage:localhost/bench/image:latest"], env)
            return {"seconds": seconds, "bytes": registry.served(),
                    "same_image": image_id(env, "localhost/bench/image:latest") == seed_id}

        def verified(env: dict[str, str], folder: Path) -> dict[str, object]:
            return warm(env, folder, "--verify-key", str(keys / "bench.pub"))

        cases = {"cold": cold, "warm": warm, "verified": verified, "skopeo": copy}
        names = [n for n in cases if n in chosen]
        for i in range(args.runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                registry.served()
                with machine(work, f"{name}-{i}") as (env, folder):
                    figures = cases[name](env, folder)
                runs.append({"run": i, "case": name, "load": os.getloadavg()[0], **figures})
                print(f"run {i} {name:<6} {figures['seconds']:7.1f}s {int(figures['bytes']) / 1e6:8.1f} MB",
                      flush=True)
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)  # the key pair too

    seconds = {name: [float(r["seconds"]) for r in runs if r["case"] == name] for name in names}
    moved = {name: [int(r["bytes"]) for r in runs if r["case"] == name] for name in names}
    pairs = [(a, b) for a, b in (("warm", "cold"), ("warm", "skopeo"), ("verified", "warm"))
             if a in names and b in names]
    result = {
        "recipe": str(recipe.relative_to(ROOT)), "runs": args.runs, "machine": info, "seed_seconds": seed,
        "seconds": {name: summary(v) for name, v in seconds.items()},
        "bytes": {name: summary([float(b) for b in v]) for name, v in moved.items()},
        "ratios": {f"{a}/{b}": statistics.median(seconds[a]) / statistics.median(seconds[b]) for a, b in pairs},
        # The same run's cases ran one after the other: on a shared machine their ratio is steadier.
        "paired_ratios": {f"{a}/{b}": summary([x / y for x, y in zip(seconds[a], seconds[b], strict=True)])
                          for a, b in pairs},
        "paired_differences": {f"{a}-{b}": summary([x - y for x, y in zip(seconds[a], seconds[b], strict=True)])
                               for a, b in pairs},
        "raw": runs,
    }
    print(json.dumps({k: result[k] for k in ("seconds", "bytes", "ratios", "paired_ratios", "paired_differences")},
                     indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
