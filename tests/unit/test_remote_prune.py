"""Registry-side housekeeping decisions: what `cache prune --registry` deletes and how it
asks skopeo. tests/integration/test_registry.py runs it against a real registry."""

from __future__ import annotations

import subprocess
import sys

from composer.cache.local import DAY, Entry
from composer.cache.prune import delete_argv, registry_candidates, registry_entry

NOW = 1_800_000_000.0


def entry(key: str, module: str, days_ago: float | None, used_by: tuple[str, ...] = (), depth: int = 2) -> Entry:
    last = None if days_ago is None else NOW - days_ago * DAY
    return Entry(key, module, f"sha256:{key}", 100, last, used_by, depth)


def keys(entries: list[Entry]) -> list[str]:
    return sorted(e.key for e in entries)


def test_layers_this_cache_never_saw_are_kept() -> None:
    entries = [entry("a", "?", 50), entry("b", "jq", None), entry("c", "jq", 30), entry("d", "jq", 1)]
    assert keys(registry_candidates(entries, None, 1, NOW)) == ["c"]
    assert keys(registry_candidates(entries, 0, None, NOW)) == ["c", "d"]


def test_a_used_tag_is_never_deleted_and_tops_go_first() -> None:
    entries = [entry("base", "debootstrap:trixie", 90, depth=1), entry("top", "jq", 90, depth=3),
               entry("used", "jq", 90, used_by=("registry.example:5000/cache:release",))]
    assert [e.key for e in registry_candidates(entries, 0, None, NOW)] == ["top", "base"]


def test_registry_entry_reads_skopeo_inspect_and_the_manifest() -> None:
    info = {"Digest": "sha256:abc", "Created": "1970-01-01T00:00:00Z", "Layers": ["sha256:1", "sha256:2"]}
    manifest = {"layers": [{"digest": "sha256:1", "size": 10}, {"digest": "sha256:2", "size": 32}]}
    e = registry_entry("k", info, manifest, "jq", ["b", "a"], NOW)
    assert (e.image_id, e.size, e.depth, e.used_by, e.last_used) == ("sha256:abc", 42, 2, ("a", "b"), NOW)


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
