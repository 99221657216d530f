"""Reconcile modules built side by side on one parent into one consistent image.

Modules that do not depend on each other can each be built on the same parent P and
their top layers stacked in recipe order. Stacking alone is not enough: files every
package manager shares (dpkg's status, /etc/passwd, debconf's database, alternatives,
trigger interests, caches) exist in several layers and the last one hides the others.
This module reads P's root and each module's top-layer folder (an overlay "diff" folder:
only what the module changed; whiteouts are 0/0 character devices, opaque folders carry
the xattr trusted.overlay.opaque=y) and works out:

* `analyse()` — the conflicts that make stacking unsafe (those modules must then be
  built one on top of the other), and the merged content of every shared file;
* `reconcile_plan()` — the files to write, the commands to run inside the stacked
  container (ldconfig, update-alternatives, dpkg triggers) and the paths to delete;
* `apply_plan()` — the effectful part: writes the files into a buildah working container
  of the stacked image and runs the commands, in one `buildah run`; the caller commits one
  small layer.

Every merge is three-way: a module's change is the difference between its version of a
file and P's, all modules' changes are applied, and two modules changing the same entry
differently is a `Conflict`. docs/restack.md (## Reconcile) explains the rules.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import gc
import hashlib
import io
import itertools
import json
import os
import re
import shlex
import stat
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from composer import commands as cmd
from composer.emit.oci import write_atomic
from composer.errors import ComposerError
from composer.model import Family
from composer.runner import Runner

# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """Why the modules cannot be stacked: path, the modules involved, one-line reason."""

    path: str
    modules: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} ({', '.join(self.modules)})"


@dataclass(frozen=True)
class FileWrite:
    """A merged file to write into the stacked image."""

    path: str
    content: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Analysis:
    conflicts: tuple[Conflict, ...]
    writes: tuple[FileWrite, ...]
    commands: tuple[tuple[str, ...], ...]
    deletes: tuple[str, ...]
    merged: tuple[str, ...] = ()  # paths merged (written), for the report
    triggers: tuple[str, ...] = ()  # dpkg triggers to run again
    # Where the commands read (files and folders; None: not known, as for
    # update-alternatives), and the members as analysed: what reuse (below) checks.
    reads: tuple[str, ...] | None = None
    layers: tuple[_Layer, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.conflicts


@dataclass(frozen=True)
class ReconcilePlan:
    """What apply_plan does, in this order: write files, run commands, delete paths."""

    writes: tuple[FileWrite, ...]
    commands: tuple[tuple[str, ...], ...]
    deletes: tuple[str, ...]


class ReconcileConflict(ComposerError):
    """The modules cannot be stacked; they must be built one on top of the other."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        self.conflicts = tuple(conflicts)
        first = "; ".join(str(c) for c in self.conflicts[:3])
        more = f" (+{len(self.conflicts) - 3} more)" if len(self.conflicts) > 3 else ""
        super().__init__(
            f"cannot stack modules: {first}{more}",
            hint="build these modules one on top of the other instead",
        )


# A module's version of a file: (module name, bytes), or None when the module deleted it.
Version = tuple[str, bytes | None]
MergeResult = bytes | None | Conflict  # None: the merged result is "no file"

# --- three-way merge of keyed records --------------------------------------------------

Combine = Callable[[str | None, str, str], str | None]


def merge_records(
    path: str,
    parent: Sequence[tuple[str, str]],
    versions: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    combine: Combine | None = None,
    describe: Callable[[str, str | None, str | None], str] | None = None,
) -> list[tuple[str, str]] | Conflict:
    """Three-way merge of (key, record) lists: P's, then each module's in stack order.

    A module changes a key when its record differs from P's (or it adds or drops it).
    Two modules changing one key differently is a conflict unless combine(parent, a, b)
    returns one record for both (e.g. the union of a group's members). The result keeps
    P's order, then new keys in the order the modules add them.
    """
    base = dict(parent)
    changes: dict[str, tuple[str, str | None]] = {}  # key -> (module, record or None: dropped)
    added: list[str] = []
    for module, records in versions:
        mine = dict(records)
        for key, record in base.items():
            new = mine.get(key)
            if new != record:
                conflict = _change(path, changes, key, module, new, base.get(key), combine, describe)
                if conflict:
                    return conflict
        for key, record in records:
            if key not in base:
                if key not in changes:
                    added.append(key)
                conflict = _change(path, changes, key, module, record, None, combine, describe)
                if conflict:
                    return conflict
    out: list[tuple[str, str]] = []
    for key, record in parent:
        new = changes[key][1] if key in changes else record
        if new is not None:
            out.append((key, new))
    out += [(key, rec) for key in added if (rec := changes[key][1]) is not None]
    return out


def _change(
    path: str, changes: dict[str, tuple[str, str | None]], key: str, module: str,
    new: str | None, old: str | None, combine: Combine | None,
    describe: Callable[[str, str | None, str | None], str] | None,
) -> Conflict | None:
    if key not in changes or changes[key][1] == new:
        changes[key] = (changes[key][0] if key in changes else module, new)
        return None
    first, theirs = changes[key]
    if theirs is not None and new is not None and combine:
        both = combine(old, theirs, new)
        if both is not None:
            changes[key] = (first, both)
            return None
    reason = describe(key, theirs, new) if describe else f"{key!r} changed differently"
    return Conflict(path, (first, module), reason)


# --- formats ---------------------------------------------------------------------------


def split_stanzas(text: str) -> list[str]:
    """deb822-style paragraphs (dpkg status, debconf's .dat files), without blank lines."""
    return [s.strip("\n") for s in text.split("\n\n") if s.strip("\n")]


def stanza_field(stanza: str, name: str) -> str:
    prefix = name + ":"
    for line in stanza.split("\n"):
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return ""


def join_stanzas(stanzas: Iterable[str]) -> bytes:
    return "".join(s + "\n\n" for s in stanzas).encode()


