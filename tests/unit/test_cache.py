"""Cache housekeeping decisions: what prune removes and what it always keeps, and what
`cache ls` reads from the key documents. tests/integration/test_cache_housekeeping.py runs
them against real containers-storage."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from composer.cache.local import DAY, Entry, last_used, mark_used, module_of, prune_candidates
from composer.cli import cli

NOW = 1_800_000_000.0


def entry(key: str, module: str, days_ago: float | None, used_by: tuple[str, ...] = (), depth: int = 2) -> Entry:
    last = None if days_ago is None else NOW - days_ago * DAY
    return Entry(key, module, f"id-{key}", 100, last, used_by, depth)


ENTRIES = [
    entry("new", "jq", 1), entry("mid", "jq", 10), entry("old", "jq", 40),
    entry("used", "jq", 90, used_by=("localhost/app:latest",)),
    entry("unknown", "motd", None),
]


def keys(entries: list[Entry]) -> list[str]:
    return sorted(e.key for e in entries)


def test_older_than_removes_old_layers_but_never_one_an_image_uses() -> None:
    assert keys(prune_candidates(ENTRIES, 7, None, NOW)) == ["mid", "old", "unknown"]
    assert keys(prune_candidates(ENTRIES, 0, None, NOW)) == ["mid", "new", "old", "unknown"]


def test_keep_n_keeps_the_last_used_of_each_module() -> None:
    # jq's newest two (by last use) are "new" and "mid"; "used" is kept because an image uses it.
    assert keys(prune_candidates(ENTRIES, None, 2, NOW)) == ["old"]
    assert keys(prune_candidates(ENTRIES, None, 0, NOW)) == ["mid", "new", "old", "unknown"]


def test_both_rules_must_match() -> None:
    assert keys(prune_candidates(ENTRIES, 20, 1, NOW)) == ["old"]


def test_layers_built_on_others_are_removed_first() -> None:
    found = prune_candidates([entry("base", "b", 9, depth=1), entry("top", "t", 9, depth=3)], 1, None, NOW)
    assert [e.key for e in found] == ["top", "base"]


def test_module_and_last_used_come_from_the_cache(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "m.json").write_text(json.dumps({"kind": "module", "module": "jq"}))
    (folder / "b.json").write_text(json.dumps({"kind": "base", "source": "debootstrap:trixie"}))
    (folder / "f.json").write_text(json.dumps({"kind": "finalize"}))
    assert [module_of(tmp_path, k) for k in ("m", "b", "f", "x")] == ["jq", "debootstrap:trixie", "finalize", "?"]
    assert last_used(tmp_path, "x") is None
    mark_used(tmp_path, ["m"])
    assert last_used(tmp_path, "m") == (tmp_path / "used" / "m").stat().st_mtime


def test_prune_without_a_rule_is_a_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["cache", "prune"])
    assert result.exit_code != 0
    assert "--older-than DAYS and/or --keep N" in str(result.exception)
