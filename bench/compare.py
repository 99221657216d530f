#!/usr/bin/env python3
"""composer against `buildah bud --layers` on the Containerfile `composer containerfile`
writes, from one command; prints a table of ratios and saves the raw numbers as JSON.

    python3 bench/compare.py [--runs 5] [--json bench/results-compare-DATE.json] [--work DIR]
    python3 bench/compare.py --show bench/results-compare-DATE.json     (the table again)

(as root; needs buildah, podman and debootstrap). Everything happens in a private
containers-storage and podman config under the work folder (a temp folder unless --work
names one to keep between runs); bud's cache mounts go there too (TMPDIR). Both tools
build from the same debootstrap base, which composer bootstraps once. Each case runs
--runs times, composer and bud alternating which goes first; a figure is the median with
min and max. Cases:

  noop        no-op rebuild of a generated 16-module recipe (small files, a script, env)
  noop-500    the same with 500 unrelated images in the storage (composer: <= 1.2 x noop)
  change-K    change module K of 16 (first, middle, last): composer build, export included
              (its default: OCI layout + archive), against bud
  core-1      tests/recipes/core-test.toml (the CI recipe: a package install, scripts,
              hooks): change its 2nd module (jq); composer with and without its export
  core-cold   the core recipe with every module layer missing (its first module's file
              changed; base and package downloads cached): time and image size
  plan-100    `composer plan` of a generated 100-module recipe (target <= 0.2 s)
  plan-tf     `composer plan` of recipes/turboflow.toml

With --full (or named in --cases), recipes/turboflow.toml itself (22 GB; ~1 h on 2 cores,
~60 GB of disk):

  tf-cold     composer's cold build (every module layer and its first export, compressed
              beside the build; the base bootstrap reported apart): time, size
  tf-last     change the last module (agents' extra_dir, in a recipe extending turboflow's,
              with its lock's agents inputs recomputed), --runs times: composer build with
              its export (seconds and bytes from its --report); then --runs no-op rebuilds
  tf-bud      bud on composer's Containerfile, FROM composer's base: cold, then the same
              change --runs times. composer's module layers are removed first: both images
              and the layout do not fit 60 GB, so the runs cannot alternate with composer's
  tf-layers   after those, in the same --work (both download caches warm): composer's cold
              build with --no-archive (nothing compressed beside it; its cache folder emptied
              but the downloads), then bud's cold build, each with the other's images removed
composer exports turboflow as the OCI layout only (--no-oci-archive): the archive beside it
would be 11 GB more on the disk, and its tail append is measured by core-1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.reconcile import edited  # noqa: E402  (a recipe with one option changed, and its lock)
from tests.conftest import write_container_config  # noqa: E402  (the tests' private podman config)

ROOT = Path(__file__).resolve().parent.parent

SYNTH_MODULES = 16
PLAN_MODULES = 100
FILLER_IMAGES = 500


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        (work / "tmp").mkdir(parents=True, exist_ok=True)
        # The tests' private storage and podman config; bud's cache mounts under TMPDIR.
        self.env = dict(os.environ, **write_container_config(work), TMPDIR=str(work / "tmp"))
        # As on a user's machine: Python caches composer's byte code between runs.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.composer = [sys.executable, "-m", "composer", "--cache-dir", str(work / "cache")]

    def run(self, argv: list[str], cwd: Path = ROOT) -> str:
        result = subprocess.run(argv, env=self.env, cwd=cwd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"bench: {' '.join(argv)} exited {result.returncode}\n{result.stdout[-2000:]}\n"
                             f"{result.stderr[-2000:]}")
        return result.stdout

    def timed(self, argv: list[str], cwd: Path = ROOT) -> float:
        started = time.perf_counter()
        self.run(argv, cwd)
        return time.perf_counter() - started

    def build(self, recipe: Path, *extra: str) -> list[str]:
        return [*self.composer, "build", "-q", "-o", str(recipe.parent / "out"), *extra, str(recipe)]

    def containerfile(self, recipe: Path, folder: Path | None = None) -> list[str]:
        """Write recipe's Containerfile and context (untimed) into folder (default: the
        recipe's peer/); the bud argv that builds it."""
        target = (folder or recipe.parent / "peer") / "Containerfile"
        self.run([*self.composer, "containerfile", "-o", str(target), str(recipe)])
        context = next(target.parent.glob("*.context"))
        # The steps mount the host's CA bundle from the context, as composer mounts it.
        return ["buildah", "bud", "--layers", "--quiet", "--format", "docker", "--identity-label=false",
                "--isolation", "chroot", "-t", f"localhost/peer-{recipe.stem}:bench", "-f", str(target),
                str(context)]

    def size(self, image: str) -> int:
        return int(self.run(["podman", "image", "inspect", "--format", "{{.Size}}", image]).strip())


