#!/usr/bin/env python3
"""A first export of a built image with each layer compression, side by side.

Each run exports the image into an empty OCI layout folder once per setting (composer's
export_layout, i.e. `buildah push --format oci` with the setting's flags), in an order
that is reversed every other run, and removes the folder after measuring it. It reports
the wall time, the CPU time of the processes, the layers' compressed size, and the time
to read every layer back (decompress, without writing: what a pull or `podman load`
pays on top of unpacking) with Go-free tools, gzip -dc and zstd -dc.

The image must be built already (default: recipes/turboflow.toml's, as the README's
first command leaves it in the default storage).

    python3 bench/compression.py [--image localhost/turboflow:latest] [--runs 3]
        [--settings gzip,gzip:1,zstd,zstd:1] [--json FILE]    (as root; needs buildah, zstd)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.commands import Storage  # noqa: E402
from composer.emit import oci as export  # noqa: E402
from composer.runner import Runner  # noqa: E402

TAG = "bench"
READERS = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dcq"]}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def setting(text: str) -> export.Compression:
    format_, _, level = text.partition(":")
    return export.Compression(format_, int(level) if level else None)


def read_back(layout: Path, compression: export.Compression) -> float:
    """Seconds to decompress every layer blob of the layout to nothing."""
    image = export.read_image(layout, TAG)
    assert image is not None
    started = time.perf_counter()
    for blob in image.layers():
        with open(layout / "blobs" / "sha256" / blob.hex, "rb") as src:
            subprocess.run(READERS[compression.format], stdin=src, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def one_export(image: str, compression: export.Compression, folder: Path) -> dict[str, float]:
    layout = folder / "first.oci"
    shutil.rmtree(layout, ignore_errors=True)
    cpu, started = children_cpu(), time.perf_counter()
    result = export.export_layout(Runner(), Storage(), image, layout, TAG, compression)
    seconds = time.perf_counter() - started
    used = children_cpu() - cpu
    exported = export.read_image(layout, TAG)
    assert exported is not None and len(result.new_layers) == len(exported.layers())
    assert all(layer.media_type == compression.layer_type for layer in exported.layers())
    size = sum(layer.size for layer in exported.layers())
    reading = read_back(layout, compression)
    shutil.rmtree(layout)
    return {"seconds": round(seconds, 2), "cpu": round(used, 2), "mb": round(size / 1e6, 1),
            "read_back_seconds": round(reading, 2)}


def summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    return {field: statistics.median(s[field] for s in samples) for field in samples[0]} | {
        "runs": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="localhost/turboflow:latest")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settings", default="gzip,gzip:1,zstd,zstd:1",
                        help="comma-separated FORMAT[:LEVEL]; the first is the reference of the ratios")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    compressions = {name: setting(name) for name in settings}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory(prefix="composer-bench-compression-", dir=ROOT / "build"
                                     if (ROOT / "build").is_dir() else None) as tmp:
        for run in range(args.runs):
            order = settings if run % 2 == 0 else settings[::-1]
            for name in order:
                sample = one_export(args.image, compressions[name], Path(tmp))
                samples[name].append(sample)
                print(f"run {run + 1} {name:8} {sample['seconds']:7.1f} s  cpu {sample['cpu']:7.1f} s  "
                      f"{sample['mb']:9.1f} MB  read back {sample['read_back_seconds']:6.1f} s", flush=True)
    results = {name: summary(s) for name, s in samples.items()}
    reference = results[settings[0]]
    print(f"\nmedians of {args.runs} runs, {args.image}; ratios to {settings[0]}")
    print(f"{'setting':8} {'seconds':>8} {'ratio':>6} {'cpu s':>8} {'MB':>9} {'size':>6} {'read back s':>12}")
    for name, r in results.items():
        print(f"{name:8} {r['seconds']:8.1f} {r['seconds'] / reference['seconds']:6.2f} {r['cpu']:8.1f} "
              f"{r['mb']:9.1f} {r['mb'] / reference['mb']:6.2f} {r['read_back_seconds']:12.1f}")
    if args.json:
        document = {"image": args.image, "runs": args.runs, "reference": settings[0], "results": results,
                    "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                             text=True).stdout.strip()}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
