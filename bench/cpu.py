#!/usr/bin/env python3
"""How busy the machine's cores are while a command runs: what any scheduler could still gain.

    python3 bench/cpu.py [--phase NAME=REGEX ...] [--interval 1] [--json FILE --label NAME] -- COMMAND ...
    python3 bench/cpu.py --show FILE                                  (the tables again)

Runs COMMAND (its output merged and copied through), samples /proc/stat every --interval
seconds and reports, for the whole run and for each phase: wall seconds, the cores busy on
average (user + system + irq + steal; iowait counts as idle), and the idle core-seconds, the
CPU time nobody used. A phase starts at the first output line its REGEX matches and ends where
the next phase starts (phases in the order given; the run before the first one is "start").
--json adds the run, under --label, to the runs FILE holds already (one file per comparison),
with the samples and each phase's first line; the command's other output is not kept.

The figure that bounds a comparison: with the same work, no tool can finish before
busy core-seconds / cores. So when a serial build (`buildah bud`) keeps the cores busy
most of its run, a parallel one cannot be much faster on this machine, whatever it schedules;
where the cores stand idle (one serial step after another), a parallel one can.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def cpu_times() -> tuple[float, float]:
    """(busy, total) seconds of all cores since boot, from /proc/stat's first line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / tick, total / tick


def run(command: list[str], interval: float) -> tuple[list[tuple[float, float]], list[tuple[float, str]], int]:
    """The samples (seconds since the start, busy cores since the last sample), the output
    lines (seconds since the start, line) and the command's exit status."""
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    done = threading.Event()

    def sample() -> None:
        last_t, (last_busy, _) = time.monotonic(), cpu_times()
        while not done.wait(interval):
            now, (busy, _) = time.monotonic(), cpu_times()
            samples.append((now - start, (busy - last_busy) / (now - last_t)))
            last_t, last_busy = now, busy

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append((time.monotonic() - start, line.rstrip("\n")))
    done.set()
    sampler.join()
    return samples, lines, process.returncode


def phase_bounds(phases: list[tuple[str, str]], lines: list[tuple[float, str]],
                 wall: float) -> list[tuple[str, float, float, str]]:
    """(name, start, end, the line it started at) per phase that occurred, "start" (no line)
    first when the first began later."""
    starts: list[tuple[str, float, str]] = [("start", 0.0, "")]
    for name, pattern in phases:
        found = next(((t, line) for t, line in lines if re.search(pattern, line)), None)
        if found is not None and found[0] >= starts[-1][1]:
            starts.append((name, *found))
    ends = [t for _, t, _ in starts[1:]] + [wall]
    return [(name, t, end, line) for (name, t, line), end in zip(starts, ends, strict=True) if end > t]


def summary(samples: list[tuple[float, float]], start: float, end: float, cores: int,
            interval: float) -> dict[str, Any]:
    inside = [busy for t, busy in samples if start < t <= end + interval / 2]
    busy = sum(inside) * interval
    wall = end - start
    return {"wall": round(wall, 1), "busy_cores": round(busy / wall, 2) if wall else 0.0,
            "busy_core_seconds": round(busy, 1), "idle_core_seconds": round(max(cores * wall - busy, 0.0), 1)}


def print_table(doc: dict[str, Any]) -> None:
    cores = doc["cores"]
    print(f"\n{doc['label']}: {' '.join(doc['command'])[:100]}\n{cores} cores, exit {doc['returncode']}")
    print(f"{'phase':<16}{'wall s':>9}{'busy cores':>12}{'idle core-s':>13}")
    for name, row in [*doc["phases"].items(), ("all", doc["all"])]:
        print(f"{name:<16}{row['wall']:>9.1f}{row['busy_cores']:>12.2f}{row['idle_core_seconds']:>13.1f}")
    whole = doc["all"]
    print(f"no tool doing this work finishes before busy/cores = {whole['busy_core_seconds'] / cores:.1f} s "
          f"({whole['busy_core_seconds'] / cores / whole['wall']:.2f} x this run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", action="append", default=[], metavar="NAME=REGEX",
                        help="a phase that starts at the first output line REGEX matches")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, help="add the run (summary, samples, phase lines) to this file")
    parser.add_argument("--label", default="run", help="the run's name in --json's file")
    parser.add_argument("--show", type=Path, help="print the tables of an earlier --json and stop")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    if args.show:
        for doc in json.loads(args.show.read_text())["runs"]:
            print_table(doc)
        return
    if not args.command:
        parser.error("a command to run is needed (after --)")
    phases = []
    for item in args.phase:
        name, sep, pattern = item.partition("=")
        if not sep or not name:
            parser.error(f"--phase {item!r}: expected NAME=REGEX")
        phases.append((name, pattern))
    cores = os.cpu_count() or 1
    samples, lines, code = run(args.command, args.interval)
    wall = samples[-1][0] if samples else 0.0
    bounds = phase_bounds(phases, lines, wall)
    doc = {
        "label": args.label, "command": args.command, "cores": cores, "interval": args.interval, "returncode": code,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=Path(__file__).parent).stdout.strip(),
        "phases": {name: summary(samples, s, e, cores, args.interval) for name, s, e, _ in bounds},
        "all": summary(samples, 0.0, wall, cores, args.interval),
        "phase_lines": {name: line for name, _, _, line in bounds},
        "samples": [(round(t, 2), round(b, 3)) for t, b in samples],
    }
    if args.json:
        kept = json.loads(args.json.read_text())["runs"] if args.json.exists() else []
        args.json.write_text(json.dumps({"runs": [*kept, doc]}, indent=1) + "\n")
    print_table(doc)
    sys.exit(code)


if __name__ == "__main__":
    main()
