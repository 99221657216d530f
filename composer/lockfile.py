"""composer.lock: what every module layer of a recipe installs, pinned (docs/lock.md).

RECIPE.lock sits beside RECIPE.toml. It is TOML written by hand here (one package a line,
sorted, so a diff shows exactly what moved) and read back with tomllib. Reading and
writing are pure; `composer lock` (cli) fills it from built images (composer.inventory).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from composer.commands import Storage
from composer.errors import ComposerError
from composer.inventory import Component, Ecosystem, image_inventory

if TYPE_CHECKING:
    from composer.model import Plan
    from composer.progress import Progress
    from composer.runner import Runner

LOCK_VERSION = 1
KINDS = ("deb", "pip", "npm", "cargo")


@dataclass(frozen=True, order=True)
class Package:
    """One locked package. name: deb `name:arch`; pip `name@site-packages`, npm
    `name@node_modules folder` (one name may be installed twice in two places); cargo the crate."""

    kind: str  # one of KINDS
    name: str
    version: str
    digest: str = ""  # deb: sha256 of the .deb, when known

    @property
    def ident(self) -> tuple[str, str]:
        return self.kind, self.name


def package(c: Component) -> Package:
    """A component of composer.inventory as the lock names it."""
    if c.ecosystem is Ecosystem.DEB:
        return Package("deb", f"{c.name}:{c.arch}", c.version)
    if c.ecosystem is Ecosystem.PYPI:
        return Package("pip", f"{c.name}@{c.location}", c.version)
    if c.ecosystem is Ecosystem.NPM:
        return Package("npm", f"{c.name}@{c.location}", c.version)
    return Package("cargo", c.name, c.version)


def added(parent: Iterable[Component], child: Iterable[Component]) -> list[Package]:
    """What a layer installs: packages of child that its parent lacks or has at another version."""
    before = {p.ident: p for p in map(package, parent)}
    return sorted(p for p in map(package, child) if (q := before.get(p.ident)) is None or q.version != p.version)


def parse_packages_index(text: str) -> dict[tuple[str, str, str], str]:
    """(name, arch, version) -> SHA256 of the .deb, from an apt Packages index."""
    found = {}
    for paragraph in re.split(r"\n\s*\n", text):
        fields = {}
        for line in paragraph.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:  # not a continuation line
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
        if fields.get("Package") and fields.get("SHA256"):
            found[(fields["Package"], fields.get("Architecture", ""), fields.get("Version", ""))] = fields["SHA256"]
    return found


def with_deb_digests(packages: Iterable[Package], index: Mapping[tuple[str, str, str], str]) -> list[Package]:
    """Debian packages with the .deb sha256 the Packages index gives for that exact version."""
    out = []
    for p in packages:
        if p.kind == "deb" and not p.digest:
            name, _, arch = p.name.partition(":")
            digest = index.get((name, arch, p.version), "")
            p = Package(p.kind, p.name, p.version, f"sha256:{digest}" if digest else "")
        out.append(p)
    return out


@dataclass(frozen=True)
class Entry:
    """One module's lock: inputs is the digest of what the module is made of (its key
    document without parent and lock), so `lock --check` sees a changed option or file."""

    module: str
    inputs: str
    packages: tuple[Package, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", tuple(sorted(self.packages)))  # one entry, one order

    def key_part(self) -> dict[str, str]:
        """What the module's cache key holds of the lock: "kind name" -> "version digest"."""
        return {f"{p.kind} {p.name}": f"{p.version} {p.digest}".strip() for p in self.packages}

    def versions(self, kind: str) -> dict[str, str]:
        return {p.name: p.version for p in self.packages if p.kind == kind}


@dataclass(frozen=True)
class Lock:
    path: Path
    base: tuple[tuple[str, str], ...] = ()
    modules: Mapping[str, Entry] = field(default_factory=dict, hash=False)
    base_packages: tuple[Package, ...] = ()  # what the base image holds (not in any key: see docs/lock.md)

    def entry(self, module: str) -> Entry | None:
        return self.modules.get(module)


def lock_path(recipe_path: Path) -> Path:
    """recipes/turboflow.toml -> recipes/turboflow.lock"""
    return recipe_path.with_suffix(".lock")


def load_beside(recipe_path: Path) -> Lock | None:
    path = lock_path(recipe_path)
    return load(path) if path.is_file() else None


