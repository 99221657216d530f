#!/usr/bin/env python3
"""Export times: what writing the image costs after a change to its last, tiny layer.

In a private storage (a temp folder) it builds an image from scratch out of a few host
folders (realistic, partly compressible data) and a block of random bytes, one layer each,
plus a tiny top layer. Each run changes the top layer (a new image) and exports it with
every method, interleaved, each into its own output kept from the previous run:

  archive          buildah push --format oci IMG oci-archive:X.tar   (composer before)
  buildah-layout   buildah push --format oci IMG oci:DIR:TAG         (into the kept layout)
  skopeo-layout    skopeo copy containers-storage:IMG oci:DIR:TAG    (into the kept layout)
  raw-layout       buildah push --disable-compression IMG oci:DIR    (asks for an uncompressed
                   layout; buildah 1.28 compresses anyway: oci: does not accept uncompressed layers)
  composer         composer.emit.oci.export_layout                     (into the kept layout)
  composer+tar     ...and write_oci_archive (kept prefix of the .oci.tar, rest appended)
  composer-first   export_layout into an empty folder (a first export)
  tar-whole        the layout as a whole new tar (no kept prefix)

Then, once, the compressors on the largest layer's tar: Python zlib (levels 1 and 6),
gzip -6, zstd -3 -T2, and (from composer-first) c/image's own gzip.

    python3 bench/export.py [--runs 5] [--json FILE]     (as root; needs buildah, skopeo)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.commands import Storage  # noqa: E402
from composer.emit import oci as export  # noqa: E402
from composer.runner import Runner  # noqa: E402

DEFAULT_LAYERS = ("/usr/bin", "/usr/lib/gcc", "/usr/lib/python3.11")
RANDOM_MB = 48
TAG = "bench"


def sh(argv: list[str], env: dict[str, str]) -> str:
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_base(env: dict[str, str], layers: list[str]) -> str:
    """scratch + one layer per host folder + one of random bytes; returns its image name."""
    parent = "scratch"
    for i, folder in enumerate([*layers, "random"]):
        ctr = sh(["buildah", "from", "--quiet", parent], env).strip()
        mount = Path(sh(["buildah", "mount", ctr], env).strip())
        target = mount / f"layer{i}"
        if folder == "random":
            target.mkdir()
            (target / "random.bin").write_bytes(os.urandom(RANDOM_MB << 20))
        else:
            shutil.copytree(folder, target, symlinks=True)
        parent = f"localhost/bench-base{i}"
        sh(["buildah", "commit", "--quiet", "--rm", ctr, parent], env)
    return parent


def make_top(env: dict[str, str], base: str, run: int) -> str:
    ctr = sh(["buildah", "from", "--quiet", base], env).strip()
    mount = Path(sh(["buildah", "mount", ctr], env).strip())
    (mount / "etc").mkdir(exist_ok=True)
    (mount / "etc" / "bench-run").write_text(f"run {run}\n" * 100)
    image = f"localhost/bench-top:{run}"
    sh(["buildah", "commit", "--quiet", "--rm", ctr, image], env)
    return image


def newer_blobs(layout: Path, since: float) -> int:
    folder = layout / "blobs" / "sha256"
    if not folder.is_dir():
        return 0
    return sum(1 for f in folder.iterdir() if f.stat().st_mtime >= since)


def methods(env: dict[str, str], out: Path) -> dict[str, Callable[[str], int | None]]:
    """name -> export(image) returning how many blob files it wrote (None: not counted)."""
    runner, storage = Runner(), Storage()

    def counted(layout: Path, act: Callable[[], None]) -> int:
        since = time.time() - 0.01
        act()
        return newer_blobs(layout, since)

    def archive(image: str) -> None:
        sh(["buildah", "push", "--quiet", "--format", "oci", image, f"oci-archive:{out / 'archive.tar'}:{TAG}"], env)
        return None

    def buildah_layout(image: str) -> int:
        layout = out / "buildah.oci"
        return counted(layout, lambda: sh(["buildah", "push", "--quiet", "--format", "oci", image,
                                           f"oci:{layout}:{TAG}"], env) and None)

    def skopeo_layout(image: str) -> int:
        layout = out / "skopeo.oci"
        return counted(layout, lambda: sh(["skopeo", "copy", "--quiet", f"containers-storage:{image}",
                                           f"oci:{layout}:{TAG}"], env) and None)

    def raw_layout(image: str) -> int:
        layout = out / "raw.oci"
        return counted(layout, lambda: sh(["buildah", "push", "--quiet", "--format", "oci",
                                           "--disable-compression", image, f"oci:{layout}:{TAG}"], env) and None)

    def composer(image: str) -> int:
        result = export.export_layout(runner, storage, image, out / "composer.oci", TAG)
        return len(result.new_layers)

    def composer_tar(image: str) -> int:
        result = export.export_layout(runner, storage, image, out / "composer-tar.oci", TAG)
        export.write_oci_archive(out / "composer-tar.oci", TAG, out / "composer-tar.oci.tar")
        return len(result.new_layers)

    def composer_first(image: str) -> int:
        shutil.rmtree(out / "first.oci", ignore_errors=True)
        return len(export.export_layout(runner, storage, image, out / "first.oci", TAG).new_layers)

    def tar_whole(image: str) -> None:
        (out / "whole.tar").unlink(missing_ok=True)
        export.write_oci_archive(out / "composer.oci", TAG, out / "whole.tar")
        return None

    return {
        "archive": archive, "buildah-layout": buildah_layout, "skopeo-layout": skopeo_layout,
        "raw-layout": raw_layout, "composer": composer, "composer+tar": composer_tar,
        "composer-first": composer_first, "tar-whole": tar_whole,
    }


def largest_layer_tar(out: Path) -> Path:
    """The largest layer of composer's layout, decompressed: what a compressor gets."""
    layers = export.read_image(out / "composer.oci", TAG)
    assert layers is not None
    blob = max(layers.layers(), key=lambda d: d.size)
    target = out / "layer.tar"
    unpack = zlib.decompressobj(31)
    with open(out / "composer.oci" / "blobs" / "sha256" / blob.hex, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(unpack.decompress(chunk))
    return target


def uncompressed_mb(out: Path) -> float:
    image = export.read_image(out / "composer.oci", TAG)
    assert image is not None
    total = 0
    for blob in image.layers():
        unpack = zlib.decompressobj(31)
        with open(out / "composer.oci" / "blobs" / "sha256" / blob.hex, "rb") as src:
            while chunk := src.read(1 << 20):
                total += len(unpack.decompress(chunk))
    return round(total / 1e6, 1)


def compressors(out: Path) -> dict[str, dict[str, float]]:
    """Throughput of each compressor on the largest layer's tar (c/image's own gzip is in
    composer-first: every layer, pgzip on both cores)."""
    layer = largest_layer_tar(out)
    size = layer.stat().st_size
    found: dict[str, dict[str, float]] = {}

    def record(name: str, act: Callable[[], int]) -> None:
        cpu, started = children_cpu(), time.perf_counter()
        self_cpu = time.process_time()
        compressed = act()
        seconds = time.perf_counter() - started
        used = children_cpu() - cpu + time.process_time() - self_cpu
        found[name] = {"seconds": round(seconds, 2), "cpu": round(used, 2), "in_mb": round(size / 1e6, 1),
                       "out_mb": round(compressed / 1e6, 1), "mb_per_s": round(size / 1e6 / seconds, 1)}

    def python_zlib(level: int) -> int:
        packer = zlib.compressobj(level, zlib.DEFLATED, 31)
        total = 0
        with open(layer, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(packer.compress(chunk))
        return total + len(packer.flush())

    def tool(argv: list[str]) -> int:
        with open(layer, "rb") as f:
            return len(subprocess.run(argv, stdin=f, check=True, capture_output=True).stdout)

    record("python-zlib-1", lambda: python_zlib(1))
    record("python-zlib-6", lambda: python_zlib(6))
    if shutil.which("gzip"):
        record("gzip-6", lambda: tool(["gzip", "-6", "-c"]))
    if shutil.which("pigz"):
        record("pigz-6", lambda: tool(["pigz", "-6", "-c"]))
    if shutil.which("zstd"):
        record("zstd-3-T2", lambda: tool(["zstd", "-3", "-T2", "-c"]))
    return found


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layer", action="append", help="host folder for one base layer (repeatable)")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="composer-export-bench-"))
    conf = work / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/root"\nrunroot = "{work}/run"\n')
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(conf))
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)  # for composer.emit.oci's own buildah calls
    out = work / "out"
    out.mkdir()
    try:
        base = build_base(env, args.layer or list(DEFAULT_LAYERS))
        table = methods(env, out)
        # Run 0 fills every kept output (a first export); runs 1..N change the top layer.
        times: dict[str, list[float]] = {name: [] for name in table}
        cpu: dict[str, list[float]] = {name: [] for name in table}
        blobs: dict[str, list[int | None]] = {name: [] for name in table}
        first: dict[str, float] = {}
        for run in range(args.runs + 1):
            image = make_top(env, base, run)
            order = list(table) if run % 2 == 0 else list(reversed(table))
            for name in order:
                used, started = children_cpu(), time.perf_counter()
                count = table[name](image)
                seconds = time.perf_counter() - started
                if run == 0:
                    first[name] = round(seconds, 3)
                    continue
                times[name].append(seconds)
                cpu[name].append(children_cpu() - used)
                blobs[name].append(count)
            print(f"run {run}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" if run else f"{n} {first[n]:.2f}s"
                                             for n in table), file=sys.stderr, flush=True)
        sizes = {
            "layers_uncompressed_mb": uncompressed_mb(out),
            "layout_mb": round(sum(f.stat().st_size for f in (out / "composer.oci/blobs/sha256").iterdir()) / 1e6, 1),
        }
        document = {
            "machine": {"cpus": os.cpu_count(), "load_start": os.getloadavg()},
            "sizes": sizes,
            "first_export_seconds": first,
            "incremental": {
                name: {"seconds": summary(times[name]), "children_cpu": summary(cpu[name]),
                       "raw_seconds": [round(t, 3) for t in times[name]], "blobs_written": blobs[name]}
                for name in table
            },
            "compressors": compressors(out),
        }
        text = json.dumps(document, indent=2)
        print(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n")
    finally:
        if not args.keep:
            subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True)
            subprocess.run(["buildah", "rmi", "--all", "--force"], env=env, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
