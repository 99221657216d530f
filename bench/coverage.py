#!/usr/bin/env python3
"""What a built image holds, by each ecosystem's own tool, against what its SBOM and its
lock list: per ecosystem, in the image / in the SBOM (same version) / in the lock (same
version). The tools are asked inside the image, not composer's inventory script:

    dpkg-query -W                      Debian packages (status ii)
    pip list (every venv with a bin/pip under /opt and /usr/local, and the system's)
    npm ls -g --all --json             global npm packages, dependencies included
    cargo install --list               cargo-installed crates (for every user with ~/.cargo)

    python3 bench/coverage.py IMAGE --sbom build/NAME-TAG.cdx.json [--lock RECIPE.lock] [--json F]

Run as root with the storage the image is in (podman's default, or CONTAINERS_STORAGE_CONF).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

SCRIPT = r"""
echo '### deb'
dpkg-query -W -f '${Package}\t${Version}\t${db:Status-Abbrev}\n' 2>/dev/null | awk -F'\t' '$3 ~ /^ii/ {print $1"\t"$2}'
echo '### pypi'
for pip in /opt/*/bin/pip /usr/local/*/bin/pip /usr/bin/pip3; do
    [ -x "$pip" ] && "$pip" list --format freeze 2>/dev/null | sed 's/==/\t/'
done
echo '### npmjson'
command -v npm >/dev/null 2>&1 && npm ls -g --all --json 2>/dev/null | tr -d '\n'
echo
echo '### cargo'
for home in /root /home/*; do
    [ -x "$home/.cargo/bin/cargo" ] || continue
    HOME=$home "$home/.cargo/bin/cargo" install --list 2>/dev/null | sed -n 's/^\([^ ]*\) v\([^:]*\):$/\1\t\2/p'
done
command -v cargo >/dev/null 2>&1 && cargo install --list 2>/dev/null | sed -n 's/^\([^ ]*\) v\([^:]*\):$/\1\t\2/p'
true
"""


def pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def in_image(image: str) -> dict[str, set[tuple[str, str]]]:
    out = subprocess.run(["podman", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
                          SCRIPT], capture_output=True, text=True, check=True).stdout
    found: dict[str, set[tuple[str, str]]] = {"deb": set(), "pypi": set(), "npm": set(), "cargo": set()}
    section = ""
    for line in out.splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
        elif section == "npmjson" and line.strip():
            walk(json.loads(line).get("dependencies", {}), found["npm"])
        elif "\t" in line and section:
            name, version = line.split("\t", 1)
            found[section].add((pep503(name) if section == "pypi" else name, version.strip()))
    return found


def walk(dependencies: dict[str, Any], into: set[tuple[str, str]]) -> None:
    for name, info in dependencies.items():
        if "version" in info:
            into.add((name, info["version"]))
        walk(info.get("dependencies", {}), into)


def in_sbom(path: Path) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {"deb": set(), "pypi": set(), "npm": set(), "cargo": set()}
    for c in json.loads(path.read_text()).get("components", []):
        kind = c.get("purl", "").removeprefix("pkg:").split("/", 1)[0]
        if kind in out:
            out[kind].add((pep503(c["name"]) if kind == "pypi" else c["name"], c["version"]))
    return out


def in_lock(path: Path) -> dict[str, set[tuple[str, str]]]:
    """Every package line of every entry (the base's too): name without :arch or @folder."""
    document = tomllib.loads(path.read_text())
    out: dict[str, set[tuple[str, str]]] = {"deb": set(), "pypi": set(), "npm": set(), "cargo": set()}
    tables = [document.get("base", {}), *document.get("modules", {}).values()]
    for table in tables:
        for kind, lines in table.items():
            key = {"deb": "deb", "pip": "pypi", "npm": "npm", "cargo": "cargo"}.get(kind)
            if key is None or not isinstance(lines, list):
                continue
            for line in lines:
                name, version = line.split(" ")[:2]
                name = name.split(":")[0] if key == "deb" else name.split("@")[0] if not name.startswith("@") \
                    else "@" + name[1:].split("@")[0]
                out[key].add((pep503(name) if key == "pypi" else name, version))
    return out


def share(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f} %)" if total else "none to list"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("--sbom", type=Path, required=True, help="the build's CycloneDX document")
    parser.add_argument("--lock", type=Path, help="the recipe's lock")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    image, sbom = in_image(args.image), in_sbom(args.sbom)
    lock = in_lock(args.lock) if args.lock else None
    rows: dict[str, Any] = {}
    print("| ecosystem | in the image | in the SBOM, same version | in the lock, same version |")
    print("|---|---|---|---|")
    for kind, present in image.items():
        row = {"image": len(present), "sbom": len(present & sbom[kind]),
               "sbom_missing": sorted(present - sbom[kind])[:10]}
        if lock is not None:
            row |= {"lock": len(present & lock[kind]), "lock_missing": sorted(present - lock[kind])[:10]}
        rows[kind] = row
        locked = share(row["lock"], len(present)) if lock is not None else "-"
        print(f"| {kind} | {len(present)} | {share(row['sbom'], len(present))} | {locked} |")
    for kind, row in rows.items():
        for what in ("sbom_missing", "lock_missing"):
            if row.get(what):
                print(f"{kind} not in the {what.split('_')[0]} (first 10): {row[what]}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"image": args.image, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
