"""The shipped team recipes (recipes/teams/) and the novnc module the ML team adds to
vnc-desktop: what each team gets, what a team's change costs next to a turboflow build,
and that the browser client relays to the desktop's RFB port on loopback."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from composer.emit.kube import render_manifest
from composer.errors import ComposerError
from composer.model import Plan
from composer.planner import plan_file

REPO = Path(__file__).resolve().parents[2]
TEAMS = REPO / "recipes" / "teams"
LAYERS = REPO / "layers"


def modules(plan: Plan) -> list[str]:
    return [step.module.name for step in plan.steps]


def pod_ports(plan: Plan) -> list[int]:
    """The container ports the Pod publishes on the host."""
    pod = next(d for d in yaml.safe_load_all(render_manifest(plan)) if d and d.get("kind") == "Pod")
    return [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])
            if "hostPort" in p]


@pytest.mark.parametrize("recipe", sorted(TEAMS.glob("*.toml")), ids=lambda p: p.name)
def test_team_recipe_extends_turboflow(recipe: Path) -> None:
    assert tomllib.loads(recipe.read_text())["extends"] == "../turboflow.toml"
    plan = plan_file(recipe)
    assert plan.recipe.name.startswith("turboflow-")
    # Every port the pod publishes has something listening behind it.
    assert set(pod_ports(plan)) <= {int(p.split("/")[0]) for p in plan.finalize.image.ports}


def options(plan: Plan, module: str) -> dict[str, object]:
    return next(step.options for step in plan.steps if step.module.name == module)


def test_ml_team_has_the_desktop_in_the_browser() -> None:
    plan = plan_file(TEAMS / "ml.toml")
    names = modules(plan)
    assert {"vnc-desktop", "novnc"} <= set(names)
    assert not {"gui-apps", "latex"} & set(names)
    assert {"cuda", "python", "ssh", "management-api"} <= set(names)
    assert {"xvnc", "xfce4", "novnc"} <= {s.name for s in plan.finalize.services}
    # Xvnc on loopback (turboflow's 0.0.0.0 dropped): websockify is its one client, and
    # the pod publishes the web port instead of the RFB port. (vnc-desktop declares its
    # RFB port whatever its address: the image's ExposedPorts still names it.)
    assert options(plan, "vnc-desktop")["listen"] == "127.0.0.1"
    assert sorted(pod_ports(plan)) == [22, 6080, 9090]
    assert set(plan.finalize.image.ports) == {"22/tcp", "5901/tcp", "6080/tcp", "9090/tcp"}


def test_ml_team_builds_only_what_it_changed_on_top_of_a_turboflow_build() -> None:
    # turboflow declares its foundation: without gui-apps nothing here builds on cuda, yet
    # the stack stays turboflow's, so every restacked layer is one turboflow built. novnc
    # builds on base and supervisord alone: vnc-desktop stays out of the common parent
    # (a `requires` on it would put it there and rebuild every module after it).
    turboflow, ml = plan_file(REPO / "recipes" / "turboflow.toml"), plan_file(TEAMS / "ml.toml")
    built = {layer.key for layer in turboflow.layers()}
    new = [layer.name for layer in ml.layers() if layer.key not in built]
    assert new == ["vnc-desktop", "novnc", "reconcile", "finalize"]
    assert [s.module.name for s in ml.steps if not s.restacked] == ["base", "users", "supervisord", "python", "cuda"]


def test_a_foundation_entry_must_name_a_module(tmp_path: Path) -> None:
    recipe = tmp_path / "team.toml"
    recipe.write_text(f'extends = "{REPO / "recipes" / "turboflow.toml"}"\nname = "t"\n'
                      'foundation = ["base", "pyton"]\nremove = ["gui-apps", "cuda"]\n')
    with pytest.raises(ComposerError, match=r"team.toml: foundation\[1\]: 'pyton' is not a module "
                                            r"of the recipe \(did you mean 'python'\?\)"):
        plan_file(recipe)
    # A module a child dropped may stay in the parent's foundation.
    recipe.write_text(recipe.read_text().replace('foundation = ["base", "pyton"]\n', ""))
    assert plan_file(recipe).recipe.foundation == ("base", "users", "supervisord", "python")


def test_docs_team_is_headless_with_latex_node_ssh() -> None:
    plan = plan_file(TEAMS / "docs.toml")
    names = set(modules(plan))
    assert {"latex", "node", "ssh"} <= names
    assert not {"cuda", "gui-apps", "vnc-desktop", "novnc"} & names
    assert set(plan.finalize.image.ports) == {"22/tcp", "9090/tcp"}
    python = next(s for s in plan.steps if s.module.name == "python")
    assert python.options["ml"] is False


SHIPPED = [*sorted((REPO / "recipes").rglob("*.toml")), *sorted((REPO / "tests/recipes").glob("*.toml"))]


@pytest.mark.parametrize("recipe", [r for r in SHIPPED if "novnc" in r.read_text()],
                         ids=lambda p: p.name)
def test_novnc_relays_to_the_desktops_port_on_loopback(recipe: Path) -> None:
    plan = plan_file(recipe)
    vnc, novnc = options(plan, "vnc-desktop"), options(plan, "novnc")
    assert novnc["vnc_port"] == vnc["port"]
    assert vnc["listen"] == "127.0.0.1"
    assert vnc["port"] not in pod_ports(plan)


def test_novnc_service_serves_the_web_port_and_relays_to_loopback(tmp_path: Path) -> None:
    recipe = tmp_path / "team.toml"
    recipe.write_text(
        f'extends = "{REPO / "tests/recipes/novnc-ci.toml"}"\n'
        '[[layers]]\nmodule = "vnc-desktop"\n[layers.options]\nport = 5907\n'
        '[[layers]]\nmodule = "novnc"\n[layers.options]\nport = 8443\nvnc_port = 5907\n'
        '[unset]\npod = { ports = ["novnc"] }\n'
    )
    plan = plan_file(recipe, extra_module_dirs=[LAYERS])
    novnc = next(s for s in plan.finalize.services if s.name == "novnc")
    assert novnc.user == "nobody"
    assert novnc.command[-2:] == ("8443", "127.0.0.1:5907")
    assert "8443/tcp" in plan.finalize.image.ports


def stack_of(plan: Plan) -> list[str]:
    return [s.module.name for s in plan.steps if s.restacked]


def test_stack_order_moves_only_the_stack_not_one_module_key(tmp_path: Path) -> None:
    recipe = tmp_path / "team.toml"
    head = f'extends = "{REPO / "recipes" / "turboflow.toml"}"\nname = "t"\n'
    recipe.write_text(head + "stack_order = []\n")
    turboflow = plan_file(recipe)  # turboflow in recipe order (its own stack_order set aside), keyed as this one
    recipe.write_text(head + 'stack_order = ["gui-apps", "node"]\n')
    ordered = plan_file(recipe)
    rest = [name for name in stack_of(turboflow) if name not in ("gui-apps", "node")]
    assert stack_of(ordered) == ["gui-apps", "node", *rest]
    assert {s.module.name: s.key for s in ordered.steps} == {s.module.name: s.key for s in turboflow.steps}
    assert ordered.reconcile is not None and turboflow.reconcile is not None
    assert ordered.reconcile.members == tuple(s.key for s in ordered.steps if s.restacked)
    assert ordered.reconcile.key != turboflow.reconcile.key  # the stack is another one
    why = {s.module.name: s.why for s in ordered.steps}
    assert why["node"].endswith("stacked by stack_order[1]") and why["rust"].endswith("stacked")
    # A module the child drops leaves the order with it.
    recipe.write_text(recipe.read_text() + 'remove = ["node"]\n')
    assert stack_of(plan_file(recipe))[:2] == ["gui-apps", rest[0]]


@pytest.mark.parametrize(("order", "message"), [
    ('["gui-app"]', r"team.toml: stack_order\[0\]: 'gui-app' is not a module of the recipe "
                    r"\(did you mean 'gui-apps'\?\)"),
    ('["node", "python"]', r"stack_order\[1\]: 'python' is not stacked: others build on it \(cuda, gui-apps\)"),
    ('["node", "base"]', r"stack_order\[1\]: 'base' is not stacked: others build on it"),
    ('["node"]\nlayering = "linear"', r"stack_order\[0\]: 'node' is not stacked: the recipe's layering is "
                                      r"not restack"),
])
def test_stack_order_names_only_stacked_modules(tmp_path: Path, order: str, message: str) -> None:
    recipe = tmp_path / "team.toml"
    recipe.write_text(f'extends = "{REPO / "recipes" / "turboflow.toml"}"\nname = "t"\nstack_order = {order}\n')
    with pytest.raises(ComposerError, match=message):
        plan_file(recipe)