def _package_key(stanza: str) -> str:
    # dpkg keys a package by name and architecture (multi-arch: libc6:amd64 and :i386).
    return f"{stanza_field(stanza, 'Package')}:{stanza_field(stanza, 'Architecture')}"


def _describe_package(key: str, a: str | None, b: str | None) -> str:
    def state(s: str | None) -> str:
        if s is None:
            return "removed"
        return f"{stanza_field(s, 'Version')} ({stanza_field(s, 'Status')})"
    return f"package {key.rstrip(':')} at two versions or states: {state(a)} vs {state(b)}"


def _decode(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", errors="surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _whole_file(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult | None:
    """Deleting a shared file while another module changes it cannot be merged."""
    deleted = [m for m, data in versions if data is None]
    if not deleted:
        return None
    changed = [m for m, data in versions if data is not None and data != parent]
    if changed:
        return Conflict(path, (deleted[0], changed[0]), "deleted by one module, changed by another")
    return None if len(deleted) == len(versions) else parent


def merge_stanzas(
    path: str, parent: bytes | None, versions: Sequence[Version],
    key: Callable[[str], str], sort: bool, combine: Combine | None = None,
    describe: Callable[[str, str | None, str | None], str] | None = None,
) -> MergeResult:
    whole = _whole_file(path, parent, versions)
    if whole is not None or any(d is None for _, d in versions):
        return whole

    def records(data: bytes | None) -> list[tuple[str, str]]:
        return [(key(s), s) for s in split_stanzas(_decode(data))]

    merged = merge_records(path, records(parent), [(m, records(d)) for m, d in versions], combine, describe)
    if isinstance(merged, Conflict):
        return merged
    if sort:
        merged.sort(key=lambda kv: kv[0])
    return join_stanzas(s for _, s in merged)


def merge_dpkg_status(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """dpkg's status: one stanza per package+architecture, sorted by name
    as dpkg writes it; a package two modules leave at different versions or states is a
    conflict."""
    return merge_stanzas(path, parent, versions, _package_key, sort=True, describe=_describe_package)


def merge_extended_states(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """apt's auto-installed marks; apt writes them in its cache order, so new ones are
    appended in stack order."""
    return merge_stanzas(path, parent, versions, _package_key, sort=False)


def _owners_union(old: str | None, a: str, b: str) -> str | None:
    """debconf: two modules may register the same question or template (the same package,
    or two packages sharing one); the owners are the union, the rest must agree."""
    def split(s: str) -> tuple[list[str], list[str]]:
        lines = s.split("\n")
        owners = [o.strip() for line in lines if line.startswith("Owners:")
                  for o in line[len("Owners:"):].split(",") if o.strip()]
        return [line for line in lines if not line.startswith("Owners:")], owners
    rest_a, owners_a = split(a)
    rest_b, owners_b = split(b)
    if rest_a != rest_b:
        return None
    owners = sorted(set(owners_a) | set(owners_b))
    lines = a.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("Owners:"))
    lines[at] = "Owners: " + ", ".join(owners)
    return "\n".join(lines)


def merge_debconf(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """debconf's config.dat/templates.dat/passwords.dat: stanzas by Name, owners united.
    debconf writes them sorted by name."""
    return merge_stanzas(path, parent, versions, lambda s: stanza_field(s, "Name"), sort=True,
                         combine=_owners_union)


def _lines(data: bytes | None) -> list[str]:
    return [line for line in _decode(data).split("\n") if line]


def merge_lines(
    path: str, parent: bytes | None, versions: Sequence[Version], key: Callable[[str], str],
    combine: Combine | None = None, describe: Callable[[str, str | None, str | None], str] | None = None,
) -> MergeResult:
    whole = _whole_file(path, parent, versions)
    if whole is not None or any(d is None for _, d in versions):
        return whole
    merged = merge_records(
        path, [(key(x), x) for x in _lines(parent)],
        [(m, [(key(x), x) for x in _lines(d)]) for m, d in versions], combine, describe)
    if isinstance(merged, Conflict):
        return merged
    return _encode("".join(line + "\n" for _, line in merged))


def _field(index: int) -> Callable[[str], str]:
    return lambda line: line.split(":")[index] if ":" in line else line


def _whole_line(line: str) -> str:
    return line


def _members_union(members_at: Sequence[int]) -> Combine:
    """group/gshadow: two modules adding different users to one group (e.g. both `adm`)."""
    def combine(old: str | None, a: str, b: str) -> str | None:
        fa, fb = a.split(":"), b.split(":")
        if len(fa) != len(fb) or any(fa[i] != fb[i] for i in range(len(fa)) if i not in members_at):
            return None
        fo = old.split(":") if old else [""] * len(fa)
        for i in members_at:
            names = [n for n in (fo[i].split(",") + fa[i].split(",") + fb[i].split(",")) if n]
            fa[i] = ",".join(dict.fromkeys(names))
        return ":".join(fa)
    return combine


def merge_account_file(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """/etc/passwd, group, shadow, gshadow (and their '-' backups): lines by name; passwd
    and group must not give one uid/gid to two names (the ids are baked into the files
    each module owns)."""
    name = path.rsplit("/", 1)[-1].rstrip("-")
    combine = {"group": _members_union([3]), "gshadow": _members_union([2, 3])}.get(name)
    merged = merge_lines(path, parent, versions, _field(0), combine)
    if isinstance(merged, bytes) and name in ("passwd", "group"):
        collision = id_collision(path, parent, versions, merged)
        if collision:
            return collision
    return merged


def id_collision(path: str, parent: bytes | None, versions: Sequence[Version], merged: bytes) -> Conflict | None:
    """Two names with one id where a module added at least one of them."""
    old = {line.split(":")[0] for line in _lines(parent)}
    added_by: dict[str, str] = {}
    for module, data in versions:
        for line in _lines(data):
            added_by.setdefault(line.split(":")[0], module)
    by_id: dict[str, list[str]] = {}
    for line in _lines(merged):
        parts = line.split(":")
        if len(parts) > 2:
            by_id.setdefault(parts[2], []).append(parts[0])
    kind = "gid" if "group" in path else "uid"
    for number, names in by_id.items():
        new = [n for n in names if n not in old]
        if len(names) > 1 and new:
            modules = tuple(dict.fromkeys(added_by.get(n, "parent") for n in names))
            return Conflict(path, modules, f"{kind} {number} given to {' and '.join(names)}")
    return None


def merge_subids(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """/etc/subuid, /etc/subgid: lines by name; two names' ranges must not overlap."""
    merged = merge_lines(path, parent, versions, _field(0))
    if not isinstance(merged, bytes):
        return merged
    ranges = []
    for line in _lines(merged):
        parts = line.split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((int(parts[1]), int(parts[1]) + int(parts[2]), parts[0]))
    ranges.sort()
    for (_, end, a), (start, _, b) in zip(ranges, ranges[1:], strict=False):
        if start < end:
            return Conflict(path, tuple(m for m, _ in versions), f"ranges of {a} and {b} overlap")
    return merged


def merge_line_set(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """Files that are a set of lines: /etc/shells, dpkg trigger interests, …"""
    return merge_lines(path, parent, versions, _whole_line)


def _after_fields(count: int) -> Callable[[str], str]:
    # The key is the rest of the line after `count` white-space separated fields: a path,
    # which may itself hold spaces.
    return lambda line: line.split(None, count)[-1] if len(line.split(None, count)) > count else line


def merge_statoverride(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """dpkg-statoverride: 'user group mode path', one override per path."""
    return merge_lines(path, parent, versions, _after_fields(3))


def merge_ucf(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """ucf's hashfile ('md5  path') and registry ('package  path'): one line per path."""
    return merge_lines(path, parent, versions, _after_fields(1))


def merge_diversions(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """dpkg's diversions: records of three lines (from, to, package), one per diverted path."""
    whole = _whole_file(path, parent, versions)
    if whole is not None or any(d is None for _, d in versions):
        return whole

    def records(data: bytes | None) -> list[tuple[str, str]]:
        lines = _decode(data).split("\n")
        return [(lines[i], "\n".join(lines[i:i + 3])) for i in range(0, len(lines) - 2, 3)]

    merged = merge_records(path, records(parent), [(m, records(d)) for m, d in versions])
    if isinstance(merged, Conflict):
        return merged
    return _encode("".join(r + "\n" for _, r in merged))


# --- alternatives ----------------------------------------------------------------------


@dataclass(frozen=True)
class AlternativeGroup:
    """An update-alternatives administrative file (/var/lib/dpkg/alternatives/NAME)."""

    mode: str
    link: str
    slaves: tuple[tuple[str, str], ...]  # (name, link)
    choices: tuple[tuple[str, str, tuple[str, ...]], ...]  # (path, priority, slave paths)


def parse_alternatives(text: str) -> AlternativeGroup:
    lines = text.split("\n")
    mode, link = lines[0], lines[1]
    i, slaves = 2, []
    while lines[i]:
        slaves.append((lines[i], lines[i + 1]))
        i += 2
    i += 1
    choices = []
    while i < len(lines) and lines[i]:
        path, priority = lines[i], lines[i + 1]
        paths = tuple(lines[i + 2:i + 2 + len(slaves)])
        choices.append((path, priority, paths))
        i += 2 + len(slaves)
    return AlternativeGroup(mode, link, tuple(slaves), tuple(choices))


def format_alternatives(group: AlternativeGroup) -> bytes:
    out = [group.mode, group.link]
    for name, link in group.slaves:
        out += [name, link]
    out.append("")
    for path, priority, paths in group.choices:
        out += [path, priority, *paths]
    out.append("")
    return _encode("\n".join(out) + "\n")


def merge_alternatives(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """One alternatives group registered by several modules: the union of their choices,
    slaves in the order they were first registered (as update-alternatives appends them).
    A group in manual mode is a person's choice and cannot be merged."""
    whole = _whole_file(path, parent, versions)
    if whole is not None or any(d is None for _, d in versions):
        return whole
    groups = [(m, parse_alternatives(_decode(d))) for m, d in versions]
    old = parse_alternatives(_decode(parent)) if parent else None
    for module, group in groups:
        if group.mode != "auto":
            return Conflict(path, (module,), "alternatives group in manual mode")
    links = {g.link for _, g in groups}
    if len(links) > 1:
        return Conflict(path, tuple(m for m, _ in groups), f"master link differs: {sorted(links)}")
    slaves: dict[str, str] = {}
    for _, group in ([("parent", old)] if old else []) + groups:
        for name, link in group.slaves:
            if slaves.setdefault(name, link) != link:
                return Conflict(path, tuple(m for m, _ in groups), f"slave {name} has two links")

    def full(group: AlternativeGroup) -> dict[str, tuple[str, tuple[str, ...]]]:
        names = [n for n, _ in group.slaves]
        return {p: (prio, tuple(dict(zip(names, paths, strict=True)).get(n, "") for n in slaves))
                for p, prio, paths in group.choices}

    base = full(old) if old else {}
    merged = merge_records(
        path, [(p, repr(c)) for p, c in base.items()],
        [(m, [(p, repr(c)) for p, c in full(g).items()]) for m, g in groups])
    if isinstance(merged, Conflict):
        return merged
    every = {p: c for _, g in groups for p, c in full(g).items()} | base
    choices = tuple((p, every[p][0], every[p][1]) for p, _ in merged)
    return format_alternatives(AlternativeGroup("auto", groups[0][1].link, tuple(slaves.items()), choices))


def merge_log(path: str, parent: bytes | None, versions: Sequence[Version]) -> MergeResult:
    """Logs: P's content, then what each module appended, in stack order."""
    base = parent or b""
    out = base
    for _, data in versions:
        if data is None:
            continue
        out += data[len(base):] if data.startswith(base) else data
    return out


# --- which file merges how ---------------------------------------------------------------

Merge = Callable[[str, bytes | None, Sequence[Version]], MergeResult]

SHARED_FILES: dict[str, Merge] = {
    "/var/lib/dpkg/status": merge_dpkg_status,
    "/var/lib/apt/extended_states": merge_extended_states,
    "/var/cache/debconf/config.dat": merge_debconf,
    "/var/cache/debconf/templates.dat": merge_debconf,
    "/var/cache/debconf/passwords.dat": merge_debconf,
    "/var/lib/dpkg/statoverride": merge_statoverride,
    "/var/lib/dpkg/diversions": merge_diversions,
    "/var/lib/ucf/hashfile": merge_ucf,
    "/var/lib/ucf/hashfile.0": merge_ucf,
    "/var/lib/ucf/registry": merge_ucf,
    "/var/lib/ucf/registry.0": merge_ucf,
    "/etc/shells": merge_line_set,
    "/var/lib/shells.state": merge_line_set,
    "/etc/subuid": merge_subids,
    "/etc/subuid-": merge_subids,
    "/etc/subgid": merge_subids,
    "/etc/subgid-": merge_subids,
    # Arch: pacman's database is one folder per package (/var/lib/pacman/local/NAME-VER/),
    # which the generic "same path, same content" rule already unites; accounts merge as here.
    **{f"/etc/{name}{suffix}": merge_account_file
       for name in ("passwd", "group", "shadow", "gshadow") for suffix in ("", "-")},
}
SHARED_PREFIXES: tuple[tuple[str, Merge], ...] = (
    ("/var/lib/dpkg/triggers/", merge_line_set),
    ("/var/lib/dpkg/alternatives/", merge_alternatives),
    ("/var/log/", merge_log),
)

# Written afresh by the commands the plan runs (or by update-alternatives --auto): the
# stacked (last) version is a placeholder, so different versions are not a conflict.
REGENERATED = ("/etc/ld.so.cache", "/etc/alternatives/")
REGENERATED_GLOBS = (
    "/usr/share/mime/*", "/usr/share/icons/*/icon-theme.cache", "/var/cache/man/*",
    "/usr/share/applications/mimeinfo.cache", "/usr/share/glib-2.0/schemas/gschemas.compiled",
    "/usr/lib/*/gdk-pixbuf-2.0/*/loaders.cache", "/usr/lib/*/gio/modules/giomodule.cache",
    "/var/cache/fontconfig/*", "/usr/share/info/dir",
)
# Random or transient per build, any module's version is as good (the last one wins, and
# with it the rest of that module's set, e.g. a host key and its .pub): machine ids, host
# keys, locks, backups the tools keep, caches composer drops.
VOLATILE = (
    "/etc/machine-id", "/var/lib/dbus/machine-id", "/var/lib/systemd/random-seed",
    "/etc/.pwd.lock", "/var/lib/dpkg/lock", "/var/lib/dpkg/lock-frontend",
    "/var/cache/debconf/config.dat-old", "/var/cache/debconf/templates.dat-old",
    "/var/cache/debconf/passwords.dat-old", "/var/cache/ldconfig/aux-cache",
    "/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin",
    # dpkg's backups of its state before its last run: no module's is "the" state (seen:
    # libicu76 "unpacked" in one module's status-old, "installed" in another's).
    "/var/lib/dpkg/status-old", "/var/lib/dpkg/diversions-old", "/var/lib/dpkg/statoverride-old",
    "/run/", "/tmp/", "/var/tmp/", "/var/lib/apt/lists/", "/var/cache/apt/archives/",
    # Binary logs that are not a sequence of records: appending would corrupt them.
    "/var/log/journal/", "/var/log/lastlog",
    "/var/cache/pacman/pkg/", "/var/lib/pacman/sync/",
)
VOLATILE_GLOBS = ("/etc/ssh/ssh_host_*",)


def merge_for(path: str) -> Merge | None:
    if path in SHARED_FILES:
        return SHARED_FILES[path]
    for prefix, merge in SHARED_PREFIXES:
        if path.startswith(prefix) and path != prefix.rstrip("/"):
            return merge
    return None


def _pattern(exact: Sequence[str], globs: Sequence[str]) -> re.Pattern[str]:
    """One regular expression for: the path is one of exact, or below one of exact that ends
    in "/", or matches one of the shell globs (fnmatchcase). One match per path instead of a
    loop over every name and glob: the analysis asks for each of thousands of paths."""
    import fnmatch
    parts = [re.escape(p) if p.endswith("/") else re.escape(p) + r"\Z" for p in exact]
    return re.compile("|".join([*parts, *(fnmatch.translate(g) for g in globs)]))


_REGENERATED = _pattern(REGENERATED, REGENERATED_GLOBS)
_VOLATILE = _pattern(VOLATILE, VOLATILE_GLOBS)


def is_regenerated(path: str) -> bool:
    return _REGENERATED.match(path) is not None


def is_volatile(path: str) -> bool:
    return _VOLATILE.match(path) is not None


# --- reading top-layer folders ------------------------------------------------------------

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class Entry(NamedTuple):
    """One path of a top layer. kind: file, dir, symlink, whiteout or other. A tuple: a
    big layer's hundreds of thousands are read back from the scan cache on every reconcile."""

    kind: str
    mode: int
    uid: int
    gid: int
    target: str = ""
    opaque: bool = False


def _opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def scan_layer(root: Path) -> dict[str, Entry]:
    """Every path of a top-layer folder, as '/abs/path' -> Entry (the folder itself left out)."""
    entries: dict[str, Entry] = {}
    top = str(root)
    for folder, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            full = os.path.join(folder, name)
            st = os.lstat(full)
            rel = "/" + os.path.relpath(full, top)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                entries[rel] = Entry("whiteout", 0, 0, 0)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = Entry("dir", mode, st.st_uid, st.st_gid, opaque=_opaque(full))
            elif stat.S_ISLNK(st.st_mode):
                entries[rel] = Entry("symlink", mode, st.st_uid, st.st_gid, target=os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                entries[rel] = Entry("file", mode, st.st_uid, st.st_gid)
            else:
                entries[rel] = Entry("other", st.st_mode, st.st_uid, st.st_gid)
    return entries


SCAN_FORMAT = 1


class ScanCache:
    """scan_layer's result per stored layer, kept in a folder: a stored layer never changes,
    so a reconcile walks only the members it has not seen (a change to one module walks that
    module's layer alone; node's or latex's hundreds of thousands of entries are read back).

    A scan is filed under the layer's own folder name in containers-storage (overlay's
    per-layer ID, new whenever a layer is committed or pulled again), never under the
    module's key: a layer rebuilt under the same key is a new folder and is walked anew.
    Each storage has its folder of scans; sweep() drops the scans of layers it no longer has."""

    def __init__(self, cache_dir: Path, layers_folder: Path) -> None:
        self.layers_folder = layers_folder  # overlay's: <graph root>/overlay
        tag = hashlib.sha256(os.fsencode(layers_folder)).hexdigest()[:16]
        self.folder = cache_dir / "reconcile-scans" / tag
        self._digests: dict[Path, dict[str, str]] = {}  # per layer: path -> sha256 of its content
        self._new_digests: set[Path] = set()  # layers with digests not saved yet

    def _file(self, root: Path, kind: str = "") -> Path:
        # overlay keeps a layer's files in <graph root>/overlay/<layer ID>/diff
        return self.folder / f"{root.parent.name}{kind}.json"

    def _write(self, file: Path, document: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(file, json.dumps(document).encode())

    def digest(self, root: Path, path: str) -> str:
        """The content digest of a file of a layer, computed once per stored layer: the
        files two modules both install are compared by content on every reconcile."""
        known = self._digests.get(root)
        if known is None:
            known = self._digests[root] = {}
            try:
                document = json.loads(self._file(root, ".digests").read_text())
                if document["format"] == SCAN_FORMAT and document["root"] == str(root):
                    known.update((str(k), str(v)) for k, v in document["digests"].items())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        found = known.get(path)
        if found is None:
            found = known[path] = _digest(root, path)
            self._new_digests.add(root)
        return found

    def save_digests(self) -> None:
        for root in sorted(self._new_digests):
            self._write(self._file(root, ".digests"),
                        {"format": SCAN_FORMAT, "root": str(root), "digests": self._digests[root]})
        self._new_digests.clear()

    def scan(self, root: Path) -> dict[str, Entry]:
        file = self._file(root)
        try:
            document = json.loads(file.read_text())
            if document["format"] == SCAN_FORMAT and document["root"] == str(root):
                make = Entry._make
                return {row[0]: make(row[1:]) for row in document["entries"]}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        entries = scan_layer(root)
        # In path order: the analysis sorts each layer's paths, fast when they come sorted.
        rows = [[path, *e] for path, e in sorted(entries.items())]
        self._write(file, {"format": SCAN_FORMAT, "root": str(root), "entries": rows})
        return entries

    def sweep(self) -> None:
        """Remove the scans and digests of layers the storage no longer has."""
        if not self.folder.is_dir():
            return
        for file in self.folder.glob("*.json"):
            if not (self.layers_folder / file.name.split(".", 1)[0]).is_dir():
                file.unlink(missing_ok=True)


def _read(root: Path, path: str) -> bytes | None:
    full = root / path.lstrip("/")
    if full.is_symlink() or not full.is_file():
        return None
    return full.read_bytes()


def _digest(root: Path, path: str) -> str:
    h = hashlib.sha256()
    with open(root / path.lstrip("/"), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- analysis -------------------------------------------------------------------------------


@dataclass
class _Layer:
    name: str
    root: Path
    entries: dict[str, Entry]
    paths: list[str] = field(default_factory=list)  # sorted, for prefix look-ups

    def __post_init__(self) -> None:
        self.paths = sorted(self.entries)

    def under(self, folder: str) -> Iterator[str]:
        """Paths below folder (not folder itself): one contiguous run of the sorted list."""
        prefix = folder.rstrip("/") + "/"
        paths = self.paths
        i = bisect.bisect_left(paths, prefix)
        while i < len(paths) and paths[i].startswith(prefix):
            yield paths[i]
            i += 1


def _exempt(path: str) -> bool:
    return is_volatile(path) or is_regenerated(path) or path.startswith("/var/log/")


def _delete_conflicts(layers: Sequence[_Layer]) -> list[Conflict]:
    """A module deletes (or replaces with an opaque folder) what another module changes."""
    out: list[Conflict] = []
    for i, layer in enumerate(layers):
        for path, entry in layer.entries.items():
            if not (entry.kind == "whiteout" or entry.opaque) or _exempt(path):
                continue
            for j, other in enumerate(layers):
                if i == j:
                    continue
                candidates = [path] if entry.kind == "whiteout" and path in other.entries else []
                hit = next((q for q in (*candidates, *other.under(path))
                            if other.entries[q].kind != "whiteout" and not _exempt(q)), None)
                if hit:
                    what = "deletes" if entry.kind == "whiteout" else "replaces the folder (opaque) of"
                    out.append(Conflict(path, (layer.name, other.name),
                                        f"one module {what} what another changes: {hit}"))
                    break
    return out


def _same(layers: Sequence[_Layer], path: str, digest: Callable[[Path, str], str] = _digest) -> bool:
    entries = [layer.entries[path] for layer in layers]
    first = entries[0]
    if any((e.kind, e.mode, e.uid, e.gid, e.target) != (first.kind, first.mode, first.uid, first.gid, first.target)
           for e in entries):
        return False
    if first.kind != "file":
        return True
    sizes = {os.lstat(os.fspath(layer.root) + path).st_size for layer in layers}  # paths start with "/"
    return len(sizes) == 1 and len({digest(layer.root, path) for layer in layers}) == 1


def _shared(layers: Sequence[_Layer]) -> dict[str, list[int]]:
    """The paths two or more layers have -> those layers' indices (counted in C: layers
    hold hundreds of thousands of paths, of which a few thousand are shared)."""
    counts = collections.Counter(itertools.chain.from_iterable(layer.entries for layer in layers))
    return {path: [i for i, layer in enumerate(layers) if path in layer.entries]
            for path, count in counts.items() if count >= 2}


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The cycle collector paused: reading the scans back makes hundreds of thousands of
    tuples and no cycle, and the collections their count sets off cost a quarter of the analysis."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def analyse(
    parent_root: str | Path, modules: Sequence[tuple[str, str | Path]], family: Family = Family.DEBIAN,
    scans: ScanCache | None = None,
) -> Analysis:
    """Conflicts and merged files for stacking `modules` (name, top-layer folder), in stack
    order, on the parent whose whole root is mounted at parent_root; scans: where the
    layers' scans are kept between builds."""
    with _no_collection():
        return _analyse(Path(parent_root), modules, family, scans)


def _analyse(
    parent: Path, modules: Sequence[tuple[str, str | Path]], family: Family, scans: ScanCache | None,
) -> Analysis:
    scan = scans.scan if scans is not None else scan_layer
    digest = scans.digest if scans is not None else _digest
    layers = [_Layer(name, Path(root), scan(Path(root))) for name, root in modules]
    conflicts = _delete_conflicts(layers) + pacman_conflicts(
        [(x.name, [p for p, e in x.entries.items() if e.kind == "dir"]) for x in layers])
    writes: list[FileWrite] = []
    merged_groups: list[str] = []
    for path, indices in sorted(_shared(layers).items()):
        these = [layers[i] for i in indices]
        entries = [layer.entries[path] for layer in these]
        if all(e.kind == "whiteout" for e in entries):
            continue
        if is_volatile(path):
            continue  # the last module's version stands
        merge = merge_for(path)
        if merge is not None and all(e.kind in ("file", "whiteout") for e in entries):
            versions = [(layer.name, _read(layer.root, path) if e.kind == "file" else None)
                        for layer, e in zip(these, entries, strict=True)]
            result = merge(path, _read(parent, path), versions)
            if isinstance(result, Conflict):
                conflicts.append(result)
            elif result is not None:
                last = next(e for e in reversed(entries) if e.kind == "file")
                if entries[-1].kind == "file" and result == _read(these[-1].root, path):
                    continue  # the stacked (last) version is the merged one already
                writes.append(FileWrite(path, result, last.mode, last.uid, last.gid))
                if path.startswith("/var/lib/dpkg/alternatives/"):
                    merged_groups.append(path.rsplit("/", 1)[-1])
            continue
        if all(e.kind == "dir" for e in entries):
            if len({(e.mode, e.uid, e.gid) for e in entries}) > 1:
                conflicts.append(Conflict(path, tuple(x.name for x in these), "folder with different mode or owner"))
            continue
        if is_regenerated(path):
            continue
        if any(e.kind == "whiteout" for e in entries):
            continue  # reported by _delete_conflicts
        if not _same(these, path, digest):
            conflicts.append(Conflict(path, tuple(x.name for x in these), "same path, different content"))
    if scans is not None:
        scans.save_digests()
    interest = _file_interest(parent, layers)
    triggers = triggers_to_rerun(parent, layers, interest)
    commands = _commands(layers, merged_groups, triggers)
    deletes = _leftovers(parent, layers, family) if commands else ()
    reads = None if merged_groups else command_reads(parent, layers, interest)
    return Analysis(tuple(conflicts), tuple(writes), commands, deletes,
                    tuple(w.path for w in writes), tuple(triggers), reads, tuple(layers))


def _leftovers(parent: Path, layers: Sequence[_Layer], family: Family) -> tuple[str, ...]:
    """What the commands leave that composer keeps out of layers (logs, ldconfig's
    aux-cache, apt's binary caches) where the stacked image had none."""
    mounted = cmd.PACKAGE_CACHE_MOUNTS[family]
    clean = [p for p in cmd.CLEAN_PATHS[family] if p not in mounted]
    return tuple(p for p in clean if not _present(parent, layers, p))


def _present(parent: Path, layers: Sequence[_Layer], path: str) -> bool:
    """Whether path exists in the stacked image: the last layer that has it decides."""
    for layer in reversed(layers):
        entry = layer.entries.get(path)
        if entry is not None:
            return entry.kind != "whiteout"
    return (parent / path.lstrip("/")).exists()


def _commands(layers: Sequence[_Layer], groups: Sequence[str], triggers: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    out: list[tuple[str, ...]] = []
    if sum(1 for x in layers if "/etc/ld.so.cache" in x.entries) >= 2:
        out.append(("ldconfig",))
    for group in groups:
        out.append(("update-alternatives", "--auto", group))
    for trigger in triggers:
        out.append(("dpkg-trigger", "--no-await", trigger))
    if triggers:
        out.append(("dpkg", "--triggers-only", "--pending"))
    return tuple(out)


# --- dpkg triggers ---------------------------------------------------------------------------

TRIGGERS_DIR = "/var/lib/dpkg/triggers/"
INFO_DIR = "/var/lib/dpkg/info/"


def _pkg_name(word: str) -> str:
    return word.split("/")[0].split(":")[0]


def parse_file_triggers(text: str) -> dict[str, set[str]]:
    """dpkg's triggers/File: 'path package[/noawait]' -> path -> interested packages."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.setdefault(parts[0], set()).add(_pkg_name(parts[1]))
    return out


def parse_activations(text: str) -> set[str]:
    """Named triggers a package's .triggers file activates."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("activate"):
            out.add(parts[1])
    return out


def package_owners(parent_status: bytes | None, versions: Sequence[tuple[int, bytes | None]]) -> dict[str, set[int]]:
    """Package name -> the layers (-1: the parent) where it is installed as it is."""
    owners: dict[str, set[int]] = {}
    old = {_package_key(s): s for s in split_stanzas(_decode(parent_status))}
    for s in old.values():
        owners.setdefault(stanza_field(s, "Package"), set()).add(-1)
    for index, data in versions:
        for s in split_stanzas(_decode(data)):
            if old.get(_package_key(s)) != s:
                owners.setdefault(stanza_field(s, "Package"), set()).add(index)
    return owners


def needs_rerun(owners: set[int], activators: set[int]) -> bool:
    """A trigger ran in each activating module against that module's view only. Run it
    again when two or more modules set it off, or when a module set it off for a package
    another module installed (whose build never saw those files)."""
    if len(activators) >= 2:
        return True
    return bool(activators) and -1 not in owners and not activators <= owners


def _current(parent: Path, layers: Sequence[_Layer], path: str) -> bytes | None:
    """A file's content in the stacked image (None: no file there)."""
    for layer in reversed(layers):
        e = layer.entries.get(path)
        if e is not None:
            return _read(layer.root, path) if e.kind == "file" else None
    return _read(parent, path)


def _file_interest(parent: Path, layers: Sequence[_Layer]) -> dict[str, set[str]]:
    """dpkg's file triggers: interest path -> packages, the union over the parent and every module."""
    file_interest: dict[str, set[str]] = {}
    sources = [_read(parent, TRIGGERS_DIR + "File")] + [
        _read(x.root, TRIGGERS_DIR + "File") for x in layers if TRIGGERS_DIR + "File" in x.entries]
    for data in sources:
        for path, pkgs in parse_file_triggers(_decode(data)).items():
            file_interest.setdefault(path, set()).update(pkgs)
    return file_interest


def triggers_to_rerun(parent: Path, layers: Sequence[_Layer],
                      file_interest: dict[str, set[str]] | None = None) -> list[str]:
    status = "/var/lib/dpkg/status"
    owners = package_owners(_read(parent, status),
                            [(i, _read(x.root, status)) for i, x in enumerate(layers) if status in x.entries])
    if file_interest is None:
        file_interest = _file_interest(parent, layers)
    named_interest: dict[str, set[str]] = {}
    names = {p[len(TRIGGERS_DIR):] for x in layers for p in x.under(TRIGGERS_DIR)}
    if (parent / TRIGGERS_DIR.lstrip("/")).is_dir():
        names |= {p.name for p in (parent / TRIGGERS_DIR.lstrip("/")).iterdir()}
    for name in sorted(names - {"File", "Unincorp", "Lock"}):
        if "/" not in name:
            text = _decode(_current(parent, layers, TRIGGERS_DIR + name))
            named_interest[name] = {_pkg_name(w) for w in text.split()}
    out: list[str] = []
    for trigger, pkgs in sorted(file_interest.items()):
        activators = {i for i, x in enumerate(layers)
                      if any(x.entries[p].kind != "dir" for p in x.under(trigger))}
        if any(needs_rerun(owners.get(pkg, {-1}), activators) for pkg in pkgs):
            out.append(trigger)
    # Named triggers a module's packages activate (their info/*.triggers files).
    activated: dict[str, set[int]] = {}
    for i, x in enumerate(layers):
        for p in x.under(INFO_DIR):
            if p.endswith(".triggers") and x.entries[p].kind == "file":
                for name in parse_activations(_decode(_read(x.root, p))):
                    activated.setdefault(name, set()).add(i)
    for trigger, pkgs in named_interest.items():
        if any(needs_rerun(owners.get(pkg, {-1}), activated.get(trigger, set())) for pkg in pkgs):
            out.append(trigger)
    return out


def reconcile_plan(
    parent_root: str | Path, modules: Sequence[tuple[str, str | Path]], family: Family = Family.DEBIAN,
) -> ReconcilePlan:
    """The plan for stacking modules on parent_root; raises ReconcileConflict if unsafe."""
    analysis = analyse(parent_root, modules, family)
    if analysis.conflicts:
        raise ReconcileConflict(analysis.conflicts)
    return ReconcilePlan(analysis.writes, analysis.commands, analysis.deletes)



# --- reusing a previous reconcile layer -------------------------------------------------------

# Where ldconfig (and libc-bin's ldconfig trigger) reads: its configuration and cache and the
# folders it searches without being told; the folders an ld.so.conf(.d) file names are added.
LINKER_READS = ("/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/ld.so.cache", "/var/cache/ldconfig",
                "/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32",
                "/usr/local/lib", "/usr/local/lib64")
DPKG_DIR = "/var/lib/dpkg"  # status, trigger interests and activations, diversions, alternatives


def _linker_folders(parent: Path, layers: Sequence[_Layer]) -> set[str]:
    """The folders the stacked image's ld.so.conf and ld.so.conf.d/* name."""
    conf_d = "/etc/ld.so.conf.d"
    names = {"/etc/ld.so.conf"} | {p for x in layers for p in x.under(conf_d) if "/" not in p[len(conf_d) + 1:]}
    if (parent / conf_d.lstrip("/")).is_dir():
        names |= {f"{conf_d}/{p.name}" for p in (parent / conf_d.lstrip("/")).iterdir()}
    out = set()
    for name in names:
        for line in _decode(_current(parent, layers, name)).splitlines():
            word = line.split("#", 1)[0].strip()
            if word.startswith("/"):
                out.add(word.rstrip("/") or "/")
    return out


def command_reads(parent: Path, layers: Sequence[_Layer], file_interest: Mapping[str, set[str]]) -> tuple[str, ...]:
    """Where the reconcile commands read, as files and folders: dpkg's database, the
    linker's files and folders, every file trigger's interest path (what dpkg itself
    decides a trigger's work by). A member with nothing there leaves their output as it was."""
    return tuple(sorted({DPKG_DIR, *LINKER_READS, *_linker_folders(parent, layers),
                         *(path.rstrip("/") or "/" for path in file_interest)}))


def tie(layer: _Layer, reads: Sequence[str], previous: Mapping[str, Entry]) -> str | None:
    """A path by which the reconcile commands' output may depend on a member, or None when
    the member is a bystander of a reconcile layer made with another version of it
    (previous: that layer's entries): it has nothing where the commands read (reads, from
    command_reads) and deletes no folder they read, and it has nothing that layer changed:
    no entry at a path the layer has, but for a folder both have with the same mode and
    owner, opaque in neither."""
    # A layer's folder holds the folders of what it changed: a change below a path comes
    # with an entry at that path.
    for path in reads:
        if path in layer.entries:
            return path
    for path, entry in layer.entries.items():
        if (entry.kind == "whiteout" or entry.opaque) and any(read.startswith(path + "/") for read in reads):
            return path
    for path, theirs in previous.items():
        mine = layer.entries.get(path)
        if mine is not None and not (mine.kind == theirs.kind == "dir" and not theirs.opaque and not mine.opaque
                                     and (mine.mode, mine.uid, mine.gid) == (theirs.mode, theirs.uid, theirs.gid)):
            return path
    return None


def analysis_digest(analysis: Analysis) -> str:
    """What a reconcile layer is made of, as a digest: the files written (content, mode,
    owner), the commands and the paths deleted."""
    document = {"commands": analysis.commands, "deletes": analysis.deletes,
                "writes": [[w.path, hashlib.sha256(w.content).hexdigest(), w.mode, w.uid, w.gid]
                           for w in analysis.writes]}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


REUSE_FORMAT = 1


class ReuseMemo:
    """The last reconcile layer made on one parent for one list of members, kept in the
    cache folder so that the next may reuse it (docs/restack.md, "Reconcile reuse"): what
    it was made of (analysis_digest, the reconciler's code), and each member's key and
    whether the member was a bystander of it (tie() found nothing)."""

    def __init__(self, cache_dir: Path, parent_key: str, names: Sequence[str]) -> None:
        tag = hashlib.sha256("\0".join([parent_key, *names]).encode()).hexdigest()[:32]
        self.file = cache_dir / "reconcile-reuse" / f"{tag}.json"
        self.parent_key, self.names = parent_key, list(names)

    def candidate(self, reconciler: str, digest: str, keys: Sequence[str]) -> tuple[str, list[int]] | None:
        """The kept layer's key and the indices of the members changed since (each a
        bystander of it), when it was made of the same analysis; otherwise None."""
        try:
            document = json.loads(self.file.read_text())
            if (document["format"], document["parent"], document["reconciler"], document["analysis"]) != (
                    REUSE_FORMAT, self.parent_key, reconciler, digest):
                return None
            members = [(str(name), str(key), bool(bystander)) for name, key, bystander in document["members"]]
            key = str(document["key"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if [name for name, _, _ in members] != self.names or len(keys) != len(members):
            return None
        changed = [i for i, (member, now) in enumerate(zip(members, keys, strict=True)) if member[1] != now]
        if not changed or not all(members[i][2] for i in changed):
            return None
        return key, changed

    def save(self, reconciler: str, digest: str, key: str, members: Sequence[tuple[str, str, bool]]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        document = {"format": REUSE_FORMAT, "parent": self.parent_key, "reconciler": reconciler,
                    "analysis": digest, "key": key, "members": [list(m) for m in members]}
        write_atomic(self.file, (json.dumps(document, indent=1) + "\n").encode())

# --- Arch: pacman's local database ------------------------------------------------------------

PACMAN_LOCAL = "/var/lib/pacman/local/"


def pacman_package(folder: str) -> tuple[str, str] | None:
    """'/var/lib/pacman/local/NAME-PKGVER-PKGREL' -> (NAME, PKGVER-PKGREL)."""
    if not folder.startswith(PACMAN_LOCAL):
        return None
    entry = folder[len(PACMAN_LOCAL):]
    parts = entry.rsplit("-", 2)
    if "/" in entry or len(parts) != 3 or not all(parts):
        return None
    return parts[0], f"{parts[1]}-{parts[2]}"


def pacman_conflicts(layers: Sequence[tuple[str, Sequence[str]]]) -> list[Conflict]:
    """pacman keeps one folder per installed package (NAME-VERSION/ with desc, files,
    mtree), so the folders of different packages unite like any new files; one package
    at two versions shows as two folders, which is a conflict."""
    seen: dict[str, tuple[str, str]] = {}  # name -> (version, module)
    out: list[Conflict] = []
    for module, folders in layers:
        for folder in folders:
            parsed = pacman_package(folder)
            if parsed is None:
                continue
            name, version = parsed
            other = seen.setdefault(name, (version, module))
            if other[0] != version:
                out.append(Conflict(PACMAN_LOCAL + name, (other[1], module),
                                    f"package {name} at two versions: {other[0]} vs {version}"))
    return out


# --- effects ----------------------------------------------------------------------------------


def apply_plan(
    runner: Runner, storage: cmd.Storage, container: str, plan: ReconcilePlan,
    env: Mapping[str, str] | None = None,
) -> float:
    """Write the plan's files into the working container, run its commands, delete its
    paths: one `buildah run` (chroot isolation) of one script, in that order. The files come
    in as a tar on the script's standard input, which tar unpacks inside the container
    (owners, modes as planned), so every path resolves in the image's root, never the
    host's, and nothing is mounted. Returns the seconds it took; the caller commits."""
    started = time.monotonic()
    commands = [shlex.join(argv) for argv in plan.commands]
    if plan.deletes:
        commands.append(shlex.join(["rm", "-rf", "--", *plan.deletes]))
    if not (plan.writes or commands):
        return time.monotonic() - started
    unpack = ["tar -x -p --numeric-owner -f - -C /"] if plan.writes else []
    # set -x: on failure the log's tail names the command; the commands read nothing.
    script = "\n".join(["set -ex", *unpack, "exec </dev/null", *commands])
    runner.run(cmd.run_in(storage, container, ["/bin/sh", "-c", script], {**cmd.APT_ENV, **(env or {})}),
               input=tar_of(plan.writes))
    return time.monotonic() - started


def tar_of(writes: Sequence[FileWrite]) -> bytes:
    """The files as a tar, paths relative to /, owners and modes as planned; b"" for none."""
    if not writes:
        return b""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for write in writes:
            info = tarfile.TarInfo(write.path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(write.content), write.mode, write.uid, write.gid
            tar.addfile(info, io.BytesIO(write.content))
    return buffer.getvalue()
