"""Dropping inherited values: [unset], only = [...], and the errors a typo in them gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.model import Pod, PodVolume
from composer.planner import plan_loaded
from composer.pod import pod_errors
from composer.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent.parent
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"
LAYERS = ROOT / "layers"


def child(tmp_path: Path, text: str, name: str = "child") -> Path:
    path = tmp_path / "team" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'extends = "{TURBOFLOW}"\nname = "{name}"\n' + text)
    return path


def test_unset_drops_secrets_pod_values_and_option_keys(tmp_path: Path) -> None:
    recipe = load_recipe(child(tmp_path, """
[unset]
secrets = ["VNC_PASSWORD"]
image = { volumes = ["/home/devuser/models"], env = ["TZ"] }
[unset.pod]
ports = ["vnc", 9090]
volumes = ["model-cache"]
devices = true
network = true
aliases = true
hostname = true
[unset.options.users]
helpers = ["as-zai"]
"""))
    assert "VNC_PASSWORD" not in {s.name for s in recipe.secrets}
    assert "ANTHROPIC_API_KEY" in {s.name for s in recipe.secrets}
    assert "/home/devuser/models" not in recipe.image.volumes and "/var/log" in recipe.image.volumes
    assert dict(recipe.image.env) == {"LANG": "C.UTF-8"}
    assert [p.name for p in recipe.pod.ports] == ["ssh"]  # by name and by container port
    volumes = dict(recipe.pod.volumes)
    assert "model-cache" not in volumes and "logs" in volumes
    for gone in ("devices", "network", "aliases", "hostname"):
        assert getattr(recipe.pod, gone) == getattr(Pod(), gone)
    users = next(layer for layer in recipe.layers if layer.module == "users")
    assert users.options["helpers"] == {"as-gemini": "gemini-user", "as-openai": "openai-user"}


def test_unset_then_set_anew(tmp_path: Path) -> None:
    """[unset] applies to the parent before the child's own values: drop, then set."""
    recipe = load_recipe(child(tmp_path, """
[unset]
pod = { volumes = true }
[pod.volumes]
work = "/home/devuser/workspace"
"""))
    assert recipe.pod.volumes == (("work", PodVolume("/home/devuser/workspace")),)


def test_without_unset_a_merge_keeps_inherited_entries(tmp_path: Path) -> None:
    """The issue's complaint, kept as the documented rule: merging never drops."""
    recipe = load_recipe(child(tmp_path, "secrets = []\n[pod.volumes]\nwork = \"/w\"\n"))
    assert len(recipe.secrets) == 9 and "model-cache" in dict(recipe.pod.volumes)


@pytest.mark.parametrize(("text", "message"), [
    ("[unset]\nsecrets = [\"VNC_PASWORD\"]\n",
     r"child\.toml: unset\.secrets\[0\]: secrets has no entry 'VNC_PASWORD' \(did you mean 'VNC_PASSWORD'\?\)"),
    ("[unset]\npod = { volumes = [\"model-cach\"] }\n",
     r"child\.toml: unset\.pod\.volumes\[0\]: pod\.volumes has no entry 'model-cach' \(did you mean 'model-cache'\?\)"),
    ("[unset]\npod = { secrets_path = true }\n", r"child\.toml: unset\.pod\.secrets_path: the parent recipe sets no"),
    ("[unset]\npod = { hostname = [\"x\"] }\n",
     r"child\.toml: unset\.pod\.hostname: pod\.hostname is a single value; write hostname = true"),
    ("[unset]\npod = { portz = true }\n", r"child\.toml: unset\.pod\.portz: unknown field \(did you mean 'ports'\?\)"),
    ("[unset.options.userz]\nhelpers = true\n",
     r"child\.toml: unset\.options\.userz: module 'userz' is not in the recipe \(did you mean 'users'\?\)"),
    ("[unset.options.users]\nhelperz = true\n",
     r"child\.toml: unset\.options\.users\.helperz: the parent recipe sets no layers\.users\.options\.helperz "
     r"\(did you mean 'helpers'\?\)"),
    ("remove = [\"supervisor\"]\n",
     r"child\.toml: remove\[0\]: module 'supervisor' is not in the parent recipe \(did you mean 'supervisord'\?\)"),
    ("replace = { vnc-dekstop = \"x\" }\n",
     r"child\.toml: replace\.vnc-dekstop: module 'vnc-dekstop' is not in the parent recipe "
     r"\(did you mean 'vnc-desktop'\?\)"),
    ("only = [\"base\", \"userz\"]\n",
     r"child\.toml: only\[1\]: module 'userz' is not in the parent recipe \(did you mean 'users'\?\)"),
    ("only = [\"base\"]\nremove = [\"cuda\"]\n", r"child\.toml: only: say either only .* or remove, not both"),
])
def test_edit_errors_name_the_child_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ComposerError, match=message):
        load_recipe(child(tmp_path, text))


def test_unset_needs_extends(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[base]\nfrom = "debootstrap:trixie"\n[unset]\nsecrets = ["X"]\n')
    with pytest.raises(ComposerError, match=r"r\.toml: unset: only allowed together with extends"):
        load_recipe(path)


def test_only_keeps_the_listed_modules_in_order_and_appends_the_childs(tmp_path: Path) -> None:
    recipe = load_recipe(child(tmp_path, """
only = ["ssh", "base", "users", "supervisord"]
[[layers]]
module = "node"
"""))
    assert [layer.module for layer in recipe.layers] == ["base", "users", "supervisord", "ssh", "node"]
    assert recipe.removed_by("cuda") == f"{recipe.origin('name')}: only"


def test_docs_example_applies_to_turboflow(tmp_path: Path) -> None:
    """The [unset]/only example of docs/format.md is a working recipe."""
    text = (ROOT / "docs" / "format.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[unset]" in b)
    path = tmp_path / "docs.toml"
    path.write_text(block.replace('extends = "../recipes/turboflow.toml"', f'extends = "{TURBOFLOW}"'))
    plan = plan_loaded(load_recipe(path), [LAYERS])
    assert pod_errors(plan) == []
    assert [s.module.name for s in plan.steps] == [
        "base", "users", "supervisord", "node", "latex", "ssh", "management-api"]  # turboflow's stack_order


def test_unset_schema_covers_every_image_and_pod_field() -> None:
    from composer.schema import load_schema

    props = load_schema("recipe")["properties"]
    unset = props["unset"]["properties"]
    assert set(unset["image"]["properties"]) == set(props["image"]["properties"])
    assert set(unset["pod"]["properties"]) == set(props["pod"]["properties"])
