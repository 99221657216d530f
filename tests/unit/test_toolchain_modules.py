"""The issue-4 modules (python, rust, node, cuda, latex, gui-apps, skills, agents): they
plan for both families with the seed's defaults, in a working order, reject bad option
values at plan time, and their scripts are valid POSIX sh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.model import Family
from composer.planner import plan_file

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
MODULES = ["python", "rust", "node", "cuda", "latex", "gui-apps", "skills", "agents"]
BASES = {
    Family.DEBIAN: 'from = "debootstrap:trixie"\ncomponents = ["main", "contrib", "non-free"]',
    Family.ARCH: 'from = "image:docker.io/cachyos/cachyos:latest"\nfamily = "arch"',
}


def write_recipe(folder: Path, family: Family, options: str = "", order: list[str] | None = None) -> Path:
    layers = "".join(f'[[layers]]\nmodule = "{m}"\n' for m in ["base", *(order or MODULES)])
    path = folder / f"{family}.toml"
    path.write_text(f'name = "t"\n[base]\n{BASES[family]}\n{layers}{options}')
    return path


@pytest.fixture(params=list(BASES), ids=str)
def family(request: pytest.FixtureRequest) -> Family:
    return Family(request.param)


def test_plans_for_both_families_in_a_working_order(tmp_path: Path, family: Family) -> None:
    # Listed in the worst order: planning must still put each after what it needs.
    plan = plan_file(write_recipe(tmp_path, family, order=list(reversed(MODULES))), (LAYERS,))
    names = [s.module.name for s in plan.steps]
    assert sorted(names) == sorted(["base", *MODULES])
    assert names[0] == "base"
    assert names.index("python") < names.index("cuda") < names.index("gui-apps")
    for step in plan.steps:
        if step.module.name != "agents":  # agents is family-neutral: no packages at all
            assert step.module.packages_for(family), f"{step.module.name} has no {family} packages"


def test_seed_defaults(tmp_path: Path) -> None:
    plan = plan_file(write_recipe(tmp_path, Family.DEBIAN), (LAYERS,))
    options = {s.module.name: s.options for s in plan.steps}
    py = options["python"]
    assert py["data_science_packages"] == ["numpy", "pandas", "scipy", "matplotlib", "seaborn"]
    assert py["ml_packages"] == ["scikit-learn", "torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"]
    assert py["dev_packages"] == ["black", "flake8", "mypy", "pylint", "pytest"]
    assert py["utilities_packages"] == ["requests", "beautifulsoup4", "pyyaml", "toml"]
    assert py["tools"] == ["pip", "virtualenv", "poetry", "uv"]
    assert all(py[g] for g in ("data_science", "ml", "dev", "utilities"))
    node = options["node"]
    assert node["globals"][0] == "@anthropic-ai/claude-code"
    assert {"agentic-flow", "pm2", "ts-node", "playwright"} <= set(node["globals"])
    assert node["ignore_scripts"] == ["agentic-flow"]
    assert node["user_packages"] == {"gemini-user": ["@google/gemini-cli"], "openai-user": ["@openai/codex"]}
    assert len(options["skills"]["skills"]) == 6
    assert options["gui-apps"]["apps"] == ["blender", "qgis", "kicad", "imagemagick", "chromium", "firefox"]
    assert options["cuda"]["cudnn"] == "pip"
    assert options["agents"]["target"] == "/home/devuser/agents"


def test_seed_environment(tmp_path: Path) -> None:
    plan = plan_file(write_recipe(tmp_path, Family.DEBIAN), (LAYERS,))
    env = {s.module.name: dict(s.module.env) for s in plan.steps}
    assert env["cuda"]["CUDA_HOME"] == "/opt/cuda"
    assert env["cuda"]["LD_LIBRARY_PATH"] == "/opt/cuda/lib64"
    # [env] values are literal and the later module's PATH wins: cuda's keeps the venv,
    # last: root's PATH never starts with the group-writable venv (users get it first
    # from the python module's profile script).
    assert env["cuda"]["PATH"].split(":")[0] == "/opt/cuda/bin"
    for module in ("cuda", "python"):
        assert env[module]["PATH"].split(":")[-1] == "/opt/venv/bin", module
    assert env["python"]["PATH"].startswith("/usr/local/sbin:")
    assert env["node"]["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] == "1"


@pytest.mark.parametrize(("module", "options"), [
    ("skills", 'skills = ["web-summary", "nope"]'),
    ("skills", 'user = "dev user"'),
    ("python", 'data_science_packages = ["-e git+https://example.org/x"]'),
    ("python", "ml = 1"),
    ("node", 'globals = ["--unsafe-perm"]'),
    ("node", 'user_packages = { "Bad User" = ["x"] }'),
    ("node", 'zai_base_url = "https://x\\"; rm -rf /"'),
    ("cuda", 'cudnn = "debian"'),
    ("cuda", 'cudnn_package = "torch"'),
    ("latex", 'collections = ["everything"]'),
    ("gui-apps", 'apps = ["steam"]'),
    ("agents", 'extra_dir = "relative/path"'),
    ("python", "unknown_option = true"),
])
def test_bad_option_values_fail_at_plan_time(tmp_path: Path, module: str, options: str) -> None:
    layers = "".join(f'[[layers]]\nmodule = "{m}"\n' for m in ["base", module])
    path = tmp_path / "r.toml"
    path.write_text(f'name = "t"\n[base]\n{BASES[Family.DEBIAN]}\n{layers}[layers.options]\n{options}\n')
    with pytest.raises(ComposerError):
        plan_file(path, (LAYERS,))


def test_light_ci_recipe_plans() -> None:
    plan = plan_file(ROOT / "tests" / "recipes" / "tools-ci.toml")
    options = {s.module.name: s.options for s in plan.steps}
    assert options["python"]["ml"] is False
    assert options["latex"]["collections"] == []
    assert options["gui-apps"]["apps"] == ["imagemagick"]
    assert set(options["skills"]["skills"]) == {"imagemagick", "pbr-rendering", "web-summary"}


SCRIPTS = sorted(p for m in MODULES for p in (LAYERS / m).rglob("*.sh")) + [
    LAYERS / "agents" / "files" / "composer-agents"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(LAYERS)))
def test_scripts_are_posix_sh_with_set_eu(script: Path) -> None:
    text = script.read_text()
    if script.parent.name == "scripts" or script.name == "composer-agents":
        assert text.startswith("#!/bin/sh\n")
        assert "set -eu" in text
        assert "eval" not in text
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            subprocess.run([shell, "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "sh", "-e", "SC2086,SC1090,SC1091", str(script)], check=True)


def test_module_folders_hold_no_byte_code() -> None:
    # Everything in a module folder is part of its cache key.
    assert not [p for m in MODULES for p in (LAYERS / m).rglob("__pycache__")]


def test_agents_tool_counts_and_syncs_templates(tmp_path: Path) -> None:
    """composer-agents with its settings pointed at temporary folders."""
    script = (LAYERS / "agents" / "files" / "composer-agents").read_text()
    conf = tmp_path / "agents.json"
    target, extra = tmp_path / "agents", tmp_path / "extra"
    (extra / "team").mkdir(parents=True)
    (extra / "team" / "reviewer.md").write_text("# reviewer\n")
    (extra / "notes.txt").write_text("not a template\n")
    conf.write_text(json.dumps({"target": str(target), "user": "nobody-here", "extra_dir": str(extra)}))
    tool = tmp_path / "composer-agents"
    tool.write_text(script.replace("/etc/composer/options/agents.json", str(conf))
                    .replace("/etc/composer/agents.count", str(tmp_path / "count"))
                    .replace("/usr/local/share/composer/agents", str(tmp_path / "image")))
    tool.chmod(0o755)
    assert subprocess.run([str(tool)], capture_output=True, text=True, check=True).stdout == "0\n"
    out = subprocess.run([str(tool), "sync"], capture_output=True, text=True, check=True).stdout
    assert "1 agent templates" in out
    assert (target / "team" / "reviewer.md").read_text() == "# reviewer\n"
    assert (tmp_path / "count").read_text() == "1\n"
    (target / "team" / "reviewer.md").write_text("edited\n")
    subprocess.run([str(tool), "sync"], capture_output=True, check=True)
    assert (target / "team" / "reviewer.md").read_text() == "edited\n"  # never overwritten


@pytest.mark.needs("setpriv", root=True, why="dropping to another user needs root")
def test_agents_sync_as_root_copies_as_the_user() -> None:
    """Run as root (the 60-agents hook), the copying is done as the folder's user: a
    symlink the user planted in the folder leads nowhere root could write."""
    box = Path(tempfile.mkdtemp(prefix="agents-", dir="/tmp"))  # nobody must reach it
    try:
        box.chmod(0o755)
        script = (LAYERS / "agents" / "files" / "composer-agents").read_text()
        conf, target, extra = box / "agents.json", box / "agents", box / "extra"
        outside = box / "outside"  # root's folder, say /etc
        for folder in (target, extra / "team", outside):
            folder.mkdir(parents=True)
        (extra / "team" / "reviewer.md").write_text("# reviewer\n")
        (extra / "planner.md").write_text("# planner\n")
        os.chown(target, 65534, 65534)
        (target / "team").symlink_to(outside)  # planted by the user
        conf.write_text(json.dumps({"target": str(target), "user": "nobody",
                                    "extra_dir": str(extra)}))
        tool = box / "composer-agents"
        tool.write_text(script.replace("/etc/composer/options/agents.json", str(conf))
                        .replace("/etc/composer/agents.count", str(box / "count"))
                        .replace("/usr/local/share/composer/agents", str(box / "image")))
        tool.chmod(0o755)
        subprocess.run([str(tool), "sync"], capture_output=True, text=True, check=True)
        assert list(outside.iterdir()) == []  # root would have written reviewer.md there
        planner = target / "planner.md"
        assert planner.read_text() == "# planner\n" and planner.stat().st_uid == 65534
    finally:
        shutil.rmtree(box)


@pytest.mark.needs("setpriv", root=True, why="a shell as another user needs root")
def test_venv_first_for_users_last_for_root() -> None:
    """The python module's profile script: a user's shell gets /opt/venv/bin first, root's
    keeps the image's PATH, where the group-writable venv comes last."""
    script = LAYERS / "python" / "files" / "venv-path.sh"
    image_path = "/usr/local/bin:/usr/bin:/bin:/opt/venv/bin"
    show = f'. {script}; printf %s "$PATH"'
    as_root = subprocess.run(["env", f"PATH={image_path}", "sh", "-c", show],
                             capture_output=True, text=True, check=True).stdout
    as_user = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "env", f"PATH={image_path}", "sh", "-c", show],
                             capture_output=True, text=True, check=True).stdout
    assert as_root == image_path
    assert as_user == "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"


def test_every_shipped_option_has_a_description() -> None:
    import tomllib

    missing = [
        f"{folder.name}.{name}"
        for folder in sorted(LAYERS.iterdir())
        for name, spec in tomllib.loads((folder / "module.toml").read_text()).get("options", {}).items()
        if not spec.get("description")
    ]
    assert missing == []
