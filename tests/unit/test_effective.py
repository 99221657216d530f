"""What a recipe really is: plan --effective (with origins), diff / plan --against,
plan --json's options and folders, and --why giving every reason a layer misses."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from composer.cli import cli
from composer.explain import missing_reasons
from tests.unit.test_explain import changed

ROOT = Path(__file__).resolve().parent.parent.parent
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"
LAYERS = str(ROOT / "layers")

TEAM = f"""extends = "{TURBOFLOW}"
name = "docs"
only = ["base", "users", "supervisord", "ssh", "management-api", "node", "latex"]
[unset]
secrets = ["VNC_PASSWORD"]
pod = {{ ports = ["vnc"], volumes = ["model-cache"], network = true, aliases = true }}
[unset.options.users]
helpers = ["as-zai"]
[[layers]]
module = "ssh"
[layers.options]
user = "gemini-user"
[pod]
hostname = "docs-pod"
"""


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, ["--modules-dir", LAYERS, *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def team(tmp_path: Path) -> Path:
    path = tmp_path / "docs.toml"
    path.write_text(TEAM)
    return path


def test_effective_names_the_file_that_set_each_value(tmp_path: Path) -> None:
    path = team(tmp_path)
    text = invoke("plan", "--effective", str(path))
    mine, parent = f"# {path}", "# recipes/turboflow.toml"
    assert f'name = "docs"  {mine}' in text.splitlines()
    assert f'hostname = "docs-pod"  {mine}' in text.splitlines()
    assert f'from = "debootstrap:trixie"  {parent}' in text.splitlines()
    assert f'logs = "/var/log"  {parent}' in text.splitlines()
    assert f'as-gemini = "gemini-user"  {parent}' in text.splitlines()
    assert f'user = "gemini-user"  {mine}' in text.splitlines()  # ssh's option, overridden
    for gone in ("model-cache", "as-zai", "VNC_PASSWORD", "network =", "cuda", "5901"):
        assert gone not in text, gone
    # The output is the merged recipe itself, as TOML (no extends left to resolve).
    document = json.loads(invoke("plan", "--effective", "--json", str(path)))
    assert tomllib.loads(text) == document["recipe"]
    assert [entry["module"] for entry in document["recipe"]["layers"]] == [
        "base", "users", "supervisord", "ssh", "management-api", "node", "latex"]


def test_effective_json_origins(tmp_path: Path) -> None:
    origins = json.loads(invoke("plan", "--effective", "--json", str(team(tmp_path))))["origins"]
    assert origins["name"] == str(tmp_path / "docs.toml")
    assert origins["pod.hostname"] == str(tmp_path / "docs.toml")
    assert origins["pod.shm_size"] == "recipes/turboflow.toml"
    assert origins["layers.ssh.options.user"] == str(tmp_path / "docs.toml")
    assert origins["layers.supervisord.options.group"] == "recipes/turboflow.toml"
    assert origins["secrets.ANTHROPIC_API_KEY"] == "recipes/turboflow.toml"
    assert not [p for p in origins if "cuda" in p or "model-cache" in p or p == "pod.network"]


def unlocked_parent(tmp_path: Path) -> tuple[Path, Path]:
    """The team recipe on a copy of turboflow without its lock: both keyed unlocked (a
    locked turboflow shares only its base image with an unlocked child; docs/lock.md)."""
    parent = tmp_path / "parent" / "turboflow.toml"
    parent.parent.mkdir()
    parent.write_text(TURBOFLOW.read_text())
    path = tmp_path / "docs.toml"
    path.write_text(TEAM.replace(str(TURBOFLOW), str(parent)))
    return path, parent


def test_diff_shared_layers_and_first_divergent(tmp_path: Path) -> None:
    path, TURBOFLOW = unlocked_parent(tmp_path)  # noqa: N806 (the recipe this test compares with)
    document = json.loads(invoke("diff", "--json", str(path), str(TURBOFLOW)))
    assert document["shared"] == ["base debootstrap:trixie", "base"]
    assert document["format"] == 1
    first = document["first_divergent"]
    assert first["layer"] == "users" and first["index"] == 2 and first["b_key"] != first["key"]
    # Data, not prose: each change names its field and both values.
    helpers = next(c for c in first["changes"] if c["field"] == "options.helpers")
    assert helpers["b"] == {"as-gemini": "gemini-user", "as-openai": "openai-user", "as-zai": "zai-user"}
    assert helpers["a"] != helpers["b"]
    assert first["parent"]["a_in_b"] and first["parent"]["a"] == first["parent"]["b"]
    assert document["only_in_a"] == []
    # In B's stack order (turboflow's stack_order puts rust and gui-apps first).
    assert document["only_in_b"] == ["python", "cuda", "rust", "gui-apps", "ai-credentials", "vnc-desktop",
                                      "tmux-workspace", "skills", "agents"]
    assert document["options"]["ssh"] == {"user": {"b": "devuser", "a": "gemini-user"}}
    text = invoke("diff", str(path), str(TURBOFLOW))
    assert "shared: 2 of A's 10 layers (base debootstrap:trixie, base)" in text
    assert "first divergent: [2] users" in text
    assert ('      options.helpers: {"as-gemini": "gemini-user", "as-openai": "openai-user", "as-zai": "zai-user"} -> '
            in text)
    assert 'options of ssh (B -> A): user: "devuser" -> "gemini-user"' in text
    assert invoke("plan", "--offline", "--against", str(TURBOFLOW), str(path)) == text


def test_diff_of_a_recipe_with_itself_shares_everything() -> None:
    document = json.loads(invoke("diff", "--json", str(TURBOFLOW), str(TURBOFLOW)))
    assert document["first_divergent"] is None and len(document["shared"]) == document["a"]["layers"]


def test_plan_json_has_options_and_folder() -> None:
    layers = json.loads(invoke("plan", "--json", "--offline", str(TURBOFLOW)))["layers"]
    users = next(entry for entry in layers if entry["module"] == "users")
    assert users["folder"] == str(ROOT / "layers" / "users")
    assert users["options"]["helpers_for"] == ["devuser"] and len(users["options"]["users"]) == 4


def test_why_gives_a_layers_own_change_and_an_earlier_one(tmp_path: Path) -> None:
    before, after, cache = changed(tmp_path, "jq", "greeting")  # greeting is built on jq
    reasons = missing_reasons(after, {before.base.key, before.steps[0].key}, cache)
    assert reasons[after.steps[1].key] == ["files: module.toml changed"]
    assert reasons[after.steps[2].key] == ["files: module.toml changed", "an earlier layer changed (2 jq)"]


def test_check_and_plan_say_what_a_team_shares_with_its_parent(tmp_path: Path) -> None:
    """A team that changes a foundation module learns the cost before it builds."""
    docs = ROOT / "recipes" / "teams" / "docs.toml"
    diff = json.loads(invoke("diff", "--json", str(docs), str(TURBOFLOW)))
    line = (f"shares {len(diff['shared'])} of its {diff['a']['layers']} layers with recipes/turboflow.toml; "
            f"the first it builds anew: [{diff['first_divergent']['index']}] python")
    assert line == "shares 4 of its 15 layers with recipes/turboflow.toml; the first it builds anew: [4] python"
    assert invoke("check", str(docs)).splitlines()[-1] == line
    assert invoke("plan", "--offline", str(docs)).splitlines()[-1] == line
    # A recipe that extends nothing has no such line.
    assert "shares" not in invoke("check", str(TURBOFLOW))
