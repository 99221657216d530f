"""Restack layering against real buildah: the same recipe built restacked and linearly
gives the same system; a swapped module rebuilds that module alone; modules that
collide are found and built on the stack instead."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECIPES, ROOT, Containers, copy_tree

pytestmark = pytest.mark.integration

RESTACK = RECIPES / "restack-ci.toml"
LINEAR = RECIPES / "restack-ci-linear.toml"
LEAVES = ["ssh", "management-api", "tmux-workspace", "latex", "agents", "ai-credentials"]

# Paths where a restacked and a linear build of the same modules may differ, and why:
# logs (appended in another order), caches regenerated with build-time inodes or times,
# the reconcile layer's own leftovers, and files holding random or time-based values.
ALLOWED = [
    r"/var/log/.*",
    r"/var/cache/debconf/.*",  # same records, another order (checked below by name)
    r"/var/cache/man/.*", r"/var/cache/ldconfig/.*", r"/var/cache/fontconfig/.*",
    r"/etc/ld\.so\.cache",  # regenerated: same libraries, another byte order (checked below)
    r"/var/lib/dpkg/triggers/.*", r"/var/lib/dpkg/status-old", r"/var/lib/dpkg/diversions-old",
    r"/var/lib/dpkg/statoverride-old", r"/etc/(passwd|group|shadow|gshadow|subuid|subgid)-",
    r"/var/lib/systemd/.*", r"/etc/machine-id", r"/var/lib/dbus/machine-id",
    r"/var/lib/texmf/.*", r"/usr/share/texmf/web2c/.*", r"/var/lib/tex-common/.*",
    r"/etc/texmf/.*", r"/usr/share/texlive/texmf-dist/ls-R", r"/var/lib/ucf/.*-old",
    r"/var/lib/ucf/(hashfile|registry)\.[0-9]+",  # ucf's rotated backups: one per ucf run
    r"/etc/(hostname|hosts|resolv\.conf)",  # podman run writes these for each container
    r"/var/lib/apt/extended_states",  # checked below by package
]


def tree(box: Containers, image: str) -> dict[str, str]:
    """path -> 'type:content digest' of every entry of an image's file system."""
    script = (
        "cd / && find . -xdev \\( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \\) "
        "-prune -o -printf '%y %p %l\\n' | sort"
    )
    listing = box.podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script).stdout
    sums = box.podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                      "cd / && find . -xdev \\( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run "
                      "-o -path ./tmp \\) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum").stdout
    digest = {line[66:].lstrip(".") or "/": line[:64] for line in sums.splitlines()}
    out = {}
    for line in listing.splitlines():
        kind, rest = line.split(" ", 1)
        path, _, target = rest.partition(" ")
        path = path.lstrip(".") or "/"
        out[path] = f"{kind}:{digest.get(path, target)}"
    return out


def sh(box: Containers, image: str, script: str) -> str:
    return box.podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script).stdout


def packages(box: Containers, image: str) -> dict[str, str]:
    out = sh(box, image, "dpkg-query -W -f '${Package}:${Architecture} ${Version} ${Status}\\n'")
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def both(containers: Containers) -> tuple[dict[str, Any], dict[str, Any]]:
    return containers.build_once(RESTACK), containers.build_once(LINEAR)


def test_plan_says_how_each_module_is_built(containers: Containers) -> None:
    out = containers.composer("plan", "--offline", str(RESTACK)).stdout
    assert re.search(r"supervisord .* linear: others build on it \(ssh, management-api, tmux-workspace\)", out)
    for leaf in LEAVES:
        assert re.search(rf"{leaf} .* restacked: no module builds on it: on supervisord, stacked", out), leaf
    doc = json.loads(containers.composer("plan", "--offline", "--json", str(RESTACK)).stdout)
    assert doc["layering"] == "restack" and doc["reconcile"]["members"] == LEAVES
    parents = {row["module"]: row["parent"] for row in doc["layers"]}
    keys = {row["module"]: row["key"] for row in doc["layers"]}
    assert {parents[m] for m in LEAVES} == {keys["supervisord"]}


