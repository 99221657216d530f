"""Issue 23: what `check` let through, as a team meets it (modules of the test's own)."""

from __future__ import annotations

from pathlib import Path

from composer.emit.kube import secret_yaml
from composer.planner import plan_file


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_secret_only_a_modules_credentials_name_is_declared(tmp_path: Path) -> None:
    write(tmp_path / "layers" / "tok" / "module.toml",
          'name = "tok"\nversion = "1"\n[[credentials]]\nuser = "root"\nfile = ".config/t.json"\n'
          'secrets = { token = "TEAM_TOKEN" }\n')
    recipe = write(tmp_path / "r.toml",
                   'name = "r"\n[base]\nfrom = "scratch"\nfamily = "debian"\n[[layers]]\nmodule = "tok"\n'
                   '[[secrets]]\nname = "OTHER"\ndescription = "declared by the recipe"\n')
    plan = plan_file(recipe)
    secrets = {s.name: s.description for s in plan.recipe.secrets}
    assert secrets["OTHER"] == "declared by the recipe"
    assert "module tok" in secrets["TEAM_TOKEN"]
    assert "TEAM_TOKEN:" in secret_yaml(plan.recipe)