def load(path: Path) -> Lock:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ComposerError(f"{path}: not a readable lock file: {e}",
                            hint="write it again: composer lock RECIPE") from None
    if data.get("version") != LOCK_VERSION:
        raise ComposerError(f"{path}: version: {data.get('version')!r} is not a lock format this composer reads "
                            f"({LOCK_VERSION})", hint="write it again: composer lock RECIPE")
    base = {k: v for k, v in data.get("base", {}).items() if k not in KINDS}
    base_packages = tuple(sorted(packages_of(path, "base", data.get("base", {}))))
    modules = {}
    for name, table in (data.get("modules") or {}).items():
        if not isinstance(table, dict) or not isinstance(table.get("inputs"), str):
            raise ComposerError(f"{path}: modules.{name}.inputs: missing (a string)")
        modules[name] = Entry(name, table["inputs"], tuple(packages_of(path, f"modules.{name}", table)))
    return Lock(path, tuple(sorted((str(k), str(v)) for k, v in base.items())), modules, base_packages)


def packages_of(path: Path, where: str, table: Mapping[str, object]) -> list[Package]:
    packages = []
    for kind in KINDS:
        items = table.get(kind, [])
        for i, line in enumerate(items if isinstance(items, list) else [items]):
            parts = str(line).split()
            if len(parts) not in (2, 3):
                raise ComposerError(f"{path}: {where}.{kind}[{i}]: {line!r} is not 'name version [digest]'")
            packages.append(Package(kind, parts[0], parts[1], parts[2] if len(parts) == 3 else ""))
    return packages


def package_lines(packages: Iterable[Package]) -> list[str]:
    lines = []
    for kind in KINDS:
        items = sorted(p for p in packages if p.kind == kind)
        if items:
            lines.append(f"{kind} = [")
            lines += [f"  {quote(' '.join(x for x in (p.name, p.version, p.digest) if x))}," for p in items]
            lines.append("]")
    return lines


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(lock: Lock, recipe_name: str) -> str:
    """The lock as text: stable (sorted everywhere) so that an unchanged lock is unchanged bytes."""
    lines = [
        f"# composer.lock of {recipe_name}: written by `composer lock`, read by `composer build`.",
        "# One package a line: name version [digest]. Format: docs/lock.md",
        f"version = {LOCK_VERSION}",
        "",
        "[base]",
        *(f"{k} = {quote(v)}" for k, v in lock.base),
        *package_lines(lock.base_packages),
    ]
    for name in sorted(lock.modules):
        entry = lock.modules[name]
        lines += ["", f"[modules.{quote(name)}]", f"inputs = {quote(entry.inputs)}", *package_lines(entry.packages)]
    return "\n".join(lines) + "\n"


def write(lock: Lock, recipe_name: str) -> None:
    tmp = lock.path.with_name(f".{lock.path.name}.tmp")
    tmp.write_text(render(lock, recipe_name))
    tmp.replace(lock.path)


