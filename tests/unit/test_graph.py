"""`composer graph`: the plan as Graphviz text, the committed turboflow picture current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from composer.cli import main
from composer.emit.graph import Known, Shared, render_dot
from composer.errors import ComposerError
from composer.planner import plan_file

ROOT = Path(__file__).resolve().parents[2]
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"
ML = ROOT / "recipes" / "teams" / "ml.toml"
IMAGES = ROOT / "docs" / "images"


def test_committed_turboflow_graph_is_current() -> None:
    plan = plan_file(TURBOFLOW)
    text = render_dot(plan)
    assert (IMAGES / "turboflow-graph.dot").read_text() == text, (
        "regenerate: composer graph recipes/turboflow.toml --offline -o docs/images/turboflow-graph.dot"
        " (and .svg)")
    # The SVG was drawn from this text: every layer's key is in it.
    svg = (IMAGES / "turboflow-graph.svg").read_text()
    for layer in plan.layers():
        assert layer.key[:12] in svg, f"{layer.name}: docs/images/turboflow-graph.svg is not current"


def test_restacked_layers_sit_in_the_common_parent_box() -> None:
    plan = plan_file(TURBOFLOW)
    text = render_dot(plan)
    cluster = text[text.index("subgraph cluster_restack"):text.index("}", text.index("subgraph cluster_restack"))]
    restacked = [s.module.name for s in plan.steps if s.restacked]
    assert restacked and all(f'"{name} ' in cluster for name in restacked)
    assert "restacked on the common parent (cuda)" in cluster
    assert not [s for s in plan.steps if not s.restacked and f'"{s.module.name} ' in cluster]


def test_states_and_sizes() -> None:
    plan = plan_file(TURBOFLOW)
    layers = plan.layers()
    base, first = layers[0], layers[1]
    known = Known(cached=frozenset({base.key, first.key}), sizes={base.key: 100 * 1000**2, first.key: 130 * 1000**2})
    text = render_dot(plan, known)
    assert re.search(r'L0 \[label="base\\ndebootstrap:trixie\\n\w{12}  100.0 MB  cached", fillcolor="#c7e9c0"\]', text)
    assert re.search(r'L1 \[label="base 1.0.0\\n\w{12}  \+30.0 MB  cached"', text)
    assert re.search(r'L2 \[label="users [^"]*missing", fillcolor="#fdd0a2"\]', text)


def test_requires_drawn_only_where_the_stack_does_not_order() -> None:
    # In a linear plan every dependency is below: no requires arrows; in turboflow's too.
    assert "style=dashed" not in render_dot(plan_file(TURBOFLOW)).split("cluster_legend")[0]


def test_diff_graph_colours_the_shared_layers() -> None:
    ml, parent = plan_file(ML), plan_file(TURBOFLOW)
    text = render_dot(ml, shared=Shared(frozenset(layer.key for layer in parent.layers()), "turboflow"))
    assert re.search(r'"novnc [^"]*", fillcolor="#fdae6b"', text)
    assert re.search(r'"cuda [^"]*", fillcolor="#9ecae1"', text)
    assert "blue: shared with turboflow" in text


@pytest.mark.needs("dot")
def test_cli_draws_svg_and_refuses_other_suffixes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.svg"
    main(["graph", str(TURBOFLOW), "--offline", "-o", str(out)])
    assert out.read_text().lstrip().startswith("<?xml") and "<svg" in out.read_text()
    main(["diff", str(ML), str(TURBOFLOW), "--graph", str(tmp_path / "d.dot")])
    assert "#9ecae1" in (tmp_path / "d.dot").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["graph", str(TURBOFLOW), "--offline", "-o", str(tmp_path / "g.jpeg")])
    assert done.value.code == 1
    assert capsys.readouterr().err.splitlines()[0] == f"composer: error: {tmp_path}/g.jpeg: cannot draw a .jpeg file"


def test_output_format_error() -> None:
    from composer.emit.graph import output_format

    with pytest.raises(ComposerError, match="no suffix"):
        output_format(Path("picture"))


def test_buildah_sizes() -> None:
    from composer.emit.graph import parse_size

    assert parse_size(1234) == 1234
    assert parse_size("124 MB") == 124_000_000
    assert parse_size("1.25 GB") == 1_250_000_000
    assert parse_size("812 kB") == 812_000
    assert parse_size("lots") is None and parse_size(None) is None
