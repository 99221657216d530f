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


def test_diff_shared_layers_and_first_divergent(tmp_path: Path) -> None:
    path = team(tmp_path)
    document = json.loads(invoke("diff", "--json", str(path), str(TURBOFLOW)))
    assert document["shared"] == ["base debootstrap:trixie", "base"]
    first = document["first_divergent"]
    assert first["layer"] == "users" and first["index"] == 2
    assert first["why"][0].startswith('options.helpers: {"as-gemini": "gemini-user", "as-openai": "openai-user", '
                                      '"as-zai": "zai-user"} -> {"as-gemini"')
    assert document["only_in_a"] == []
    assert document["only_in_b"] == ["python", "cuda", "ai-credentials", "vnc-desktop", "tmux-workspace",
                                      "rust", "gui-apps", "skills", "agents"]
    assert document["options"]["ssh"] == ['user: "devuser" -> "gemini-user"']
    text = invoke("diff", str(path), str(TURBOFLOW))
    assert "shared: 2 of A's 10 layers (base debootstrap:trixie, base)" in text
    assert "first divergent: [2] users" in text
    assert invoke("plan", "--offline", "--against", str(TURBOFLOW), str(path)) == text


def test_diff_of_a_recipe_with_itself_shares_everything() -> None:
    document = json.loads(invoke("diff", "--json", str(TURBOFLOW), str(TURBOFLOW)))
    assert document["first_divergent"] is None and len(document["shared"]) == document["a"]["layers"]


def test_plan_json_has_options_and_folder() -> None:
    layers = json.loads(invoke("plan", "--json", "--offline", str(TURBOFLOW)))["layers"]
    users = next(entry for entry in layers if entry["module"] == "users")
    assert users["folder"] == "layers/users"
    assert users["options"]["helpers_for"] == ["devuser"] and len(users["options"]["users"]) == 4


def test_why_gives_a_layers_own_change_and_an_earlier_one(tmp_path: Path) -> None:
    before, after, cache = changed(tmp_path, "jq", "greeting")  # greeting is built on jq
    reasons = missing_reasons(after, {before.base.key, before.steps[0].key}, cache)
    assert reasons[after.steps[1].key] == ["files: module.toml changed"]
    assert reasons[after.steps[2].key] == ["files: module.toml changed", "an earlier layer changed (2 jq)"]
