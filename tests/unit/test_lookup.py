"""Module lookup through `extends`: search order, shadowing, --strict, global options after
the subcommand, and a team folder outside the repository that needs no flags."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from composer.cli import cli
from composer.recipe import PROJECT_LAYERS, load_recipe

ROOT = Path(__file__).resolve().parent.parent.parent
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"
TURBOFLOW_LOCK = ROOT / "recipes" / "turboflow.lock"
SHADOW = ("module 'python' is in team/layers and {project}; team/layers/python is used")


# recipes/turboflow.lock exists; a team recipe beside none is keyed unlocked, and told so.
LOCK_NOTE = (f"composer: warning: team/recipe.toml: no lock, while the recipe it extends has one ({TURBOFLOW_LOCK}): "
             "its layers are keyed unlocked, so it shares none of the parent's module layers "
             "(composer lock team/recipe.toml; docs/lock.md)")


def make_team(where: Path, extends: str) -> Path:
    """where/team: a recipe extending turboflow, a module of its own (hello) and its own
    python (a copy of the project's, version 9.9.9) that shadows the project's."""
    team = where / "team"
    hello = team / "layers" / "hello"
    hello.mkdir(parents=True)
    (hello / "module.toml").write_text('name = "hello"\nversion = "0.1.0"\ndescription = "Says hello"\n'
                                       'env = { HELLO = "1" }\n')
    python = team / "layers" / "python"
    shutil.copytree(PROJECT_LAYERS / "python", python)
    toml = python / "module.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "9.9.9"', 1))
    (team / "recipe.toml").write_text(
        f'extends = "{extends}"\nname = "team-x"\nremove = ["cuda", "gui-apps"]\n[[layers]]\nmodule = "hello"\n')
    return team / "recipe.toml"


def composer(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "composer", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture
def team(tmp_path: Path) -> Path:
    return make_team(tmp_path, os.path.relpath(TURBOFLOW, tmp_path / "team"))


def test_search_order_child_then_each_ancestor_then_project(tmp_path: Path) -> None:
    mid = tmp_path / "mid"
    (mid / "layers").mkdir(parents=True)
    (mid / "mid.toml").write_text(f'extends = "{TURBOFLOW}"\n')
    recipe = make_team(tmp_path, "../mid/mid.toml")
    dirs = load_recipe(recipe).module_dirs
    assert dirs[:3] == (tmp_path / "team" / "layers", mid / "layers", PROJECT_LAYERS)
    assert len(set(dirs)) == len(dirs)


def test_recipe_in_tests_recipes_still_finds_its_own_and_the_projects_layers() -> None:
    dirs = load_recipe(ROOT / "tests" / "recipes" / "core-test.toml").module_dirs
    assert dirs[:2] == (ROOT / "tests" / "recipes" / "layers", PROJECT_LAYERS)


def test_team_module_shadows_the_projects_with_a_warning(team: Path) -> None:
    result = composer("plan", "--json", "--offline", str(team), cwd=team.parent.parent)
    assert result.returncode == 0, result.stderr
    warning = SHADOW.format(project=PROJECT_LAYERS)
    assert result.stderr.splitlines() == [
        f"composer: warning: {TURBOFLOW}: layers[8].module: {warning}", LOCK_NOTE,
    ]
    import json

    layers = {layer["module"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert layers["python"]["version"] == "9.9.9"  # the team's, not the project's 1.0.0
    assert "hello" in layers and "cuda" not in layers


def test_strict_makes_shadowing_an_error(team: Path) -> None:
    result = composer("check", "--strict", str(team), cwd=team.parent.parent)  # before the command: below
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"composer: error: {TURBOFLOW}: layers[8].module: " + SHADOW.format(project=PROJECT_LAYERS)
    assert lines[1].startswith("composer: hint: ") and "Traceback" not in result.stderr
    result = CliRunner().invoke(cli, ["--strict", "check", str(team)])
    assert result.exit_code == 1  # run from the repository: paths display relative to it
    assert f"layers[8].module: module 'python' is in {team.parent / 'layers'} and layers; " in str(result.exception)


def test_modules_dir_and_env_path_come_first(team: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra, env_dir = tmp_path / "extra", tmp_path / "env"
    for folder in (extra, env_dir):
        shutil.copytree(team.parent / "layers" / "hello", folder / "hello")
    monkeypatch.chdir(tmp_path)
    env = {"COMPOSER_MODULES_PATH": os.pathsep.join([str(env_dir), ""])}
    # --modules-dir after the subcommand, and the environment's folders after it
    result = CliRunner().invoke(cli, ["check", "--modules-dir", str(extra), str(team)], env=env)
    assert result.exit_code == 0, result.output
    assert ("composer: warning: team/recipe.toml: layers[0].module: "
            "module 'hello' is in extra and env, team/layers; extra/hello is used") in result.stderr.splitlines()
    result = CliRunner().invoke(cli, ["check", str(team)], env=env)
    assert "module 'hello' is in env and team/layers; env/hello is used" in result.stderr


def test_global_options_after_the_subcommand(team: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["plan", "--offline", "--cache-dir", str(cache), "-v", "--root",
                                      str(tmp_path / "storage"), "--strict", str(team)])
    assert result.exit_code == 1  # --strict after the subcommand counts
    assert "layers[8].module: module 'python' is in" in str(result.exception)
    result = CliRunner().invoke(cli, ["check", "--cache-dir", str(cache), str(ROOT / "recipes" / "turboflow.toml")])
    assert result.exit_code == 0, result.output
    assert (cache / "valid").is_dir()  # the late --cache-dir was used


def test_unknown_option_after_the_subcommand_is_still_an_error() -> None:
    result = CliRunner().invoke(cli, ["check", "--no-such-thing", str(TURBOFLOW)])
    assert result.exit_code == 2 and "No such option '--no-such-thing'" in result.output


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_team_folder_outside_the_repo_needs_no_flags(tmp_path: Path, how: str) -> None:
    extends = str(TURBOFLOW) if how == "absolute" else os.path.relpath(TURBOFLOW, tmp_path / "team")
    make_team(tmp_path, extends)
    shutil.rmtree(tmp_path / "team" / "layers" / "python")  # no shadowing: no warning either
    check = composer("check", "team/recipe.toml", cwd=tmp_path)
    # No other warning than that a team of a locked turboflow has no lock of its own.
    assert check.returncode == 0 and check.stderr.splitlines() == [LOCK_NOTE], check.stderr
    assert check.stdout.startswith("team/recipe.toml: ok — base debootstrap:trixie, 15 layers")
    plan = composer("plan", "--offline", "team/recipe.toml", cwd=tmp_path)
    assert plan.returncode == 0 and plan.stderr.splitlines() == [LOCK_NOTE], plan.stderr
    assert plan.stdout.startswith("localhost/team-x:latest") and " hello " in plan.stdout


def test_missing_module_names_every_folder_searched(team: Path) -> None:
    team.write_text(team.read_text().replace('"hello"', '"nope"'))
    result = composer("check", str(team), cwd=team.parent)
    assert result.returncode == 1
    assert "no module 'nope'" in result.stderr
    assert f"(searched layers, {PROJECT_LAYERS})" in result.stderr


def test_a_folder_named_twice_is_no_shadowing(tmp_path: Path) -> None:
    # --modules-dir naming the project's own layers/ (as older scripts do) warns of nothing
    result = composer("--modules-dir", str(ROOT / "tests" / "recipes" / "layers"), "--modules-dir",
                      str(ROOT / "layers"), "check", str(ROOT / "tests" / "recipes" / "core-test.toml"), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_every_global_option_after_the_subcommand_reaches_the_settings(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    import composer.cli as cli_module

    seen = []

    def record(settings: cli_module.Settings, recipe: Path, runner: object = None) -> None:
        seen.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr(cli_module, "make_plan", record)  # the options are under test, not planning
    monkeypatch.setenv("COMPOSER_MODULES_PATH", "/env/a" + os.pathsep + "/env/b")
    args = ["--modules-dir", "/first", "kube", "--root", "/r", "--runroot", "/rr", "--storage-driver", "vfs",
            "--modules-dir", "/second", "--cache-dir", str(tmp_path), "-v", "--debug", "--strict", str(TURBOFLOW)]
    CliRunner().invoke(cli, args)
    settings = seen[0]
    assert (settings.storage.root, settings.storage.runroot, settings.storage.driver) == ("/r", "/rr", "vfs")
    assert settings.modules_dirs == tuple(Path(p) for p in ("/first", "/second", "/env/a", "/env/b"))
    assert settings.cache_dir == tmp_path and settings.verbose and settings.debug and settings.strict
    CliRunner().invoke(cli, ["kube", str(TURBOFLOW)])
    assert not (seen[1].verbose or seen[1].strict) and seen[1].storage.root == ""


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    result = composer("check", "--debug", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr
