"""What is installed in an image, by ecosystem: Debian packages (dpkg's database), Python
distributions (every *.dist-info of every site-packages: the system's and each venv's),
npm packages (every package.json under a global node_modules, dependencies included) and
cargo-installed crates (.crates.toml). One shell script reads it all inside the image; the
parsers here are pure. The SBOM (emit/sbom.py) and `composer why` are built on it."""

from __future__ import annotations

import json
import re
import secrets
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from composer import commands as cmd
from composer.errors import CommandError

if TYPE_CHECKING:
    from composer.runner import Runner


class Ecosystem(StrEnum):
    DEB = "deb"
    PYPI = "pypi"
    NPM = "npm"
    CARGO = "cargo"


@dataclass(frozen=True, order=True)
class Component:
    ecosystem: Ecosystem
    name: str
    version: str
    arch: str = ""  # Debian's architecture
    location: str = ""  # where it is installed (site-packages, node_modules), for the others
    depends: tuple[str, ...] = field(default=(), compare=False)  # Debian: package names it depends on

    @property
    def ident(self) -> tuple[str, str, str, str]:
        """What makes two entries the same component (the location counts: a venv's numpy is
        not the system's)."""
        return (str(self.ecosystem), self.name, self.version, self.location or self.arch)


SECTION = "### composer-inventory "
# Walks node_modules folders (the arguments), printing NAME<TAB>VERSION<TAB>FOLDER.
NPM_WALK = (
    "const fs=require('fs'),p=require('path');"
    "function walk(d){let es;try{es=fs.readdirSync(d,{withFileTypes:true})}catch(e){return}"
    "for(const e of es){if(!e.isDirectory())continue;const f=p.join(d,e.name);"
    "if(e.name.startsWith('@')){walk(f);continue}"
    "try{const j=JSON.parse(fs.readFileSync(p.join(f,'package.json'),'utf8'));"
    "if(j.name&&j.version)console.log(j.name+'\\t'+j.version+'\\t'+f)}catch(e){}"
    "walk(p.join(f,'node_modules'))}}"
    "for(const d of process.argv.slice(1))walk(d)"
)
# Run inside the image (/bin/sh, coreutils, find, grep, sed: what every Debian base has).
SCRIPT = f"""
NPM_WALK={shlex.quote(NPM_WALK)}
echo '{SECTION}deb'
fields='${{Package}}\\t${{Architecture}}\\t${{Version}}\\t${{db:Status-Abbrev}}\\t${{Pre-Depends}}, ${{Depends}}\\n'
dpkg-query -W -f "$fields" 2>/dev/null || true
echo '{SECTION}pypi'
for top in /usr /opt /home /root /srv; do
    [ -d "$top" ] && find "$top" -xdev -type d -name '*.dist-info' -path '*-packages/*' -prune -print 2>/dev/null
done
echo '{SECTION}npm'
# Global npm packages, dependencies included: node itself reads every package.json (one
# process; Debian's own node modules under /usr/share/nodejs are dpkg's, listed above).
if command -v node > /dev/null 2>&1; then
    node -e "$NPM_WALK" /usr/lib/node_modules /usr/local/lib/node_modules 2>/dev/null || true
fi
echo '{SECTION}cargo'
for f in /root/.cargo/.crates.toml /home/*/.cargo/.crates.toml /usr/local/cargo/.crates.toml; do
    [ -f "$f" ] && sed -n 's/^"\\([^ ]*\\) \\([^ ]*\\) .*/\\1\\t\\2/p' "$f"
done
true
"""

# What SCRIPT reads, for telling a layer that cannot change its output (unchanged_by): the
# package database and its configuration, the global node_modules folders, and by name the
# Python distributions, cargo's records and the programs it runs.
READ_FOLDERS = ("/var/lib/dpkg", "/etc/dpkg", "/usr/lib/node_modules", "/usr/local/lib/node_modules")
READ_NAMES = frozenset({".crates.toml", "node", "nodejs", "find", "sed", "dpkg-query", "sh", "dash", "bash"})
# Where SCRIPT reads nothing, and nothing it reads lies below: a deletion or an opaque folder
# there (a step's clean-up of caches and logs) cannot change what it lists.
UNREAD_FOLDERS = ("/tmp/", "/var/tmp/", "/var/cache/", "/var/log/", "/run/")