def test_restacked_image_is_the_linear_system(containers: Containers, both: tuple[dict, dict]) -> None:
    restacked, linear = (b["image"] for b in both)
    kinds = {layer["module"]: layer["kind"] for layer in both[0]["layers"]}
    assert kinds["reconcile"] == "reconcile"
    a, b = tree(containers, restacked), tree(containers, linear)
    differ = sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))
    unexplained = [p for p in differ if not any(re.fullmatch(rx, p) for rx in ALLOWED)]
    assert unexplained == [], unexplained[:20]
    assert len(a) > 5000 and abs(len(a) - len(b)) <= len(differ)

    assert packages(containers, restacked) == packages(containers, linear)
    for image in (restacked, linear):
        assert sh(containers, image, "dpkg --audit && apt-get check -q >/dev/null && echo clean").strip() == "clean"
    users = "getent passwd | cut -d: -f1,3,4,6,7 | sort; getent group | cut -d: -f1,3,4 | sort"
    assert sh(containers, restacked, users) == sh(containers, linear, users)
    libs = "ldconfig -p | sed 1d | sort"
    assert sh(containers, restacked, libs) == sh(containers, linear, libs)
    # Every module's tools run in the restacked image.
    # Host keys where the ssh module's sshd_config looks for them (its volume, filled by hook 20).
    tools = ("mkdir -p /run/sshd /tmp/k/etc/ssh && ssh-keygen -A -f /tmp/k >/dev/null"
             " && cp /tmp/k/etc/ssh/ssh_host_* /etc/ssh/host-keys/ && /usr/sbin/sshd -t && tmux -V && node --version"
             " && pdflatex --version | head -n 1 && composer-agents count && supervisord --version")
    out = sh(containers, restacked, tools + " || echo FAILED")
    assert "FAILED" not in out and "tmux" in out and "pdfTeX" in out
    # apt works on the merged package database: a new package installs.
    out = sh(containers, restacked, "apt-get update -qq >/dev/null && apt-get install -y -qq cowsay >/dev/null"
                                    " && /usr/games/cowsay moo")
    assert "moo" in out


def test_swapping_a_middle_module_rebuilds_it_alone(containers: Containers, both: tuple[dict, dict],
                                                    tmp_path: Path) -> None:
    team = tmp_path / "team.toml"
    team.write_text(f'extends = "{RESTACK}"\nname = "composer-restack-team"\n'
                    'replace = {{ "tmux-workspace" = "jq" }}\n'.replace("{{", "{").replace("}}", "}"))
    out = tmp_path / "out"
    containers.composer("--modules-dir", str(RECIPES / "layers"), "--modules-dir", str(ROOT / "layers"),
                        "build", str(team), "--no-archive", "-o", str(out), "--report", str(out / "r.json"))
    report = json.loads((out / "r.json").read_text())
    built = sorted(layer["module"] for layer in report["layers"] if layer["cache"] == "miss")
    assert built == ["finalize", "jq", "reconcile"]


def write_module(root: Path, name: str, text: str) -> None:
    folder = root / "layers" / name
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "clash").write_text(text)
    (folder / "module.toml").write_text(
        f'name = "{name}"\nversion = "1"\n[[files]]\nsrc = "files/clash"\ndest = "/etc/composer-clash"\n'
        'mode = "0644"\n')


def test_colliding_modules_are_built_on_the_stack(containers: Containers, tmp_path: Path) -> None:
    root = copy_tree(RECIPES, tmp_path / "recipes", ["restack-ci*.toml"])
    write_module(root, "clash-a", "from a\n")
    write_module(root, "clash-b", "from b\n")
    write_module(root, "calm", "calm\n")
    (root / "layers" / "calm" / "module.toml").write_text(
        'name = "calm"\nversion = "1"\n[[files]]\nsrc = "files/clash"\ndest = "/etc/composer-calm"\n')
    recipe = root / "clash.toml"
    recipe.write_text('name = "composer-clash"\nlayering = "restack"\n[base]\nfrom = "debootstrap:trixie"\n'
                      'components = ["main"]\n'
                      + "".join(f'[[layers]]\nmodule = "{m}"\n' for m in ("clash-a", "calm", "clash-b")))
    report = containers.build(recipe, "--no-archive")
    image = report["image"]
    # The image is what a linear build gives: the later module's file wins.
    assert sh(containers, image, "cat /etc/composer-clash /etc/composer-calm") == "from b\ncalm\n"
    order = [layer["module"] for layer in report["layers"]]
    assert order.index("reconcile") < order.index("clash-b")
    # The next plan knows without building: clash-b is linear, with the reason.
    out = containers.composer("plan", str(recipe)).stdout
    assert re.search(r"clash-b .* cached\s+linear: .*clash-a, clash-b: /etc/composer-clash", out), out
    again = containers.build(recipe, "--no-archive")
    assert {layer["cache"] for layer in again["layers"]} == {"hit"}
