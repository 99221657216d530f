"""The CLI: check, plan --json (golden), one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from composer.cli import cli

ROOT = Path(__file__).resolve().parent.parent.parent
RECIPES = ROOT / "tests" / "recipes"
GOLDEN = ROOT / "tests" / "golden"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "composer", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_ok() -> None:
    result = CliRunner().invoke(cli, ["check", str(RECIPES / "core-test.toml")])
    assert result.exit_code == 0, result.output
    assert "4 layers" in result.output


def test_plan_json_matches_golden() -> None:
    result = CliRunner().invoke(cli, ["plan", "--json", "--offline", "tests/recipes/core-test.toml"])
    assert result.exit_code == 0, result.output
    # tests/golden/regenerate rewrites the golden file; review its diff.
    # Module folders are absolute in JSON; the golden file has $PROJECT for this checkout.
    assert result.output.replace(str(ROOT), "$PROJECT") == (GOLDEN / "plan-core-test.json").read_text()
    folders = [layer["folder"] for layer in json.loads(result.output)["layers"]]
    assert folders and all(Path(f).is_absolute() and (Path(f) / "module.toml").is_file() for f in folders)


def test_bad_recipe_is_one_line_error_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[base]\nfrom = "debootstrap:trixie"\n[[layers]]\nmodule = "Bad Name"\n')
    result = run("check", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("composer: error: ")
    assert "bad.toml: layers[0].module" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    result = run("--debug", "check", str(tmp_path / "missing.toml"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_missing_file() -> None:
    result = run("plan", "--offline", "nope.toml")
    assert result.returncode == 1 and "nope.toml: no such file" in result.stderr


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("check", "plan", "build"):
        assert command in result.stdout


def test_turboflow_plans() -> None:
    result = CliRunner().invoke(cli, ["plan", "--json", "--offline", "recipes/turboflow.toml"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["image"] == "localhost/turboflow:latest"


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("kube", "tests/recipes/core-test.toml", "-o", str(blocker / "x.yaml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("composer: error: ") and len(result.stderr.strip().splitlines()) == 1


def test_every_recipe_command_takes_the_global_options_after_its_name(tmp_path: Path) -> None:
    recipe = str(RECIPES / "core-test.toml")
    for args in (["diff", recipe, recipe], ["containerfile", recipe, "-o", str(tmp_path / "x.Containerfile")],
                 ["kube", recipe], ["check", recipe], ["plan", "--offline", recipe]):
        result = CliRunner().invoke(cli, [*args, "--strict"])
        assert result.exit_code == 0, (args, result.output)


def test_dash_output_is_stdout_and_never_a_file_named_dash(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    recipe = str(RECIPES / "core-test.toml")
    kube = CliRunner().invoke(cli, ["kube", recipe, "-o", "-"])
    assert kube.exit_code == 0 and kube.output.startswith("#") and "kind: Pod" in kube.output
    result = CliRunner().invoke(cli, ["containerfile", recipe, "-o", "-"])
    assert result.exit_code == 1
    assert str(result.exception).startswith("-o -: a Containerfile is written beside its build context folder")
    assert not (tmp_path / "-").exists() and not list(tmp_path.iterdir())


def test_a_compression_level_out_of_range_is_one_line_and_builds_nothing(tmp_path: Path) -> None:
    for args, message in ((["--compression-level", "12"], "gzip level 12 is out of range (gzip levels are 1-9)"),
                          (["--compression", "zstd", "--compression-level", "0"], "zstd level 0 is out of range")):
        result = run("build", str(RECIPES / "core-test.toml"), "-o", str(tmp_path / "out"), *args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists()
