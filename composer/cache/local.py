"""Cache housekeeping: what layers containers-storage holds (`composer cache ls`) and
removing old ones (`composer cache prune`), never one a tagged image is built on."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import commands as cmd
from composer.runner import Runner

USED = "used"  # cache_dir/used/<key>: touched by every build that uses the layer
DAY = 86400.0


def mark_used(cache_dir: Path, keys: Iterable[str]) -> None:
    """Record that a build used these layers (the stamp's mtime is 'last used')."""
    folder = cache_dir / USED
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for key in keys:
        stamp = folder / key
        stamp.touch()
        os.utime(stamp, (now, now))


@dataclass(frozen=True)
class Entry:
    """One cache layer in containers-storage."""

    key: str
    module: str  # the module's name, the base's source, finalize, reconcile or stack
    image_id: str
    size: int  # bytes of the image this key tags (its layers and those below)
    last_used: float | None  # epoch seconds; None when no build of this cache recorded it
    used_by: tuple[str, ...]  # tagged images built on this layer
    depth: int = 0  # layers in the image: one built on another has more

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "module": self.module, "image_id": self.image_id, "size": self.size,
                "last_used": None if self.last_used is None else round(self.last_used),
                "used_by": list(self.used_by)}


def module_of(cache_dir: Path, key: str) -> str:
    """What made the layer, from its key document (kept by the build or the pull)."""
    try:
        document = json.loads((cache_dir / "keys" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return "?"
    kind = document.get("kind", "?")
    if kind == "module":
        return str(document.get("module", "?"))
    if kind == "base":
        return str(document.get("source", "base"))
    return str(kind)


def last_used(cache_dir: Path, key: str) -> float | None:
    for path in (cache_dir / USED / key, cache_dir / "keys" / f"{key}.json"):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return None


def list_entries(runner: Runner, storage: cmd.Storage, cache_dir: Path) -> list[Entry]:
    """Every cache layer with what uses it: two calls (buildah images, podman image inspect)."""
    listing = json.loads(runner.output(cmd.buildah(storage, "images", "--json", "--no-trunc")) or "[]") or []
    for image in listing:  # --no-trunc gives "sha256:<id>", podman the bare id
        image["id"] = str(image["id"]).removeprefix("sha256:")
    ids = [image["id"] for image in listing]
    if not ids:
        return []
    inspected = json.loads(runner.output(
        ["podman", *storage.flags(), "image", "inspect", "--format", "json", *ids]) or "[]")
    layers = {i["Id"]: set((i.get("RootFS") or {}).get("Layers") or ()) for i in inspected}
    sizes = {i["Id"]: int(i.get("Size") or 0) for i in inspected}
    prefix = cmd.CACHE_REPO + ":"
    tagged = [(name, layers.get(image["id"], set())) for image in listing
              for name in image.get("names") or () if not name.startswith(prefix)]
    entries = []
    for image in listing:
        own = layers.get(image["id"], set())
        for name in image.get("names") or ():
            if not name.startswith(prefix):
                continue
            key = name[len(prefix):]
            used_by = tuple(sorted(t for t, chain in tagged if own and own <= chain))
            entries.append(Entry(key, module_of(cache_dir, key), image["id"], sizes.get(image["id"], 0),
                                 last_used(cache_dir, key), used_by, len(own)))
    return sorted(entries, key=lambda e: (e.module, -(e.last_used or 0), e.key))


def prune_candidates(entries: Sequence[Entry], older_than_days: float | None, keep: int | None,
                     now: float) -> list[Entry]:
    """Layers to remove: no tagged image uses them, and they match every rule given —
    last used more than older_than_days ago, not among the keep last used of their module.
    A layer no build recorded as used counts as the oldest."""
    rank: dict[str, int] = {}
    per_module: dict[str, list[Entry]] = {}
    for entry in entries:
        per_module.setdefault(entry.module, []).append(entry)
    for group in per_module.values():
        group.sort(key=lambda e: e.last_used or 0.0, reverse=True)
        for i, entry in enumerate(group):
            rank[entry.key] = i
    out = []
    for entry in entries:
        if entry.used_by:
            continue
        if older_than_days is not None and (entry.last_used or 0.0) > now - older_than_days * DAY:
            continue
        if keep is not None and rank[entry.key] < keep:
            continue
        out.append(entry)
    # Layers built on others first: an image is removed before the one it is built on.
    return sorted(out, key=lambda e: e.depth, reverse=True)


def remove(runner: Runner, storage: cmd.Storage, cache_dir: Path, entries: Sequence[Entry]) -> None:
    """Untag each cache layer (containers-storage frees the layers no other image holds)."""
    for entry in entries:
        runner.run(cmd.buildah(storage, "rmi", cmd.cache_ref(entry.key)))
        (cache_dir / USED / entry.key).unlink(missing_ok=True)


def age_text(last: float | None, now: float) -> str:
    if last is None:
        return "unknown"
    seconds = max(now - last, 0)
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < DAY:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / DAY:.0f}d ago"
