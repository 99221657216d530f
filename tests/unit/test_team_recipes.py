"""The shipped team recipes (recipes/teams/) and the novnc-desktop module they swap in:
what each team gets, and that novnc-desktop stays a drop-in replacement for vnc-desktop
(same options, same desktop files, one more service, the web port published instead of
the VNC port)."""

from __future__ import annotations

import filecmp
import tomllib
from pathlib import Path

import pytest
import yaml

from composer.emit.kube import render_manifest
from composer.errors import ComposerError
from composer.model import Family, Plan
from composer.modules import load_module
from composer.planner import plan_file

REPO = Path(__file__).resolve().parents[2]
TEAMS = REPO / "recipes" / "teams"
LAYERS = REPO / "layers"


def modules(plan: Plan) -> list[str]:
    return [step.module.name for step in plan.steps]


def pod_ports(plan: Plan) -> list[int]:
    pod = next(d for d in yaml.safe_load_all(render_manifest(plan)) if d and d.get("kind") == "Pod")
    return [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]


@pytest.mark.parametrize("recipe", sorted(TEAMS.glob("*.toml")), ids=lambda p: p.name)
def test_team_recipe_extends_turboflow(recipe: Path) -> None:
    assert tomllib.loads(recipe.read_text())["extends"] == "../turboflow.toml"
    plan = plan_file(recipe)
    assert plan.recipe.name.startswith("turboflow-")
    # Every published port has something listening behind it.
    assert set(pod_ports(plan)) == {int(p.split("/")[0]) for p in plan.finalize.image.ports}


def test_ml_team_has_the_desktop_in_the_browser() -> None:
    plan = plan_file(TEAMS / "ml.toml")
    names = modules(plan)
    assert "novnc-desktop" in names and "vnc-desktop" not in names
    assert not {"gui-apps", "latex"} & set(names)
    assert {"cuda", "python", "ssh", "management-api"} <= set(names)
    assert set(plan.finalize.image.ports) == {"22/tcp", "6080/tcp", "9090/tcp"}
    assert "novnc" in [s.name for s in plan.finalize.services]


def test_ml_team_builds_only_what_it_swapped_on_top_of_a_turboflow_build() -> None:
    # turboflow declares its foundation: without gui-apps nothing here builds on cuda, yet
    # the stack stays turboflow's, so every restacked layer is one turboflow built.
    turboflow, ml = plan_file(REPO / "recipes" / "turboflow.toml"), plan_file(TEAMS / "ml.toml")
    built = {layer.key for layer in turboflow.layers()}
    new = [layer.name for layer in ml.layers() if layer.key not in built]
    assert new == ["novnc-desktop", "reconcile", "finalize"]
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
    assert not {"cuda", "gui-apps", "vnc-desktop", "novnc-desktop"} & names
    assert set(plan.finalize.image.ports) == {"22/tcp", "9090/tcp"}
    python = next(s for s in plan.steps if s.module.name == "python")
    assert python.options["ml"] is False


def test_novnc_desktop_takes_every_vnc_desktop_option() -> None:
    vnc, novnc = load_module(LAYERS / "vnc-desktop"), load_module(LAYERS / "novnc-desktop")
    # Xvnc is always on loopback behind websockify: no `listen` option.
    assert set(novnc.options_schema) == (set(vnc.options_schema) - {"listen"}) | {"web_port"}
    for name, schema in vnc.options_schema.items():
        if name == "listen":
            continue
        ours = dict(novnc.options_schema[name])
        # Only the RFB port's description differs: it listens on loopback here.
        assert {k: v for k, v in ours.items() if k != "description"} == \
               {k: v for k, v in schema.items() if k != "description"}, name
    assert novnc.options_schema["web_port"]["default"] == 6080
    assert novnc.hooks == vnc.hooks
    assert set(novnc.packages_for(Family.DEBIAN)) == \
           set(vnc.packages_for(Family.DEBIAN)) | {"novnc", "python3-websockify"}


def test_novnc_desktop_files_are_vnc_desktops() -> None:
    """The desktop is vnc-desktop's: only the options path and Xvnc's -localhost differ."""
    ours, theirs = LAYERS / "novnc-desktop", LAYERS / "vnc-desktop"
    files = sorted(p.relative_to(theirs) for p in theirs.rglob("*")
                   if p.is_file() and p.name != "module.toml")
    assert files == sorted(p.relative_to(ours) for p in ours.rglob("*")
                           if p.is_file() and p.name not in ("module.toml", "README.md"))
    differ = [str(f) for f in files if not filecmp.cmp(ours / f, theirs / f, shallow=False)]
    assert differ == ["files/vnc/common.sh", "files/vnc/xvnc-start"]
    for f in files:
        assert (ours / f).stat().st_mode == (theirs / f).stat().st_mode, f
    common = (ours / "files/vnc/common.sh").read_text()
    assert common.replace("novnc-desktop", "vnc-desktop") == (theirs / "files/vnc/common.sh").read_text()
    xvnc = (ours / "files/vnc/xvnc-start").read_text()
    assert ' -nolisten tcp -localhost \\\n' in xvnc


def test_novnc_service_serves_the_web_port_and_relays_to_loopback(tmp_path: Path) -> None:
    recipe = tmp_path / "team.toml"
    recipe.write_text(
        f'extends = "{REPO / "tests/recipes/novnc-ci.toml"}"\n'
        '[[layers]]\nmodule = "novnc-desktop"\n[layers.options]\nweb_port = 8443\nport = 5907\n'
    )
    plan = plan_file(recipe, extra_module_dirs=[LAYERS])
    novnc = next(s for s in plan.finalize.services if s.name == "novnc")
    assert novnc.user == "nobody"
    assert novnc.command[-2:] == ("8443", "127.0.0.1:5907")
    # The RFB port stays inside: only the web port is published.
    assert "8443/tcp" in plan.finalize.image.ports
    assert not [p for p in plan.finalize.image.ports if p.startswith("5907")]
