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


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two key documents of the same step."""
    out: list[str] = []
    for field in sorted(set(old) | set(new)):
        a, b = old.get(field), new.get(field)
        if a == b or field == "parent":
            continue
        if field == "lock":  # composer.lock: name the packages that moved
            out += changes("", a, b)
        elif field == "files" or field == "hooks":
            before = {e[0]: e[1:] for e in a or []}
            after = {e[0]: e[1:] for e in b or []}
            for name in sorted(set(before) | set(after)):
                if name not in before:
                    out.append(f"{field}: {name} added")
                elif name not in after:
                    out.append(f"{field}: {name} removed")
                elif before[name][0] != after[name][0]:
                    out.append(f"{field}: {name} mode {before[name][0]} -> {after[name][0]}")
                elif before[name] != after[name]:
                    out.append(f"{field}: {name} changed")
        elif isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    out.append(f"{field}.{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}")
        else:
            out.append(f"{field}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


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
