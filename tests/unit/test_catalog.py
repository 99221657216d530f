"""Discovery: `composer modules`, `composer show`, the generated docs/modules.md and
shell completion of module names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from composer.cli import cli, complete_module, show
from composer.recipe import PROJECT_LAYERS

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = sorted(p.parent.name for p in PROJECT_LAYERS.glob("*/module.toml"))


def invoke(*args: str) -> click.testing.Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_modules_json_lists_every_shipped_module() -> None:
    rows = json.loads(invoke("modules", "--json").stdout)
    assert [r["name"] for r in rows] == SHIPPED
    ssh = next(r for r in rows if r["name"] == "ssh")
    assert ssh == {"name": "ssh", "version": "1.0.0", "description": ssh["description"],
                   "families": ["debian", "arch"], "folder": str(ROOT / "layers" / "ssh"), "shadows": []}
    assert ssh["description"].startswith("OpenSSH server")


def test_modules_text_names_version_families_and_folder() -> None:
    lines = invoke("modules").stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("agents "))
    assert lines[row].split()[:3] == ["agents", "1.0.0", "any"]
    assert lines[row + 1].strip() == "from layers/agents"


def test_modules_of_a_recipe_include_its_own_and_say_what_they_shadow(tmp_path: Path) -> None:
    from tests.unit.test_lookup import make_team

    recipe = make_team(tmp_path, str(ROOT / "recipes" / "turboflow.toml"))
    rows = {r["name"]: r for r in json.loads(invoke("modules", "--json", str(recipe)).stdout)}
    assert rows["hello"]["families"] is None and rows["hello"]["folder"] == str(recipe.parent / "layers" / "hello")
    assert rows["python"]["version"] == "9.9.9" and rows["python"]["shadows"] == [str(ROOT / "layers" / "python")]
    text = invoke("modules", str(recipe)).stdout
    assert f"from {recipe.parent / 'layers' / 'python'} (shadows layers/python)" in text


def test_show_json_has_options_packages_services_ports_hooks() -> None:
    info = json.loads(invoke("show", "--json", "vnc-desktop").stdout)
    options = {o["name"]: o for o in info["options"]}
    assert options["depth"] == {"name": "depth", "type": "integer", "default": 24,
                                "description": "Colour depth in bits", "allowed": [16, 24, 32], "limits": [],
                                "fields": []}
    assert options["port"]["limits"] == ["1..65535"]
    assert info["requires"] == ["base", "supervisord"] and info["after"] == ["users"]
    assert "tigervnc-standalone-server" in info["packages"]["debian"] and "tigervnc" in info["packages"]["arch"]
    assert [s["name"] for s in info["services"]] == ["dbus", "xvnc", "xfce4"]
    assert info["ports"] == ["{options.port}/tcp"] and info["hooks"] == ["25-desktop.sh"]
    assert {"src": "files/vnc", "dest": "/usr/local/lib/composer/vnc"} in info["files"]


def test_show_json_option_packages_and_credentials() -> None:
    gui = json.loads(invoke("show", "--json", "gui-apps").stdout)
    assert "qgis" in gui["option_packages"]["apps"]
    assert next(o for o in gui["options"] if o["name"] == "apps")["type"] == "array of string"
    creds = json.loads(invoke("show", "--json", "ai-credentials").stdout)["credentials"]
    assert creds and all(c["secrets"] for c in creds)


def test_show_names_the_keys_of_a_list_of_tables() -> None:
    """`users` is an array of tables: show says which keys each user has, not only 'object'."""
    users = next(o for o in json.loads(invoke("show", "--json", "users").stdout)["options"] if o["name"] == "users")
    fields = {f["name"]: f for f in users["fields"]}
    assert list(fields)[:3] == ["name", "uid", "gid"]
    assert fields["name"]["required"] and fields["uid"]["type"] == "integer" and not fields["gid"]["required"]
    assert fields["home_mode"]["default"] == "0750"
    lines = invoke("show", "users").stdout.splitlines()
    assert "      .uid (integer, required)" in lines
    assert any(line.startswith('      .home_mode (string, default "0750"): Mode of the home') for line in lines)
    assert "keys: `name` (string, required), `uid` (integer, required)" in (ROOT / "docs" / "modules.md").read_text()


def test_show_text() -> None:
    lines = invoke("show", "ssh").stdout.splitlines()
    assert lines[0].startswith("ssh 1.0.0 — OpenSSH server")
    assert "  folder:    layers/ssh" in lines and "  requires:  base, supervisord" in lines
    assert '    user (string, default "devuser"): User whose authorized_keys / password the secrets set' in lines
    assert "      matches ^[a-z_][a-z0-9_-]{0,31}$" in lines
    assert any(line.startswith("  service:   sshd ") for line in lines)


def test_show_unknown_module_is_one_line_with_the_known_ones() -> None:
    result = subprocess.run([sys.executable, "-m", "composer", "show", "vnc"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith("composer: error: no module 'vnc' (known: agents, ")


def test_docs_modules_md_is_current() -> None:
    """docs/modules.md is generated; regenerate with: composer modules --markdown > docs/modules.md"""
    generated = invoke("modules", "--markdown").stdout
    assert (ROOT / "docs" / "modules.md").read_text() == generated
    for name in SHIPPED:
        assert f"\n## {name}\n" in generated


def test_generated_docs_cover_modules_without_readme() -> None:
    generated = invoke("modules", "--markdown").stdout
    section = generated.split("\n## supervisord\n")[1].split("\n## ")[0]
    assert "| option | type | default | description |" in section or "packages (debian)" in section
    assert "README" not in section or (PROJECT_LAYERS / "supervisord" / "README.md").is_file()


def test_module_completion() -> None:
    ctx = click.Context(show, info_name="show")
    assert complete_module(ctx, show.params[0], "vnc") == ["vnc-desktop"]
    assert complete_module(ctx, show.params[0], "") == SHIPPED
    assert complete_module(ctx, show.params[0], "zzz") == []


def test_module_completion_sees_the_recipes_own_modules(tmp_path: Path) -> None:
    from tests.unit.test_lookup import make_team

    recipe = make_team(tmp_path, str(ROOT / "recipes" / "turboflow.toml"))
    ctx = click.Context(show, info_name="show")
    ctx.params["recipe"] = recipe
    assert complete_module(ctx, show.params[0], "he") == ["hello"]


def test_bash_completion_end_to_end() -> None:
    env = {**os.environ, "_COMPOSER_COMPLETE": "bash_complete", "COMP_WORDS": "composer show vnc-", "COMP_CWORD": "2"}
    result = subprocess.run([sys.executable, "-m", "composer"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,vnc-desktop"]
    env["_COMPOSER_COMPLETE"] = "bash_source"
    source = subprocess.run([sys.executable, "-m", "composer"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert "_composer_completion" in source.stdout and "complete " in source.stdout


def test_show_a_team_module_through_its_recipe(tmp_path: Path) -> None:
    from tests.unit.test_lookup import make_team

    recipe = make_team(tmp_path, str(ROOT / "recipes" / "turboflow.toml"))
    python = json.loads(invoke("show", "--json", "python", "--recipe", str(recipe)).stdout)
    assert python["version"] == "9.9.9" and python["shadows"] == [str(ROOT / "layers" / "python")]
    assert json.loads(invoke("show", "--json", "python").stdout)["version"] == "1.0.0"  # without: the project's
    hello = invoke("show", "hello", "--recipe", str(recipe)).stdout.splitlines()
    assert hello[:3] == ["hello 0.1.0 — Says hello", f"  folder:    {recipe.parent / 'layers' / 'hello'}",
                         "  families:  any (no packages)"]
    assert "  env:       HELLO=1" in hello
