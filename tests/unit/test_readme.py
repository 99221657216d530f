"""The README's examples are true: its recipe and module pass `composer check`, and the team
recipe it shows is the start of recipes/teams/ml.toml."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from composer.cli import cli

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```(toml|sh)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_quick_start_is_the_two_commands() -> None:
    assert BLOCKS[0][1].splitlines() == [
        "./scripts/setup-host && .venv/bin/composer build recipes/turboflow.toml",
        "./scripts/setup-host --test && .venv/bin/pytest",
    ]
    assert "bash .ci/run" not in BLOCKS[0][1]
    assert ".venv/bin/pytest" in (ROOT / ".ci" / "run").read_text()


def test_the_recipe_and_module_shown_pass_check(tmp_path: Path) -> None:
    recipe, module, script = (BLOCKS[1][1], BLOCKS[2][1], BLOCKS[3][1])
    folder = tmp_path / "layers" / "greeting"
    (folder / "scripts").mkdir(parents=True)
    (folder / "module.toml").write_text(module)
    (folder / "scripts" / "write.sh").write_text(script)
    (tmp_path / "recipe.toml").write_text(recipe)
    result = CliRunner().invoke(cli, ["check", str(tmp_path / "recipe.toml")])
    assert result.exit_code == 0, (result.output, result.exception)


def test_the_team_recipe_shown_is_mltoml() -> None:
    shown = [line.split("#")[0].strip() for line in BLOCKS[4][1].splitlines()]
    actual = [line.split("#")[0].strip() for line in (ROOT / "recipes" / "teams" / "ml.toml").read_text().splitlines()]
    assert [line for line in shown if line and not line.startswith("description")] == \
        [line for line in actual if line and not line.startswith("description")][:len([s for s in shown if s])]


def test_every_command_is_in_the_readme() -> None:
    text = (ROOT / "README.md").read_text()
    missing = [name for name in cli.commands if f"`composer {name}" not in text and f"composer {name} " not in text]
    assert missing == []
