"""The layering of the code (docs/design.md): loading, the model, planning and the text
emitters are pure — importing them loads nothing that starts a process, reaches a registry
or builds. Only composer/runner.py starts processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURE = (
    "composer.recipe", "composer.model", "composer.modules", "composer.planner", "composer.keys",
    "composer.schema", "composer.step", "composer.finalize", "composer.effective", "composer.explain",
    "composer.catalog", "composer.refs", "composer.commands",
    "composer.emit.kube", "composer.emit.containerfile", "composer.emit.job", "composer.emit.output",
    "composer.emit.sbom", "composer.inventory", "composer.timings", "composer.units",
)
# Modules that run processes or talk to a registry, and the one library that starts them.
EFFECTS = ("composer.runner", "composer.builder", "composer.cache.registry", "composer.cache.prune",
           "composer.emit.oci", "composer.volumes", "composer.restack.stack", "composer.restack.reconcile",
           "sh", "subprocess")


@pytest.mark.parametrize("module", PURE)
def test_pure_parts_load_no_effects(module: str) -> None:
    code = (f"import sys, json; import {module}; "
            f"print(json.dumps([m for m in {list(EFFECTS)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == [], f"{module} loads {out.stdout.strip()}"


def test_only_the_runner_starts_processes() -> None:
    starters = ("import subprocess", "from subprocess", "os.system(", "os.popen(", "Popen(", "import sh\n",
                "os.exec", "os.spawn")
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "composer").rglob("*.py")
                   if any(s in p.read_text() for s in starters))
    assert found == ["composer/runner.py"]
