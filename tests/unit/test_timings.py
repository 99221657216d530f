"""plan --cluster: the critical path of a fanned-out build from the measured layer times
(composer/timings.py), on turboflow's real plan (restacked modules on cuda)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from click.testing import CliRunner

from composer import timings
from composer.cli import cli
from composer.planner import plan_file

ROOT = Path(__file__).resolve().parent.parent.parent
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"


def test_spread_puts_the_longest_first_on_the_least_loaded_node() -> None:
    assert timings.spread([5, 4, 3, 3, 1], 1) == 16
    assert timings.spread([5, 4, 3, 3, 1], 2) == 8  # 5+3 | 4+3+1
    assert timings.spread([5, 4, 3, 3, 1], 9) == 5
    assert timings.spread([], 3) == 0


def test_estimate_of_turboflow_from_recorded_times(tmp_path: Path) -> None:
    plan = plan_file(TURBOFLOW)
    layers = plan.layers()
    restacked = [layer.label for layer in layers if layer.restacked]
    assert len(restacked) >= 5
    # Every layer took 10 s but latex (restacked) 100 s; recorded as the builder does, from threads.
    threads = [threading.Thread(target=timings.record, args=(tmp_path, layer.label, layer.key,
                                                              100.0 if layer.label == "latex" else 10.0))
               for layer in layers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = timings.load(tmp_path)
    assert len(times) == len(layers) and times["latex"] == 100.0
    estimate = timings.cluster_estimate(plan, times)
    parent = len(layers) - len(restacked) - 2  # base image, base ... cuda
    assert estimate["parent"]["seconds"] == 10 * parent
    assert estimate["final"] == {"layers": ["reconcile", "finalize"], "seconds": 20.0}
    assert estimate["modules"]["slowest"] == "latex"
    one = 10 * (len(layers) - 1) + 100
    assert estimate["one_machine_seconds"] == one
    by_nodes = {row["nodes"]: row["seconds"] for row in estimate["fan_out"]}
    assert by_nodes[1] == one
    assert by_nodes[len(restacked)] == 10 * parent + 100 + 20  # the critical path: parent + latex + final
    assert estimate["unmeasured"] == []
    lines = timings.estimate_lines(estimate)
    assert f"module stage: {len(restacked)} restacked modules, slowest latex 100 s" in lines
    assert f"fanned out on {len(restacked)} nodes: {10 * parent + 120} s ({one / (10 * parent + 120):.2f}x)" in lines


def test_plan_cluster_names_the_layers_never_measured(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    timings.record(cache, "python", "k", 42.0)
    result = CliRunner().invoke(cli, ["--cache-dir", str(cache), "plan", "--offline", "--cluster", "--json",
                                      str(TURBOFLOW)])
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.output)["cluster"]
    assert estimate["parent"]["seconds"] == 42.0 and "python" not in estimate["unmeasured"]
    assert "latex" in estimate["unmeasured"] and "finalize" in estimate["unmeasured"]
    text = CliRunner().invoke(cli, ["--cache-dir", str(cache), "plan", "--offline", "--cluster", str(TURBOFLOW)])
    assert "  not measured (never built with this cache; counted as 0): base debootstrap:trixie, base" in text.output
