"""Planning: order by requires/after, family checks, option validation, cache keys."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.planner import plan_file

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def module(root: Path, name: str, body: str = "", files: dict[str, str] | None = None) -> None:
    folder = root / "layers" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "module.toml").write_text(f'name = "{name}"\nversion = "1"\n{body}')
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def recipe(root: Path, layers: list[str], base: str = 'from = "debootstrap:trixie"', extra: str = "") -> Path:
    text = f'name = "t"\n[base]\n{base}\n' + "".join(f'[[layers]]\nmodule = "{m}"\n' for m in layers)
    path = root / "r.toml"
    path.write_text(text + extra)
    return path


def names(path: Path) -> list[str]:
    return [s.module.name for s in plan_file(path).steps]


def test_order_keeps_recipe_order_without_constraints(tmp_path: Path) -> None:
    for m in "cab":
        module(tmp_path, m)
    assert names(recipe(tmp_path, ["c", "a", "b"])) == ["c", "a", "b"]


def test_requires_and_after_reorder(tmp_path: Path) -> None:
    module(tmp_path, "a", 'requires = ["c"]\n')
    module(tmp_path, "b", 'after = ["a", "absent"]\n')
    module(tmp_path, "c")
    assert names(recipe(tmp_path, ["b", "a", "c"])) == ["c", "a", "b"]


def test_missing_required_module(tmp_path: Path) -> None:
    module(tmp_path, "a", 'requires = ["z"]\n')
    with pytest.raises(ComposerError, match=r"layers\[0\]: module 'a' requires 'z'"):
        plan_file(recipe(tmp_path, ["a"]))


def test_cycle_is_a_plan_error(tmp_path: Path) -> None:
    module(tmp_path, "a", 'after = ["b"]\n')
    module(tmp_path, "b", 'requires = ["a"]\n')
    with pytest.raises(ComposerError, match="ordering cycle among modules a, b"):
        plan_file(recipe(tmp_path, ["a", "b"]))


def test_unknown_module(tmp_path: Path) -> None:
    (tmp_path / "layers").mkdir()
    with pytest.raises(ComposerError, match=r"layers\[0\]\.module: no module 'nope'"):
        plan_file(recipe(tmp_path, ["nope"]))


def test_family_mismatch_fails_at_plan_time(tmp_path: Path) -> None:
    module(tmp_path, "a", '[packages]\narch = ["jq"]\n')
    with pytest.raises(ComposerError, match="module 'a' has no packages for family 'debian'"):
        plan_file(recipe(tmp_path, ["a"]))


def test_arch_base_plans_arch_packages(tmp_path: Path) -> None:
    module(tmp_path, "a", '[packages]\ndebian = ["jq"]\narch = ["jq"]\n')
    path = recipe(tmp_path, ["a"], base='from = "image:docker.io/cachyos/cachyos:latest"\nfamily = "arch"')
    plan = plan_file(path, base_digest="sha256:abc")
    assert plan.steps[0].module.packages_for(plan.recipe.base.family) == ("jq",)


def test_option_errors_name_recipe_field(tmp_path: Path) -> None:
    module(tmp_path, "a", '[options.count]\ntype = "integer"\ndefault = 1\n')
    path = recipe(tmp_path, ["a"], extra='[layers.options]\ncount = "three"\n')
    with pytest.raises(ComposerError, match=r"r\.toml: layers\[0\]\.options\.count: 'three' is not of type 'integer'"):
        plan_file(path)


def test_unknown_option(tmp_path: Path) -> None:
    module(tmp_path, "a")
    path = recipe(tmp_path, ["a"], extra="[layers.options]\nbogus = 1\n")
    with pytest.raises(ComposerError, match=r"layers\[0\]\.options\.bogus: module .a. has no option .bogus."):
        plan_file(path)


def test_defaults_are_filled(tmp_path: Path) -> None:
    module(tmp_path, "a", '[options.count]\ntype = "integer"\ndefault = 1\n[options.who]\ntype = "string"\n')
    step = plan_file(recipe(tmp_path, ["a"])).steps[0]
    assert step.options == {"count": 1}


def test_module_schema_error_names_module_file(tmp_path: Path) -> None:
    module(tmp_path, "a", '[[services]]\nname = "x"\ncommand = "not a list"\n')
    with pytest.raises(ComposerError, match=r"layers/a/module\.toml: services\[0\]\.command"):
        plan_file(recipe(tmp_path, ["a"]))


def test_missing_hook(tmp_path: Path) -> None:
    module(tmp_path, "a", 'hooks = ["10-nope.sh"]\n')
    with pytest.raises(ComposerError, match=r"module.toml: hooks\[0\]: '10-nope.sh' not found in"):
        plan_file(recipe(tmp_path, ["a"]))


# --- cache keys -----------------------------------------------------------------------

def keys(path: Path, **kw: str) -> list[str]:
    plan = plan_file(path, **kw)  # type: ignore[arg-type]
    return [plan.base.key, *(s.key for s in plan.steps)]


@pytest.fixture
def three(tmp_path: Path) -> Path:
    module(tmp_path, "a", files={"f.txt": "a"})
    module(tmp_path, "b", '[options.n]\ntype = "integer"\ndefault = 1\n', files={"f.txt": "b"})
    module(tmp_path, "c", files={"f.txt": "c"})
    return recipe(tmp_path, ["a", "b", "c"])


def test_keys_are_stable(three: Path) -> None:
    assert keys(three) == keys(three)


def test_key_changes_from_changed_file_on(three: Path) -> None:
    before = keys(three)
    (three.parent / "layers/b/f.txt").write_text("changed")
    after = keys(three)
    assert after[:2] == before[:2] and all(x != y for x, y in zip(after[2:], before[2:], strict=True))


def test_key_changes_with_mode(three: Path) -> None:
    before = keys(three)
    (three.parent / "layers/b/f.txt").chmod(0o755)
    assert keys(three)[2] != before[2]


def test_key_ignores_mtime_and_location(three: Path, tmp_path: Path) -> None:
    before = keys(three)
    os.utime(three.parent / "layers/b/f.txt", (1, 1))
    assert keys(three) == before
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(tmp_path, moved)
    assert keys(moved / "r.toml") == before


def test_key_changes_with_option(three: Path) -> None:
    before = keys(three)
    three.write_text(three.read_text().replace('module = "b"\n', 'module = "b"\n[layers.options]\nn = 2\n'))
    after = keys(three)
    assert after[1] == before[1] and after[2] != before[2] and after[3] != before[3]


def test_key_unchanged_when_option_equals_default(three: Path) -> None:
    before = keys(three)
    three.write_text(three.read_text().replace('module = "b"\n', 'module = "b"\n[layers.options]\nn = 1\n'))
    assert keys(three) == before


def test_key_changes_with_parent(three: Path) -> None:
    before = keys(three)
    three.write_text(three.read_text().replace('"debootstrap:trixie"', '"debootstrap:bookworm"'))
    after = keys(three)
    assert all(x != y for x, y in zip(after, before, strict=True))


def test_key_changes_with_family(three: Path) -> None:
    debian = plan_file(recipe(three.parent, ["a"], base='from = "scratch"\nfamily = "debian"'))
    arch = plan_file(recipe(three.parent, ["a"], base='from = "scratch"\nfamily = "arch"'))
    assert debian.steps[0].key != arch.steps[0].key


def test_byte_code_does_not_change_keys(three: Path) -> None:
    before = keys(three)
    cache = three.parent / "layers/b/__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    assert keys(three) == before


def test_secrets_never_in_key_documents() -> None:
    plan = plan_file(RECIPES / "core-test.toml")
    documents = json.dumps([plan.base.key_document, *(s.key_document for s in plan.steps),
                            plan.finalize.key_document])
    assert "host-ca" not in documents and "PROXY" not in documents.upper()


def test_core_recipe_order() -> None:
    assert names(RECIPES / "core-test.toml") == ["motd", "jq", "greeting", "marker"]