def synth_recipe(folder: Path, count: int, prefix: str, scripts: bool) -> Path:
    """A recipe of count small modules on the core test recipe's base."""
    layers = folder / "layers"
    for i in range(1, count + 1):
        name = f"{prefix}{i:03d}"
        module = layers / name
        (module / "files").mkdir(parents=True, exist_ok=True)
        (module / "files" / "data.txt").write_text(f"{name}\n" + "x" * 4000 + "\n")
        text = (f'name = "{name}"\nversion = "1.0.0"\ndescription = "bench module {i}"\n\n'
                f'[options.value]\ntype = "string"\ndefault = "{name}"\n\n'
                f'[env]\n{name.upper()}_HOME = "/opt/{name}"\n\n'
                f'[[files]]\nsrc = "files/data.txt"\ndest = "/opt/{name}/data.txt"\nmode = "0644"\n')
        if scripts:
            (module / "scripts").mkdir(exist_ok=True)
            (module / "scripts" / "write.sh").write_text(
                '#!/bin/sh\nset -eu\nprintf \'%s\\n\' "$COMPOSER_OPT_VALUE" > "/opt/$COMPOSER_MODULE/value"\n')
            text += '\n[[scripts]]\nrun = "scripts/write.sh"\n'
        (module / "module.toml").write_text(text)
    recipe = folder / f"{folder.name}.toml"
    body = "".join(f'[[layers]]\nmodule = "{prefix}{i:03d}"\n\n' for i in range(1, count + 1))
    recipe.write_text(f'name = "{folder.name}"\ntag = "bench"\n\n[base]\nfrom = "debootstrap:trixie"\n'
                      f'components = ["main"]\n\n{body}')
    return recipe


def stats(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "raw": [round(v, 3) for v in values]}


def pairs(runs: int, a: Callable[[int], float], b: Callable[[int], float]) -> tuple[list[float], list[float]]:
    """runs timings of a and b; a goes first on even runs, b on odd ones."""
    xs: list[float] = []
    ys: list[float] = []
    for i in range(runs):
        if i % 2 == 0:
            xs.append(a(i))
            ys.append(b(i))
        else:
            ys.append(b(i))
            xs.append(a(i))
    return xs, ys


