"""Reconcile against real dpkg: modules built each on one parent P, stacked, reconciled,
and compared with the linear build of the same modules (P, then each module on the last).

P is composer's debootstrap trixie base (shared with the core tests in one session) plus
the messagebus account, pre-created as docs/restack.md recommends: without it dbus and
openssh-server's _ssh group both take gid 101 (test_conflicts shows the same collision
with two plain groups)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from composer import commands as cmd
from composer.model import Family
from composer.restack.reconcile import Analysis, analyse, apply_plan, reconcile_plan
from composer.runner import Runner
from tests.conftest import RECIPES, Containers

pytestmark = pytest.mark.integration

# Stack order: (packages, then a script). ssh pulls systemd, whose files set off dbus's
# trigger on /usr/share/dbus-1/system-services; nano and vim-tiny both register `editor`;
# ssh and users both add accounts.
MODULES: dict[str, tuple[list[str], str]] = {
    "ssh": (["openssh-server"], ""),
    "dbus": (["dbus"], ""),
    "users": ([], "useradd --create-home --shell /bin/bash --groups adm dev"),
    "tools": (["tmux", "jq"], ""),
    "nano": (["nano"], ""),
    "vim": (["vim-tiny"], ""),
}
PRE_CREATE = (
    ["groupadd", "--system", "messagebus"],
    ["useradd", "--system", "--gid", "messagebus", "--home-dir", "/nonexistent", "--no-create-home",
     "--shell", "/usr/sbin/nologin", "messagebus"],
)
BASE_RECIPE = """name = "reconcile-base"
tag = "test"
[base]
from = "debootstrap:trixie"
components = ["main"]
[[layers]]
module = "motd"
"""

# Paths where the reconciled image may differ from the linear one, and why. Everything
# else must be the same path with the same type, mode, owner and bytes.
ALLOWED = {
    # Random per build: each module generated its own.
    "/etc/ssh/ssh_host_ecdsa_key": "random host key",
    "/etc/ssh/ssh_host_ecdsa_key.pub": "random host key",
    "/etc/ssh/ssh_host_ed25519_key": "random host key",
    "/etc/ssh/ssh_host_ed25519_key.pub": "random host key",
    "/etc/ssh/ssh_host_rsa_key": "random host key",
    "/etc/ssh/ssh_host_rsa_key.pub": "random host key",
    "/etc/machine-id": "random machine id",
    "/var/lib/dbus/machine-id": "random machine id",
    # Backups of the state before the last change: the last change differs.
    "/var/lib/dpkg/status-old": "dpkg's backup of the status before its last run",
    "/etc/passwd-": "shadow's backup before the last account change",
    "/etc/group-": "shadow's backup before the last account change",
    "/etc/shadow-": "shadow's backup before the last account change",
    "/etc/gshadow-": "shadow's backup before the last account change",
}


@dataclass(frozen=True)
class World:
    parent: str  # image P
    modules: dict[str, str]  # name -> image (built on P)
    linear: str  # image: P + every module in turn
    stacked: str  # image: P + top layers copied in order + the reconcile layer
    analysis: Analysis
    reconcile_seconds: float
    storage: cmd.Storage
    lists: Path  # apt lists and archives, host folders mounted at build time
    seconds: dict[str, float]


def storage_of(containers: Containers) -> cmd.Storage:
    return cmd.Storage(str(containers.root / "root"), str(containers.root / "run"), "overlay")


def apt_volumes(lists: Path) -> list[str]:
    return ["--volume", f"{lists / 'lists'}:/var/lib/apt/lists",
            "--volume", f"{lists / 'archives'}:/var/cache/apt/archives"]


def run_in(containers: Containers, ctr: str, argv: list[str], apt: Path | None = None,
           timeout: float = 600) -> str:
    env = [f"--env={k}={v}" for k, v in cmd.APT_ENV.items()]
    mounts = apt_volumes(apt) if apt else []
    return containers.buildah("run", "--isolation", "chroot", *env, *mounts, ctr, "--", *argv,
                              timeout=timeout).stdout


def install(containers: Containers, ctr: str, module: tuple[list[str], str], lists: Path) -> None:
    packages, script = module
    if packages:
        run_in(containers, ctr, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], lists)
    if script:
        run_in(containers, ctr, ["sh", "-c", script])
    # What composer does after every module: no logs, caches or -old files in a layer.
    run_in(containers, ctr, cmd.clean_step(Family.DEBIAN))


def new_container(containers: Containers, image: str) -> str:
    return containers.buildah("from", "--quiet", "--pull=never", image).stdout.strip()


def commit(containers: Containers, ctr: str, ref: str) -> str:
    containers.buildah("commit", "--quiet", "--rm", ctr, ref)
    return ref


def upper_dir(containers: Containers, image: str) -> Path:
    return Path(containers.podman("image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}",
                                  image).stdout.strip())


@contextlib.contextmanager
def mounted(containers: Containers, image: str) -> Iterator[Path]:
    ctr = new_container(containers, image)
    try:
        yield Path(containers.buildah("mount", ctr).stdout.strip())
    finally:
        containers.buildah("rm", ctr, check=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def copy_layer(diff: Path, root: Path) -> None:
    """The simplest correct stacking: copy a top layer onto a mounted root, honouring
    whiteouts (0/0 character devices) and opaque folders."""
    for folder, dirs, files in os.walk(diff):
        for name in (*dirs, *files):
            src = Path(folder, name)
            dst = root / src.relative_to(diff)
            st = os.lstat(src)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                _remove(dst)
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = False
                with contextlib.suppress(OSError):
                    opaque = os.getxattr(src, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
                if dst.is_symlink() or (dst.exists() and not dst.is_dir()) or opaque:
                    _remove(dst)
                dst.mkdir(exist_ok=True)
            else:
                _remove(dst)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                else:
                    shutil.copyfile(src, dst)
            os.lchown(dst, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))


def build_world(containers: Containers, tmp: Path) -> World:
    seconds: dict[str, float] = {}
    started = time.monotonic()
    recipe = tmp / "base.toml"
    recipe.write_text(BASE_RECIPE)
    report = tmp / "report.json"
    containers.composer("--modules-dir", str(RECIPES / "layers"), "build", str(recipe), "-o", str(tmp / "out"),
                        "--report", str(report))
    base = cmd.cache_ref(json.loads(report.read_text())["layers"][0]["key"])
    ctr = new_container(containers, base)
    for argv in PRE_CREATE:
        run_in(containers, ctr, argv)
    parent = commit(containers, ctr, "localhost/reconcile-parent:test")
    seconds["parent"] = time.monotonic() - started

    lists = tmp / "apt"
    for sub in ("lists/partial", "archives/partial"):
        (lists / sub).mkdir(parents=True)
    started = time.monotonic()
    ctr = new_container(containers, parent)
    run_in(containers, ctr, ["apt-get", "update", "-q"], lists)
    containers.buildah("rm", ctr)
    modules = {}
    for name, module in MODULES.items():
        ctr = new_container(containers, parent)
        install(containers, ctr, module, lists)
        modules[name] = commit(containers, ctr, f"localhost/reconcile-{name}:test")
    seconds["modules"] = time.monotonic() - started

    started = time.monotonic()
    ctr = new_container(containers, parent)
    for module in MODULES.values():
        install(containers, ctr, module, lists)
    linear = commit(containers, ctr, "localhost/reconcile-linear:test")
    seconds["linear"] = time.monotonic() - started

    started = time.monotonic()
    storage = storage_of(containers)
    ctr = new_container(containers, parent)
    root = Path(containers.buildah("mount", ctr).stdout.strip())
    diffs = [(name, upper_dir(containers, image)) for name, image in modules.items()]
    for _, diff in diffs:
        copy_layer(diff, root)
    containers.buildah("umount", ctr)
    seconds["stack"] = time.monotonic() - started

    started = time.monotonic()
    with mounted(containers, parent) as parent_root:
        analysis = analyse(parent_root, diffs)
        plan = reconcile_plan(parent_root, diffs)
    seconds["analyse"] = time.monotonic() - started
    reconcile_seconds = apply_plan(Runner(), storage, ctr, plan)
    stacked = commit(containers, ctr, "localhost/reconcile-stacked:test")
    return World(parent, modules, linear, stacked, analysis, reconcile_seconds, storage, lists, seconds)


@pytest.fixture(scope="module")
def world(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> World:
    result = build_world(containers, tmp_path_factory.mktemp("reconcile"))
    print(f"\nreconcile timings: {result.seconds} apply {result.reconcile_seconds:.1f}s")
    return result


def sh(containers: Containers, image: str, script: str) -> str:
    return containers.podman("run", "--rm", "--network", "none", image, "sh", "-c", script).stdout


def both(containers: Containers, world: World, script: str) -> tuple[str, str]:
    return sh(containers, world.stacked, script), sh(containers, world.linear, script)


def test_plan_merges_the_shared_files_and_reruns_what_is_needed(world: World) -> None:
    merged = set(world.analysis.merged)
    assert {"/var/lib/dpkg/status", "/etc/passwd", "/etc/group", "/var/cache/debconf/templates.dat",
            "/var/lib/apt/extended_states", "/var/lib/dpkg/alternatives/editor"} <= merged
    assert ("ldconfig",) in world.analysis.commands
    assert ("update-alternatives", "--auto", "editor") in world.analysis.commands
    # systemd (from ssh) writes where dbus (another module) listens.
    assert "/usr/share/dbus-1/system-services" in world.analysis.triggers
    assert world.reconcile_seconds < 60


def test_dpkg_and_apt_are_consistent(containers: Containers, world: World) -> None:
    stacked, linear = both(containers, world, "dpkg --audit; apt-get check -q 2>&1; echo rc=$?")
    assert stacked == linear
    assert stacked.strip().endswith("rc=0")
    query = "dpkg-query -W -f '${Package}:${Architecture} ${Version} ${Status}\\n'"
    stacked, linear = both(containers, world, query)
    assert stacked == linear
    assert "openssh-server:amd64" in stacked and "vim-tiny:amd64" in stacked
    stacked, linear = both(containers, world, "cat /var/lib/dpkg/status")
    assert stacked == linear  # byte for byte
    stacked, linear = both(containers, world, "dpkg --verify; echo rc=$?")
    # composer's base and every module drop /var/log/apt (a folder apt ships) from layers.
    assert stacked == linear == "missing     /var/log/apt\nrc=0\n"


def test_accounts(containers: Containers, world: World) -> None:
    for name in ("passwd", "group", "shadow", "gshadow"):
        stacked, linear = both(containers, world, f"cat /etc/{name}")
        assert stacked == linear, name  # same names, same ids, same order
    out = sh(containers, world.stacked, "id sshd; getent group _ssh messagebus")
    assert "_ssh" in out and "messagebus" in out


def test_services_configure(containers: Containers, world: World) -> None:
    out = sh(containers, world.stacked,
             "mkdir -p /run/sshd /run/dbus && /usr/sbin/sshd -t && echo sshd-ok;"
             " dbus-daemon --system --print-address --fork >/dev/null && echo dbus-ok")
    assert "sshd-ok" in out and "dbus-ok" in out


def test_libraries_and_alternatives(containers: Containers, world: World) -> None:
    stacked, linear = both(containers, world, "ldconfig -p")
    assert stacked == linear and "libjq.so.1" in stacked and "libdbus-1.so.3" in stacked
    script = ("for g in /var/lib/dpkg/alternatives/*; do update-alternatives --query $(basename $g); done;"
              " ls -l /etc/alternatives | awk '{print $9, $10, $11}'; readlink -f /usr/bin/editor")
    stacked, linear = both(containers, world, script)
    assert stacked == linear
    assert stacked.strip().endswith("/usr/bin/nano")  # priority 40 beats vim-tiny's 15


def test_a_new_package_installs_after(containers: Containers, world: World) -> None:
    ctr = new_container(containers, world.stacked)
    try:
        run_in(containers, ctr, ["apt-get", "install", "-y", "-q", "--no-install-recommends", "tree"], world.lists)
        assert "tree v" in run_in(containers, ctr, ["tree", "--version"])
        assert run_in(containers, ctr, ["dpkg", "--audit"]) == ""
    finally:
        containers.buildah("rm", ctr, check=False)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            full = os.path.join(folder, name)
            st = os.lstat(full)
            rel = "/" + os.path.relpath(full, root)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    what: object = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            else:
                what = stat.S_IFMT(st.st_mode)
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what)
    return out


def test_file_trees_differ_only_where_documented(containers: Containers, world: World) -> None:
    with mounted(containers, world.stacked) as a, mounted(containers, world.linear) as b:
        stacked, linear = tree(a), tree(b)
        assert set(stacked) == set(linear), sorted(set(stacked) ^ set(linear))[:20]
        differ = sorted(p for p in stacked if stacked[p] != linear[p])
        assert [p for p in differ if p not in ALLOWED] == []

        print(f"\n{len(stacked)} paths, {len(differ)} differ: {differ}")


def test_conflicts(containers: Containers, world: World) -> None:
    """Modules that cannot be stacked: two new system groups take one gid, two versions
    of /etc/foo, one module deletes /etc/issue while another changes it."""
    scripts = {
        "alpha": "groupadd --system alpha && echo one > /etc/foo && rm /etc/issue",
        "beta": "groupadd --system beta && echo two > /etc/foo && echo changed >> /etc/issue",
    }
    diffs = []
    for name, script in scripts.items():
        ctr = new_container(containers, world.parent)
        run_in(containers, ctr, ["sh", "-c", script])
        diffs.append((name, upper_dir(containers, commit(containers, ctr, f"localhost/reconcile-{name}:test"))))
    with mounted(containers, world.parent) as parent_root:
        analysis = analyse(parent_root, diffs)
    found = {(c.path, c.modules): c.reason for c in analysis.conflicts}
    assert any(p == "/etc/group" and "alpha and beta" in r for (p, _), r in found.items()), found
    assert found.get(("/etc/foo", ("alpha", "beta"))) == "same path, different content"
    assert any(p == "/etc/issue" and "deletes" in r for (p, _), r in found.items()), found
