"""Why did a layer miss? Compare its key document with the last one built for the module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.lockfile import changes
from composer.model import Plan


def stored_documents(cache_dir: Path) -> list[dict[str, Any]]:
    """Every key document kept in the cache, newest first."""
    folder = cache_dir / "keys"
    if not folder.is_dir():
        return []
    paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    documents = []
    for path in paths:
        try:
            document = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # a damaged document explains nothing; the layer's key is still right
        if isinstance(document, dict):
            documents.append(document)
    return documents


def field_changes(b_document: dict[str, Any], a_document: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs between two key documents of one layer (B's, A's), as data: one entry
    per option (`options.NAME`), per file or hook (`files`, with its `path`), per other
    field; `b` and `a` hold the values, null where one side has none. The parent is
    reported apart."""
    out: list[dict[str, Any]] = []
    for name in sorted(set(a_document) | set(b_document)):
        old, new = b_document.get(name), a_document.get(name)
        if old == new or name == "parent":
            continue
        if name in ("files", "hooks"):
            before = {e[0]: e[1:] for e in old or []}
            after = {e[0]: e[1:] for e in new or []}
            out += [{"field": name, "path": path, "b": before.get(path), "a": after.get(path)}
                    for path in sorted(set(before) | set(after)) if before.get(path) != after.get(path)]
        elif isinstance(old, dict) and isinstance(new, dict):
            out += [{"field": f"{name}.{key}", "b": old.get(key), "a": new.get(key)}
                    for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        else:
            out.append({"field": name, "b": old, "a": new})
    return out


def change_text(change: dict[str, Any]) -> str:
    """One change of field_changes in words: `files: etc/motd changed`, `options.user: "a" -> "b"`."""
    old, new = change["b"], change["a"]
    if "path" in change:
        what = f"{change['field']}: {change['path']}"
        if old is None or new is None:
            return f"{what} {'added' if old is None else 'removed'}"
        return f"{what} mode {old[0]} -> {new[0]}" if old[0] != new[0] else f"{what} changed"
    if change["field"] == "lock":  # a lock entry against none: its size, not every package
        def entry(value: Any) -> str:
            return "no lock entry" if value is None else f"{len(value)} locked packages"

        return f"lock: {entry(old)} -> {entry(new)}"
    return f"{change['field']}: {json.dumps(old)} -> {json.dumps(new)}"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two key documents of the same step; a composer.lock
    change names the packages that moved."""
    out = changes("", old.get("lock"), new.get("lock")) if old.get("lock") != new.get("lock") else []
    plain = [{k: v for k, v in document.items() if k != "lock"} for document in (old, new)]
    return out + [change_text(change) for change in field_changes(*plain)]


def missing_reasons(plan: Plan, cached: set[str], cache_dir: Path) -> dict[str, list[str]]:
    """For each missing layer's key, every reason it misses: its own changes since the last
    build of it, and the earliest missing layer it is built on (restack: only its parents)."""
    documents = stored_documents(cache_dir)
    layers = plan.layers()
    by_key = {layer.key: layer for layer in layers}
    out: dict[str, list[str]] = {}
    for layer in layers:
        key, document = layer.key, layer.key_document
        if key in cached:
            continue
        previous = next(
            (d for d in documents
             if d.get("kind") == document.get("kind") and d.get("module") == document.get("module")
             and d.get("source", "") == document.get("source", "") and d != document),
            None,
        )
        upstream = ""
        parent = by_key.get(layer.parent_key)
        while parent is not None and parent.key not in cached:
            upstream = f"{parent.index} {parent.label}"
            parent = by_key.get(parent.parent_key)
        reasons = ["never built with this cache"] if previous is None else differences(previous, document)
        if upstream:
            reasons.append(f"an earlier layer changed ({upstream})")
        elif not reasons:
            reasons = ["its parent layer is not the one it was last built on"]
        out[key] = reasons
    return out


def explain(plan: Plan, cached: set[str], cache_dir: Path) -> list[str]:
    """One line per missing step (and indented reasons), in build order."""
    reasons = missing_reasons(plan, cached, cache_dir)
    lines: list[str] = []
    for layer in plan.layers():
        why = reasons.get(layer.key)
        if why is None:
            continue
        head = f"[{layer.index}] {layer.label}: missing"
        if len(why) == 1 and why[0].startswith("an earlier layer changed"):
            lines.append(f"{head} because {why[0]}")
        elif why[0] == "never built with this cache":
            lines.append(f"{head}, never built with this cache" + "".join(f"; {w}" for w in why[1:]))
        else:
            lines.append(f"{head}; since the last build of it:")
            lines += [f"      {'and ' if w.startswith('an earlier') else ''}{w}" for w in why]
    return lines or ["every layer is cached"]