def machine(bench: Bench) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True)
    return {
        "commit": commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "buildah": bench.run(["buildah", "--version"]).strip(),
        "storage": "overlay (private graph root)",
        "load_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Write the raw numbers here.")
    parser.add_argument("--work", type=Path, help="Work folder to keep (default: a temp folder, removed).")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"Comma-separated, run in this order (default: {','.join(CASES)}).")
    parser.add_argument("--full", action="store_true",
                        help=f"Also the turboflow cases ({','.join(FULL_CASES)}): about an hour and 60 GB.")
    parser.add_argument("--show", type=Path, help="Print the table of a saved JSON file; measure nothing.")
    args = parser.parse_args()
    if args.full:
        args.cases += "".join(f",{name}" for name in FULL_CASES if name not in args.cases.split(","))
    if args.show:
        print_table(json.loads(args.show.read_text()))
        return
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="composer-compare-"))
    bench = Bench(work)
    doc: dict[str, Any] = {"machine": machine(bench), "runs": args.runs, "cases": {}}
    save = (lambda: args.json.write_text(json.dumps(doc, indent=1) + "\n")) if args.json else (lambda: None)
    try:
        measure(bench, args.runs, doc, args.cases.split(","), save)
    finally:
        doc["machine"]["load_end"] = list(os.getloadavg())
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1) + "\n")
        if not args.work:
            subprocess.run(["buildah", "rm", "--all"], env=bench.env, capture_output=True)
            subprocess.run(["podman", "system", "reset", "--force"], env=bench.env, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    print_table(doc)


CASES = ("noop", "plan", "change-last", "core-1", "noop-500", "change-middle", "core-cold", "change-first")
FULL_CASES = ("tf-cold", "tf-last", "tf-bud", "tf-layers")
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def measure(bench: Bench, runs: int, doc: dict[str, Any], wanted: list[str], save: Callable[[], None]) -> None:
    """The cases in wanted, in that order; the document is saved after each one."""
    cases = doc["cases"]
    core_dir = bench.work / "core"
    if not core_dir.exists():
        shutil.copytree(ROOT / "tests" / "recipes", core_dir, ignore=shutil.ignore_patterns("__pycache__"))
    core = core_dir / "core-test.toml"
    if all(name in FULL_CASES for name in wanted):
        measure_turboflow(bench, runs, doc, wanted, save)
        return
    synth = synth_recipe(bench.work / "synth", SYNTH_MODULES, "s", scripts=True)
    log("first builds (base bootstrap included; nothing when --work kept them)")
    doc["first_build_seconds"] = {"core composer": bench.timed(bench.build(core))}
    core_bud = bench.containerfile(core)
    doc["first_build_seconds"]["core bud"] = bench.timed(core_bud)
    doc["first_build_seconds"]["synth composer"] = bench.timed(bench.build(synth))
    synth_bud = bench.containerfile(synth)
    doc["first_build_seconds"]["synth bud"] = bench.timed(synth_bud)
    save()

    def noop() -> dict[str, Any]:
        c, b = pairs(runs, lambda i: bench.timed(bench.build(synth)), lambda i: bench.timed(synth_bud))
        return {"composer": stats(c), "bud": stats(b)}

    def change(label: str, k: int) -> dict[str, Any]:
        data = synth.parent / "layers" / f"s{k:03d}" / "files" / "data.txt"
        text = data.read_text()

        def edit(i: int) -> None:
            data.write_text(text + f"change {label} {i} {time.monotonic()}\n")

        def composer_run(i: int) -> float:
            edit(i)
            return bench.timed(bench.build(synth))

        def bud_run(i: int) -> float:
            edit(i)
            argv = bench.containerfile(synth)  # the context holds the module's copy
            return bench.timed(argv)

        c, b = pairs(runs, composer_run, bud_run)
        data.write_text(text)
        settle(bench, synth)
        return {"k": k, "n": SYNTH_MODULES, "composer": stats(c), "bud": stats(b)}

    def core_1() -> dict[str, Any]:
        jq = core_dir / "layers" / "jq" / "module.toml"
        jq_text = jq.read_text()
        no_export: list[float] = []

        def edit(i: int) -> None:
            jq.write_text(jq_text + f"# bench change {i} {time.monotonic()}\n")

        def composer_run(i: int) -> float:
            edit(i)
            seconds = bench.timed(bench.build(core))
            edit(i)
            no_export.append(bench.timed(bench.build(core, "--no-archive")))
            return seconds

        def bud_run(i: int) -> float:
            edit(i)
            argv = bench.containerfile(core)
            return bench.timed(argv)

        c, b = pairs(runs, composer_run, bud_run)
        jq.write_text(jq_text)
        settle(bench, core)
        return {"composer": stats(c), "composer --no-archive": stats(no_export), "bud": stats(b)}

    def core_cold() -> dict[str, Any]:
        motd = core_dir / "layers" / "motd" / "files" / "motd"
        motd_text = motd.read_text()

        def edit(i: int) -> None:
            motd.write_text(motd_text + f"bench {i} {time.monotonic()}\n")

        def composer_run(i: int) -> float:
            edit(i)
            return bench.timed(bench.build(core, "--no-archive"))

        def bud_run(i: int) -> float:
            edit(i)
            argv = bench.containerfile(core)
            return bench.timed(argv)

        c, b = pairs(runs, composer_run, bud_run)
        # Each tool's last image (of its own last change): the names both tag.
        result = {"composer": stats(c), "bud": stats(b),
                  "size composer": bench.size("localhost/composer-core-test:test"),
                  "size bud": bench.size("localhost/peer-core-test:bench")}
        motd.write_text(motd_text)
        settle(bench, core)
        return result

    def noop_500() -> dict[str, Any]:
        have = bench.run(["buildah", "images", "--format", "{{.Name}}"]).split().count("localhost/filler")
        if have < FILLER_IMAGES:
            log(f"adding {FILLER_IMAGES - have} unrelated images")
            ctr = bench.run(["buildah", "from", "--quiet", "scratch"]).strip()
            for i in range(have, FILLER_IMAGES):
                bench.run(["buildah", "config", "--label", f"bench.filler={i}", ctr])
                bench.run(["buildah", "commit", "--quiet", ctr, f"localhost/filler:{i}"])
            bench.run(["buildah", "rm", ctr])
        result = noop()
        if "noop" in cases:
            empty = cases["noop"]["composer"]["median"]
            result["composer vs empty store"] = round(result["composer"]["median"] / empty, 2)
        return result

    def plan() -> dict[str, Any]:
        plan100 = synth_recipe(bench.work / "plan100", PLAN_MODULES, "p", scripts=False)
        result = {}
        for label, recipe in (("100 modules", plan100), ("turboflow", ROOT / "recipes" / "turboflow.toml")):
            bench.run([*bench.composer, "plan", str(recipe)])  # the schema validation cache
            online = [bench.timed([*bench.composer, "plan", str(recipe)]) for _ in range(runs)]
            offline = [bench.timed([*bench.composer, "plan", "--offline", str(recipe)]) for _ in range(runs)]
            result[f"composer plan {label}"] = stats(online)
            result[f"composer plan --offline {label}"] = stats(offline)
        return result

    run_case: dict[str, Callable[[], dict[str, Any]]] = {
        "noop": noop, "plan": plan, "core-1": core_1, "core-cold": core_cold, "noop-500": noop_500,
        "change-first": lambda: change("first", 1), "change-middle": lambda: change("middle", SYNTH_MODULES // 2),
        "change-last": lambda: change("last", SYNTH_MODULES),
    }
    for name in (n for n in wanted if n not in FULL_CASES):
        log(name)
        cases[name] = run_case[name]()
        save()
    measure_turboflow(bench, runs, doc, [n for n in wanted if n in FULL_CASES], save)


def measure_turboflow(bench: Bench, runs: int, doc: dict[str, Any], wanted: list[str],
                      save: Callable[[], None]) -> None:
    """The --full cases, on recipes/turboflow.toml. A change to its last module is a recipe
    in the work folder extending it with agents' extra_dir set to a new value, and its lock
    the project's with agents' inputs recomputed (the packages stay locked), as a team's
    edit and `composer lock` leave them (bench/reconcile.py's `edited`). composer goes
    first, then bud after composer's module layers are removed: both images side by side
    (22 GB + bud's) and composer's layout do not fit a 60 GB disk."""
    if not wanted:
        return
    cases = doc["cases"]
    folder = bench.work / "tf"
    folder.mkdir(exist_ok=True)
    report = folder / "report.json"

    def edit(i: int) -> Path:
        return edited(ROOT, TURBOFLOW, folder / f"edit-{i}", "agents", "extra_dir",
                      f"/srv/bench-{i}-{time.monotonic_ns()}")

    def build(recipe: Path, *export: str) -> tuple[float, dict[str, Any]]:
        """composer's build of recipe (export: its flags, default the OCI layout in out/):
        the wall seconds, and its report."""
        export = export or ("-o", str(folder / "out"), "--no-oci-archive")
        seconds = bench.timed([*bench.composer, "build", "-q", *export, "--report", str(report), str(recipe)])
        return seconds, json.loads(report.read_text())

    def seconds_of(rep: dict[str, Any], kind: str) -> float:
        """The summed seconds of the report's layers of that kind (base, module)."""
        return sum(layer["seconds"] for layer in rep["layers"] if layer["kind"] == kind)

    if "tf-cold" in wanted:
        log("tf-cold: composer")
        seconds, rep = build(TURBOFLOW)
        base = seconds_of(rep, "base")
        cases["tf-cold"] = {
            "composer": stats([seconds - base]), "composer base bootstrap": stats([base]),
            "composer first export": stats([rep["export"]["layout"]["seconds"]]),
            "composer early export": stats([rep["export"].get("early", {}).get("seconds", 0.0)]),
            "composer module layers summed": stats([seconds_of(rep, "module")]),
            "size composer": bench.size(rep["image"]),
        }
        save()
    if "tf-last" in wanted:
        log("tf-last: composer")
        export: list[float] = []
        written: list[int] = []
        times: list[float] = []
        recipe = TURBOFLOW
        for i in range(runs):
            recipe = edit(i)
            seconds, rep = build(recipe)
            times.append(seconds)
            export.append(rep["export"]["layout"]["seconds"])
            written.append(rep["export"]["layout"]["bytes_written"])
        noop = [build(recipe)[0] for _ in range(runs)]  # the last change's recipe, built
        cases["tf-last"] = {"composer": stats(times), "composer export": stats(export),
                            "export bytes written": written, "composer no-op": stats(noop)}
        save()

    def base_only() -> None:
        """Every image of the storage removed but composer's base (bootstrapped by tf-cold)."""
        base_ref = f"localhost/composer-cache:{json.loads(report.read_text())['layers'][0]['key']}"
        base_id = bench.run(["buildah", "images", "--quiet", "--no-trunc", base_ref]).split()[0]
        ids = set(bench.run(["buildah", "images", "--quiet", "--no-trunc", "--all"]).split()) - {base_id}
        bench.run(["buildah", "rm", "--all"])
        for image in ids:  # one at a time: removing one may already have removed another
            subprocess.run(["buildah", "rmi", "--force", image], env=bench.env, capture_output=True)
        shutil.rmtree(folder / "out", ignore_errors=True)

    if "tf-bud" in wanted:
        log("tf-bud: composer's module layers removed (disk), its base kept")
        base_only()
        log("tf-bud: cold")
        cold = bench.timed(bench.containerfile(TURBOFLOW, folder / "peer"))
        last = [bench.timed(bench.containerfile(edit(runs + i), folder / "peer")) for i in range(runs)]
        cases.setdefault("tf-cold", {}).update({"bud": stats([cold]),
                                                "size bud": bench.size("localhost/peer-turboflow:bench")})
        cases.setdefault("tf-last", {})["bud"] = stats(last)
        doc["tf order"] = "composer's runs first, then bud's (not alternating: disk)"
        save()
    if "tf-layers" in wanted:
        # After tf-cold and tf-bud (the same --work): both download caches warm, so the
        # layers' own work is compared; composer exports nothing (no compression beside).
        log("tf-layers: composer --no-archive")
        base_only()
        for entry in (bench.work / "cache").iterdir():  # as cold as tf-cold but for the downloads
            if entry.name not in ("packages", "debootstrap"):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        seconds, rep = build(TURBOFLOW, "--no-archive")
        cases["tf-layers"] = {"composer": stats([seconds]),
                              "composer module layers summed": stats([seconds_of(rep, "module")])}
        save()
        log("tf-layers: bud")
        base_only()
        cases["tf-layers"]["bud"] = stats([bench.timed(bench.containerfile(TURBOFLOW, folder / "peer"))])
        save()


def settle(bench: Bench, recipe: Path) -> None:
    """Both tools built from the recipe as it is now (untimed), so the next case starts equal."""
    bench.run(bench.build(recipe))
    bench.run(bench.containerfile(recipe))


def print_table(doc: dict[str, Any]) -> None:
    m = doc["machine"]
    print(f"commit {m['commit']}, {m['cpus']} cpus, {m['buildah']}, load {m['load_start'][0]:.1f} -> "
          f"{m.get('load_end', [0])[0]:.1f}, {doc['runs']} runs, median (min-max) seconds")
    print(f"{'case':<34} {'composer':>22} {'bud':>22} {'ratio':>6}")
    for name, case in doc["cases"].items():
        fmt = lambda s: f"{s['median']:.3f} ({s['min']:.2f}-{s['max']:.2f})"  # noqa: E731
        if "bud" in case and "composer" in case:
            ratio = case["composer"]["median"] / case["bud"]["median"]
            print(f"{name:<34} {fmt(case['composer']):>22} {fmt(case['bud']):>22} {ratio:>6.2f}")
            for extra in ("composer --no-archive",):
                if extra in case:
                    r = case[extra]["median"] / case["bud"]["median"]
                    print(f"{name + ' (' + extra[9:] + ')':<34} {fmt(case[extra]):>22} {'':>22} {r:>6.2f}")
            for extra in ("composer base bootstrap", "composer first export", "composer early export",
                          "composer module layers summed", "composer export", "composer no-op"):
                if extra in case:
                    print(f"{name + ' ' + extra[9:]:<34} {fmt(case[extra]):>22}")
            if "export bytes written" in case:
                mb = statistics.median(case["export bytes written"]) / 1e6
                print(f"{name + ' export MB written':<34} {mb:>22.1f}")
        else:
            for label, s in case.items():
                if isinstance(s, dict):
                    print(f"{name + ' ' + label:<34} {fmt(s):>22}")
        if "size composer" in case and "size bud" in case:
            print(f"{name + ' image size MB':<34} {case['size composer'] / 1e6:>22.1f} "
                  f"{case['size bud'] / 1e6:>22.1f} {case['size composer'] / case['size bud']:>6.2f}")
        if "composer vs empty store" in case:
            print(f"{name + ' composer / empty store':<34} {case['composer vs empty store']:>22.2f}")


if __name__ == "__main__":
    main()
