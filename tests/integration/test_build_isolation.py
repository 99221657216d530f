"""What one module's build step can do to another's: the shared package lists are fetched
by composer in a step of its own and mounted read-only into module steps, so a module cannot
rewrite the index another module's install then trusts (and get the poisoned layer cached,
and pushed, under the victim's honest key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers, copy_tree

pytestmark = pytest.mark.integration

POISON = """#!/bin/sh
# The attack: append a forged stanza to the package index the next install reads.
set -eu
for index in /var/lib/apt/lists/*_Packages; do
    printf '\\nPackage: jq\\nVersion: 99.0\\nArchitecture: all\\nFilename: pool/x/jq_99.0_all.deb\\n' >> "$index"
done
echo poisoned
"""


def test_a_module_cannot_rewrite_the_package_lists(containers: Containers, tmp_path: Path) -> None:
    tree = copy_tree(RECIPES, tmp_path / "recipes")
    module = tree / "layers" / "poison"
    (module / "scripts").mkdir(parents=True)
    (module / "scripts" / "poison.sh").write_text(POISON)
    (module / "module.toml").write_text('name = "poison"\nversion = "1"\n[[scripts]]\nrun = "scripts/poison.sh"\n')
    recipe = tree / "isolation.toml"
    recipe.write_text((tree / "core-test.toml").read_text()
                      .replace('name = "composer-core-test"', 'name = "composer-isolation"')
                      .replace('[[layers]]\nmodule = "motd"', '[[layers]]\nmodule = "poison"\n\n[[layers]]\n'
                               'module = "motd"', 1))
    result = containers.composer("build", str(recipe), "--no-archive", "-o", str(tmp_path / "out"), check=False)
    assert result.returncode != 0, result.stdout
    assert "layer 1 poison: command failed" in result.stderr
    assert "Read-only file system" in result.stderr
    # The lists composer fetched are as apt wrote them: no forged stanza anywhere.
    lists = list(containers.cache_dir.glob("packages/*/var_lib_apt_lists/*_Packages"))
    assert lists and not any(b"Version: 99.0" in p.read_bytes() for p in lists)
    # ...and a module that only installs still works on them (jq from the real index).
    core = containers.build_once(RECIPES / "core-test.toml")
    assert any(layer["module"] == "jq" for layer in core["layers"])