def unchanged_by(entries: Iterable[tuple[str, str, bool]], components: Iterable[Component]) -> str | None:
    """A path by which a layer (entries: path, kind, opaque) may change what SCRIPT lists in
    an image whose inventory is components, or None when it cannot: it deletes nothing and
    makes no folder opaque (but below UNREAD_FOLDERS), has nothing where SCRIPT reads (in
    READ_FOLDERS, a *.dist-info, a name in READ_NAMES), and no file or link at a folder above
    a listed component or a read folder (a file in place of a folder hides what it held)."""
    above: set[str] = set()
    for folder in (*READ_FOLDERS, *(c.location for c in components if c.location)):
        parts = folder.rstrip("/").split("/")
        above.update("/".join(parts[:i]) for i in range(2, len(parts) + 1))
    inside = tuple(f"{folder}/" for folder in READ_FOLDERS)
    for path, kind, opaque in entries:
        if (((kind == "whiteout" or opaque) and not path.startswith(UNREAD_FOLDERS))
                or path in READ_FOLDERS or path.startswith(inside)
                or ".dist-info" in path or path.rsplit("/", 1)[-1] in READ_NAMES
                or (kind != "dir" and path in above)):
            return path
    return None


DIST_INFO = re.compile(r"^(?P<name>[^/]+?)-(?P<version>[^-/]+)\.dist-info$")


def parse(text: str) -> list[Component]:
    """The script's output as components, sorted (stable output)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = sections.setdefault(line[len(SECTION):].strip(), [])
        elif current is not None and line.strip():
            current.append(line)
    out = [*parse_dpkg(sections.get("deb", [])), *parse_dist_infos(sections.get("pypi", [])),
           *parse_npm(sections.get("npm", [])), *parse_cargo(sections.get("cargo", []))]
    return sorted(set(out))


def parse_dpkg(lines: Iterable[str]) -> list[Component]:
    """`Package Arch Version Status Depends` lines; only installed packages (status ii)."""
    out = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 4 or not parts[3].startswith("ii"):
            continue
        depends = tuple(dict.fromkeys(
            alt.strip().split(" ")[0].split(":")[0]
            for group in (parts[4] if len(parts) > 4 else "").split(",")
            for alt in group.split("|") if alt.strip()))
        out.append(Component(Ecosystem.DEB, parts[0], parts[2], arch=parts[1], depends=depends))
    return out


def normalize_pypi(name: str) -> str:
    """PEP 503: what pip and PyPI compare names by."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_dist_infos(paths: Iterable[str]) -> list[Component]:
    out = []
    for path in paths:
        folder, _, leaf = path.rstrip("/").rpartition("/")
        match = DIST_INFO.match(leaf)
        if match:
            out.append(Component(Ecosystem.PYPI, normalize_pypi(match["name"]), match["version"], location=folder))
    return out


def parse_npm(lines: Iterable[str]) -> list[Component]:
    out = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3:
            out.append(Component(Ecosystem.NPM, parts[0], parts[1], location=parts[2]))
    return out


def parse_cargo(lines: Iterable[str]) -> list[Component]:
    return [Component(Ecosystem.CARGO, name, version) for name, _, version in
            (line.partition("\t") for line in lines) if version]


def to_json(components: Iterable[Component]) -> str:
    return json.dumps([[str(c.ecosystem), c.name, c.version, c.arch, c.location, list(c.depends)]
                       for c in components])


def from_json(text: str) -> list[Component]:
    return [Component(Ecosystem(e), n, v, a, loc, tuple(d)) for e, n, v, a, loc, d in json.loads(text)]


def stored_inventory(cache_dir: Path, key: str) -> Path:
    return cache_dir / "inventory" / f"{key}.json"


def image_inventory(runner: Runner, storage: cmd.Storage, key: str, cache_dir: Path) -> list[Component]:
    """What the cache image of key holds; read once per key (a stored layer never changes)
    and kept in the cache beside the key documents."""
    stored = stored_inventory(cache_dir, key)
    if stored.is_file():
        return from_json(stored.read_text())
    name = f"composer-inventory-{key[:12]}-{secrets.token_hex(4)}"
    runner.run(cmd.from_image(storage, cmd.cache_ref(key), name))
    try:
        text = runner.output(cmd.run_in(storage, name, ["/bin/sh", "-c", SCRIPT]))
    except CommandError as e:
        # An image without a shell (a scratch base with files copied in) has no package
        # database either: nothing to list. Any other failure is an error.
        if "/bin/sh" not in e.output or "no such file or directory" not in e.output.lower():
            raise
        text = ""
    finally:
        runner.run(cmd.buildah(storage, "rm", name))
    components = parse(text)
    remember(cache_dir, key, components)
    return components


def remember(cache_dir: Path, key: str, components: Iterable[Component]) -> None:
    """Keep what the cache image of key holds (read by image_inventory)."""
    from composer.emit.oci import write_atomic  # an effect: not loaded with this pure module

    stored = stored_inventory(cache_dir, key)
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stored, to_json(components).encode())
