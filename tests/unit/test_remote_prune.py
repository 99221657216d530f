"""Registry-side housekeeping decisions: what `cache prune --registry` deletes and how it
asks skopeo. tests/integration/test_registry.py runs it against a real registry."""

from __future__ import annotations

import subprocess
import sys

from composer.cache import DAY, Entry
from composer.remote_prune import created_seconds, delete_argv, registry_candidates, registry_entry

NOW = 1_800_000_000.0


def entry(key: str, module: str, days_ago: float, used_by: tuple[str, ...] = (), depth: int = 2) -> Entry:
    return Entry(key, module, f"sha256:{key}", 100, NOW - days_ago * DAY, used_by, depth)


def keys(entries: list[Entry]) -> list[str]:
    return sorted(e.key for e in entries)


def test_unknown_modules_are_not_counted_together_for_keep() -> None:
    entries = [entry("a", "?", 50), entry("b", "?", 40), entry("c", "jq", 30), entry("d", "jq", 1)]
    assert keys(registry_candidates(entries, None, 1, NOW)) == ["c"]
    assert keys(registry_candidates(entries, 35, None, NOW)) == ["a", "b"]
    assert keys(registry_candidates(entries, 35, 1, NOW)) == ["a", "b"]  # c is younger than 35 days


def test_a_used_tag_is_never_deleted_and_tops_go_first() -> None:
    entries = [entry("base", "debootstrap:trixie", 90, depth=1), entry("top", "jq", 90, depth=3),
               entry("used", "jq", 90, used_by=("registry.example:5000/cache:release",))]
    assert [e.key for e in registry_candidates(entries, 0, None, NOW)] == ["top", "base"]


def test_registry_entry_reads_skopeo_inspect() -> None:
    info = {"Digest": "sha256:abc", "Created": "2026-11-27T07:43:10.123456789Z",
            "LayersData": [{"Size": 10}, {"Size": 32}]}
    e = registry_entry("k", info, "jq", ["b", "a"])
    assert (e.image_id, e.size, e.depth, e.used_by) == ("sha256:abc", 42, 2, ("a", "b"))
    assert e.last_used == created_seconds("2026-11-27T07:43:10Z")
    assert created_seconds("2026-11-27T08:43:10+01:00") == e.last_used
    assert created_seconds("yesterday") is None


def test_delete_argv_deletes_by_the_inspected_digest() -> None:
    assert delete_argv("127.0.0.1:5000/cache", "sha256:abc", False, "") == [
        "skopeo", "--command-timeout", "20s", "delete", "--retry-times", "1", "--tls-verify=false",
        "docker://127.0.0.1:5000/cache@sha256:abc"]


def test_registry_must_be_a_repository() -> None:
    result = subprocess.run([sys.executable, "-m", "composer", "cache", "ls", "--registry",
                             "127.0.0.1:5000/cache:latest"], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("composer: error: --registry: '127.0.0.1:5000/cache:latest' is not a registry"), \
        result.stderr
