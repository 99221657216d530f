#!/usr/bin/env python3
"""Where a composer command's time goes: wall time per process kind (buildah from, run,
copy, commit, ...) against the total, by timing every call of composer's one Runner.

    python3 bench/processes.py [composer options] build -q RECIPE    (as root)

Used for the per-layer overhead in docs/benchmarks.md: run it on a no-op rebuild and
after changing one module.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composer import runner  # noqa: E402

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def timed(method: Callable[..., str]) -> Callable[..., str]:
    def wrapper(self: runner.Runner, argv: list[str], *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return method(self, argv, *args, **kwargs)
        finally:
            words = [str(a) for a in argv[1:] if not str(a).startswith("-")]
            TIMES[f"{argv[0]} {words[0] if words else ''}"].append(time.perf_counter() - started)
    return wrapper


def main() -> None:
    runner.Runner.run = timed(runner.Runner.run)  # type: ignore[method-assign]
    runner.Runner.output = timed(runner.Runner.output)  # type: ignore[method-assign]
    from composer.cli import main as composer_main

    started = time.perf_counter()
    try:
        composer_main(sys.argv[1:])
    except SystemExit as e:
        if e.code:
            raise
    total = time.perf_counter() - started
    spent = sum(sum(v) for v in TIMES.values())
    print(f"total {total:.3f}s: processes {spent:.3f}s, composer itself {total - spent:.3f}s "
          "(after Python start-up)")
    for name, values in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {name:<22} n={len(values):>3}  {sum(values):7.3f}s  mean {sum(values) / len(values):.3f}s")


if __name__ == "__main__":
    main()
