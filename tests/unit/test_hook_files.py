"""The shared hooks/ folder is treated like a module folder: a hook that links out of it is
refused, and a hook is keyed by the content it names (a link's text is not its content)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.planner import plan_file


def project(tmp_path: Path) -> Path:
    module = tmp_path / "layers" / "m"
    module.mkdir(parents=True)
    (module / "module.toml").write_text('name = "m"\nversion = "1"\nhooks = ["50-m.sh"]\n')
    (tmp_path / "hooks").mkdir()
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n[base]\nfrom = "scratch"\nfamily = "debian"\n[[layers]]\nmodule = "m"\n')
    return recipe


def test_a_hook_linking_out_of_the_hooks_folder_is_refused(tmp_path: Path) -> None:
    recipe = project(tmp_path)
    secret = tmp_path / "host-secret"
    secret.write_text("password\n")
    os.symlink(secret, tmp_path / "hooks" / "50-m.sh")
    with pytest.raises(ComposerError, match=r"50-m\.sh: a symlink to .*host-secret, outside the module folder"):
        plan_file(recipe)


def test_a_linked_hook_is_keyed_and_copied_by_its_content(tmp_path: Path) -> None:
    recipe = project(tmp_path)
    target = tmp_path / "hooks" / "real.sh"
    target.write_text("#!/bin/sh\necho one\n")
    os.symlink("real.sh", tmp_path / "hooks" / "50-m.sh")
    first = plan_file(recipe)
    assert first.steps[0].hooks == (("50-m.sh", target.resolve()),)  # the builder copies this file
    target.write_text("#!/bin/sh\necho two\n")  # same link text, other content
    assert plan_file(recipe).steps[0].key != first.steps[0].key