def changes(module: str, old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> list[str]:
    """`plan --why` lines for a module's lock part (Entry.key_part) that moved:
    'python: lock numpy 2.1.3 -> 2.2.0' (without the 'python: ' when module is '')."""
    head = f"{module}: lock" if module else "lock"
    if old is None or new is None:
        return [f"{head} entry {'added' if old is None else 'removed'}"] if old != new else []
    out = []
    for ident in sorted(set(old) | set(new)):
        name = ident.split(" ", 1)[1]
        a, b = old.get(ident, "").split(" ")[0], new.get(ident, "").split(" ")[0]
        if ident not in old:
            out.append(f"{head} {name} {b} added")
        elif ident not in new:
            out.append(f"{head} {name} {a} removed")
        elif a != b:
            out.append(f"{head} {name} {a} -> {b}")
        elif old[ident] != new[ident]:
            out.append(f"{head} {name} {a} digest changed")
    return out


def drift(module: str, entry: Entry, installed: Iterable[Package]) -> str:
    """'' when what a module's layer installed is what its lock entry records, else the
    one line that says the first difference (a locked build refuses that layer; its hint
    is update_hint)."""
    locked = {p.ident: p for p in entry.packages}
    got = {p.ident: p for p in installed}
    for ident, p in sorted(locked.items()):
        q = got.get(ident)
        if q is None or q.version != p.version:
            offer = f"the build installed {q.version}" if q else "the build did not install it"
            return f"module {module}: {p.kind} package {p.name}: locked {p.version}, {offer}"
    for ident, q in sorted(got.items()):
        if ident not in locked:
            return f"module {module}: {q.kind} package {q.name} {q.version} is not in the lock"
    return ""


def stale(lock: Lock | None, inputs: Mapping[str, str], base: Iterable[tuple[str, str]]) -> list[str]:
    """Why lock no longer fits the recipe (`composer lock --check`): one line each."""
    if lock is None:
        return ["no lock file"]
    out = []
    locked_base = {k: v for k, v in lock.base if not k.startswith("release_")}
    if locked_base != dict(base):
        out.append(f"{lock.path}: base: the recipe's base changed")
    for name in sorted(set(inputs) | set(lock.modules)):
        entry = lock.modules.get(name)
        if entry is None:
            out.append(f"{lock.path}: modules.{name}: not in the lock (a module the recipe added)")
        elif name not in inputs:
            out.append(f"{lock.path}: modules.{name}: the recipe has no such module any more")
        elif entry.inputs != inputs[name]:
            out.append(f"{lock.path}: modules.{name}.inputs: the module, its options or its files changed")
    return out


def require_fresh(plan: Plan, conflicts: Mapping[str, str], hint: str) -> None:
    """Raise when the plan's recipe has no lock or a stale one: one line per problem."""
    from composer.errors import ComposerErrors
    from composer.planner import module_inputs, relock

    inputs = {s.module.name: module_inputs(s.key_document) for s in relock(plan, None, conflicts).steps}
    path = lock_path(plan.recipe.path)
    problems = stale(plan.lock, inputs, base_fields(plan.base.key_document, Path("/nonexistent")))
    errors = [ComposerError(p if p != "no lock file" else f"{path}: missing", hint=hint) for p in problems]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ComposerErrors(errors)


def update_hint(module: str) -> str:
    return f"composer lock --update {module}"


# Mounted into every step of a locked module (under the build mounts' folder, which the
# step's clean-up removes: nothing of it is committed).
PIN_MOUNT = "/run/composer/lock"


def pin_files(entry: Entry) -> dict[str, str]:
    """The files that make a module's installs take the locked versions: apt preferences
    (Pin-Priority 1001: that version even over a newer one, even a downgrade) through an
    APT_CONFIG file, and pip constraints. npm and cargo have no such file: their installs
    are checked after the step (drift)."""
    prefs = []
    for p in sorted(x for x in entry.packages if x.kind == "deb"):
        prefs.append(f"Package: {p.name.partition(':')[0]}\nPin: version {p.version}\nPin-Priority: 1001\n")
    pins: dict[str, set[str]] = {}
    for p in entry.packages:
        if p.kind == "pip":
            pins.setdefault(p.name.split("@", 1)[0], set()).add(p.version)
    # One name at two versions in two venvs cannot be one constraint: the check catches it.
    constraints = [f"{name}=={next(iter(v))}" for name, v in sorted(pins.items()) if len(v) == 1]
    return {
        # The main preferences file only: the image's own preferences.d pins still count.
        "apt.conf": f'Dir::Etc::Preferences "{PIN_MOUNT}/preferences";\n',
        "preferences": "\n".join(prefs),
        "pip-constraints.txt": "".join(f"{c}\n" for c in constraints),
    }


def pin_env() -> dict[str, str]:
    return {"APT_CONFIG": f"{PIN_MOUNT}/apt.conf", "PIP_CONSTRAINT": f"{PIN_MOUNT}/pip-constraints.txt"}


# Recording: what `composer lock` does once the recipe is built (composer.cli lock).


def deb_index(lists: Path) -> dict[tuple[str, str, str], str]:
    """Every Packages index apt fetched into the build's host package cache."""
    index: dict[tuple[str, str, str], str] = {}
    for path in sorted(lists.glob("*_Packages")) if lists.is_dir() else ():
        index.update(parse_packages_index(path.read_text(errors="replace")))
    return index


def release_of(lists: Path, suite: str) -> tuple[tuple[str, str], ...]:
    """The base's mirror state: the Date and sha256 of the suite's (In)Release apt used."""
    for name in (f"_dists_{suite}_InRelease", f"_dists_{suite}_Release"):
        found = sorted(lists.glob(f"*{name}")) if lists.is_dir() else []
        if found:
            data = found[0].read_bytes()
            date = next((line.split(":", 1)[1].strip() for line in data.decode(errors="replace").splitlines()
                         if line.startswith("Date:")), "")
            return (("release_date", date), ("release_sha256", hashlib.sha256(data).hexdigest()))
    return ()


def base_fields(base_document: Mapping[str, object], lists: Path) -> tuple[tuple[str, str], ...]:
    """[base] of the lock: the base's key document (source, mirror, digest...) and, for a
    debootstrap base, the Release apt read from that mirror."""
    fields = {k: json_text(v) for k, v in base_document.items() if k not in ("format", "kind")}
    source = str(base_document.get("source", ""))
    if source.startswith("debootstrap:"):
        fields.update(release_of(lists, source.split(":", 1)[1]))
    return tuple(sorted(fields.items()))


def json_text(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def lock_recipe(plan: Plan, storage: Storage, cache_dir: Path, runner: Runner, progress: Progress,
                update: Iterable[str] = (), check: bool = False) -> list[str]:
    """`composer lock`: check the lock, or build the plan and record what its module layers
    install. Returns the lines to print; raises ComposerError(s) when the lock is stale (check)."""
    from composer.builder import BuildSettings, build, default_host_ca, default_jobs, known_conflicts
    from composer.planner import module_inputs, relock

    conflicts = known_conflicts(cache_dir)
    unlocked = relock(plan, None, conflicts)
    inputs = {s.module.name: module_inputs(s.key_document) for s in unlocked.steps}
    path = lock_path(plan.recipe.path)
    existing = plan.lock
    if check:
        require_fresh(plan, conflicts, f"composer lock {plan.recipe.path}")
        return [f"{path}: up to date ({len(inputs)} modules)"]
    wanted = set(update)
    unknown = sorted(wanted - set(inputs))
    if unknown:
        raise ComposerError(f"--update: {', '.join(unknown)}: not a module of {plan.recipe.path}",
                            hint=f"its modules: {', '.join(inputs)}")
    keep: dict[str, Entry] = {}
    if existing is not None and wanted:
        keep = {n: e for n, e in existing.modules.items() if n in inputs and n not in wanted}
    # Entries kept stay locked (their steps are pinned and checked); the others build unlocked.
    to_build = relock(plan, Lock(path, existing.base, keep, existing.base_packages) if keep and existing else None,
                      conflicts)
    settings = BuildSettings(storage=storage, cache_dir=cache_dir, host_ca=default_host_ca(), archive=False,
                             jobs=default_jobs())
    ctx = build(to_build, settings, runner, progress)
    built = ctx.plan
    lists = cache_dir / "packages" / built.base.key[:16] / "var_lib_apt_lists"
    archives = cache_dir / "packages" / built.base.key[:16] / "var_cache_apt_archives"
    index = deb_index(lists)
    def inventory_of(key: str) -> list[Component]:
        return image_inventory(runner, storage, key, cache_dir)  # read once per key, kept in the cache

    entries = dict(keep)
    for step in built.steps:
        if step.module.name in keep:
            continue
        with progress.step(f"lock {step.module.name}") as report:
            packages = added(inventory_of(step.parent_key), inventory_of(step.key))
            packages = with_archive_digests(with_deb_digests(packages, index), archives)
            entries[step.module.name] = Entry(step.module.name, inputs[step.module.name], tuple(packages))
            report(f"{len(packages)} packages")
    base_packages = with_deb_digests(map(package, inventory_of(built.base.key)), index)
    new = Lock(path, base_fields(built.base.key_document, lists), entries, tuple(base_packages))
    write(new, plan.recipe.path.name)
    lines = []
    for name in inputs:
        old_entry = existing.entry(name) if existing else None
        lines += changes(name, old_entry.key_part() if old_entry else None, entries[name].key_part())
    return [*lines, f"wrote {path} ({len(entries)} modules, {sum(len(e.packages) for e in entries.values())} "
                    "packages)"]


def with_archive_digests(packages: Iterable[Package], archives: Path) -> list[Package]:
    """A .deb the Packages index did not name (an apt source no longer listed): the sha256
    of the file apt downloaded, when it is still in the host archive cache."""
    out = []
    for p in packages:
        if p.kind == "deb" and not p.digest:
            name, _, arch = p.name.partition(":")
            deb = archives / f"{name}_{p.version.replace(':', '%3a')}_{arch}.deb"
            if deb.is_file():
                p = Package(p.kind, p.name, p.version, "sha256:" + hashlib.sha256(deb.read_bytes()).hexdigest())
        out.append(p)
    return out
