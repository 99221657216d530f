"""plan --why: a miss is explained by diffing key documents kept in the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

from composer.explain import differences, explain
from composer.keys import canonical_json
from composer.model import Plan
from composer.planner import plan_file

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def remember(cache: Path, documents: list[tuple[str, dict]]) -> None:
    (cache / "keys").mkdir(parents=True, exist_ok=True)
    for key, document in documents:
        (cache / "keys" / f"{key}.json").write_bytes(canonical_json(document))


def all_documents(plan) -> list[tuple[str, dict]]:
    return [(plan.base.key, plan.base.key_document), *((s.key, s.key_document) for s in plan.steps),
            (plan.finalize.key, plan.finalize.key_document)]


def test_differences_name_files_modes_and_options() -> None:
    old = {"files": [["a", "0644", "x"], ["b", "0644", "y"]], "options": {"n": 1}, "parent": "p"}
    new = {"files": [["a", "0755", "x"], ["c", "0644", "z"]], "options": {"n": 2}, "parent": "q"}
    assert differences(old, new) == [
        "files: a mode 0644 -> 0755", "files: b removed", "files: c added", "options.n: 1 -> 2"]


def changed(tmp_path: Path, *modules: str) -> tuple[Plan, Plan, Path]:
    """The core test recipe planned, its documents kept in a cache, then planned again
    after these modules' module.toml changed: (before, after, cache)."""
    tree = tmp_path / "recipes"
    shutil.copytree(RECIPES, tree)
    before = plan_file(tree / "core-test.toml")
    cache = tmp_path / "cache"
    remember(cache, all_documents(before))
    for name in modules:
        toml = tree / "layers" / name / "module.toml"
        toml.write_text(toml.read_text() + "# x\n")
    return before, plan_file(tree / "core-test.toml"), cache


def test_explain_points_at_the_changed_module(tmp_path: Path) -> None:
    before, after, cache = changed(tmp_path, "jq")
    cached = {before.base.key, before.steps[0].key}
    lines = explain(after, cached, cache)
    assert lines[:2] == ["[2] jq: missing; since the last build of it:", "      files: module.toml changed"]
    assert lines[2] == "[3] greeting: missing because an earlier layer changed (2 jq)"
    assert explain(before, {k for k, _ in all_documents(before)}, cache) == ["every layer is cached"]


def test_explain_without_history(tmp_path: Path) -> None:
    plan = plan_file(RECIPES / "core-test.toml")
    assert explain(plan, set(), tmp_path)[0] == "[0] base debootstrap:trixie: missing, never built with this cache"
