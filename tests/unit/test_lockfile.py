"""composer.lock: its text, and how plans and keys follow it (docs/lock.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from composer import lockfile
from composer.errors import ComposerError
from composer.explain import differences
from composer.inventory import Component, Ecosystem
from composer.lockfile import Entry, Lock, Package
from composer.planner import module_inputs, plan_file

from .test_planner import module, recipe


def a_lock(path: Path, **modules: tuple[Package, ...]) -> Lock:
    entries = {name: Entry(name, "sha256:in", pkgs) for name, pkgs in modules.items()}
    return Lock(path, (("source", "debootstrap:trixie"),), entries)


NUMPY = Package("pip", "numpy@/opt/venv", "2.1.3")
JQ = Package("deb", "jq:amd64", "1.7.1-6", "sha256:" + "a" * 64)


def test_render_is_sorted_toml_and_reads_back(tmp_path: Path) -> None:
    lock = a_lock(tmp_path / "r.lock", python=(NUMPY, Package("pip", "attrs@/opt/venv", "25.1")), jq=(JQ,))
    text = lockfile.render(lock, "r.toml")
    data = tomllib.loads(text)
    assert data["version"] == lockfile.LOCK_VERSION
    assert data["modules"]["python"]["pip"] == ["attrs@/opt/venv 25.1", "numpy@/opt/venv 2.1.3"]
    assert data["modules"]["jq"]["deb"] == [f"jq:amd64 1.7.1-6 sha256:{'a' * 64}"]
    assert text.index("[modules.\"jq\"]") < text.index("[modules.\"python\"]")
    lockfile.write(lock, "r.toml")
    again = lockfile.load(lock.path)
    assert again.modules == lock.modules and again.base == lock.base
    assert lockfile.render(again, "r.toml") == text  # stable: same lock, same bytes


def test_a_bad_lock_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "r.lock"
    path.write_text('version = 1\n[modules.jq]\ninputs = "x"\ndeb = ["jq"]\n')
    with pytest.raises(ComposerError, match=r"r.lock: modules.jq.deb\[0\]: 'jq' is not 'name version \[digest\]'"):
        lockfile.load(path)
    path.write_text("version = 7\n")
    with pytest.raises(ComposerError, match="r.lock: version: 7 is not a lock format"):
        lockfile.load(path)


def keys(path: Path) -> dict[str, str]:
    return {s.module.name: s.key for s in plan_file(path).steps}


def test_keys_follow_the_lock_of_their_module_only(tmp_path: Path) -> None:
    for m in ("a", "b", "c"):
        module(tmp_path, m)
    path = recipe(tmp_path, ["a", "b", "c"])
    unlocked = keys(path)
    lock_file = lockfile.lock_path(path)
    assert lock_file.name == "r.lock"
    lockfile.write(a_lock(lock_file, a=(), b=(NUMPY,), c=()), "r.toml")
    first = keys(path)
    assert first != unlocked  # a recipe with a lock: its keys hold it
    lockfile.write(a_lock(lock_file, a=(), b=(Package("pip", "numpy@/opt/venv", "2.2.0"),), c=()), "r.toml")
    second = keys(path)
    assert second["a"] == first["a"]  # before b: unchanged
    assert second["b"] != first["b"]  # b's lock moved
    assert second["c"] != first["c"]  # built on b
    lock_file.unlink()
    assert keys(path) == unlocked  # no lock: the keys of before (turboflow's do not move)


def test_restacked_siblings_keep_their_keys_when_one_lock_moves(tmp_path: Path) -> None:
    for m in ("a", "b", "c"):
        module(tmp_path, m)
    path = recipe(tmp_path, ["a", "b", "c"])
    path.write_text(path.read_text().replace('name = "t"\n', 'name = "t"\nlayering = "restack"\n'))
    lock_file = lockfile.lock_path(path)
    lockfile.write(a_lock(lock_file, a=(), b=(NUMPY,), c=()), "r.toml")
    first = keys(path)
    assert all(s.restacked for s in plan_file(path).steps)
    lockfile.write(a_lock(lock_file, a=(JQ,), b=(NUMPY,), c=()), "r.toml")
    second = keys(path)
    assert second["a"] != first["a"]
    assert second["b"] == first["b"] and second["c"] == first["c"]


def test_inputs_change_with_options_not_with_parent_or_lock(tmp_path: Path) -> None:
    module(tmp_path, "a")
    module(tmp_path, "b", '[options.n]\ntype = "integer"\ndefault = 1\n')
    path = recipe(tmp_path, ["a", "b"])
    doc = plan_file(path).steps[1].key_document
    assert module_inputs({**doc, "parent": "other", "lock": {"x": "1"}}) == module_inputs(doc)
    assert module_inputs({**doc, "options": {"n": 2}}) != module_inputs(doc)


def test_plan_why_names_the_packages_that_moved() -> None:
    old = Entry("python", "x", (NUMPY, JQ)).key_part()
    new = Entry("python", "x", (Package("pip", "numpy@/opt/venv", "2.2.0"), JQ)).key_part()
    assert differences({"lock": old}, {"lock": new}) == ["lock numpy@/opt/venv 2.1.3 -> 2.2.0"]
    assert lockfile.changes("python", old, new) == ["python: lock numpy@/opt/venv 2.1.3 -> 2.2.0"]
    assert lockfile.changes("python", None, new) == ["python: lock entry added"]


def test_drift_names_module_package_locked_version_and_what_was_installed() -> None:
    entry = Entry("testmod", "x", (Package("deb", "composer-testpkg:all", "1.0"),))
    ok = [Package("deb", "composer-testpkg:all", "1.0")]
    assert lockfile.drift("testmod", entry, ok) == ""
    newer = [Package("deb", "composer-testpkg:all", "2.0")]
    assert lockfile.drift("testmod", entry, newer) == (
        "module testmod: deb package composer-testpkg:all: locked 1.0, the build installed 2.0")
    extra = [*ok, Package("pip", "six@/opt/venv", "1.17.0")]
    assert lockfile.drift("testmod", entry, extra) == (
        "module testmod: pip package six@/opt/venv 1.17.0 is not in the lock")
    assert "did not install it" in lockfile.drift("testmod", entry, [])


def test_pins_make_apt_and_pip_take_the_locked_versions() -> None:
    entry = Entry("m", "x", (JQ, NUMPY, Package("pip", "six@/a", "1"), Package("pip", "six@/b", "2")))
    files = lockfile.pin_files(entry)
    assert files["preferences"] == "Package: jq\nPin: version 1.7.1-6\nPin-Priority: 1001\n"
    assert files["pip-constraints.txt"] == "numpy==2.1.3\n"  # six: two versions, left to the check
    assert f'"{lockfile.PIN_MOUNT}/preferences"' in files["apt.conf"]
    assert lockfile.pin_env()["PIP_CONSTRAINT"].startswith(lockfile.PIN_MOUNT)


def test_base_snapshot_builds_from_the_archive_of_that_date(tmp_path: Path) -> None:
    from composer import commands as cmd

    module(tmp_path, "a")
    path = recipe(tmp_path, ["a"])
    plain = plan_file(path).base
    path = recipe(tmp_path, ["a"], base='from = "debootstrap:trixie"\nsnapshot = "20250301T000000Z"')
    base = plan_file(path).base
    url = "https://snapshot.debian.org/archive/debian/20250301T000000Z/"
    assert cmd.debootstrap(base.base, "/target")[-1] == url
    assert cmd.sources_list(base.base) == f"deb {url} trixie main\n"
    assert base.key != plain.key and base.key_document["snapshot"] == "20250301T000000Z"
    assert "snapshot" not in plain.key_document  # bases without one keep their keys
    local = recipe(tmp_path, ["a"], base='from = "debootstrap:trixie"\nsnapshot = "20250301T000000Z"\n'
                                        'snapshot_mirror = "http://127.0.0.1:8000/debian/"')
    served = "deb http://127.0.0.1:8000/debian/20250301T000000Z/ "
    assert cmd.sources_list(plan_file(local).base.base).startswith(served)
    bad = recipe(tmp_path, ["a"], base='from = "debootstrap:trixie"\nsnapshot = "2025-03-01"')
    with pytest.raises(ComposerError, match=r"r.toml: base.snapshot: '2025-03-01' does not match"):
        plan_file(bad)


def test_base_packages_read_back(tmp_path: Path) -> None:
    lock = Lock(tmp_path / "r.lock", (("source", "debootstrap:trixie"),), {}, (JQ,))
    lockfile.write(lock, "r.toml")
    assert lockfile.load(lock.path).base_packages == (JQ,)
    assert lockfile.load(lock.path).base == lock.base


PACKAGES = """Package: jq
Version: 1.7.1-6
Architecture: amd64
Description: lightweight and flexible
 command-line JSON processor
SHA256: aaaa

Package: tzdata
Version: 2025b-4
Architecture: all
SHA256: bbbb
"""


def test_what_a_layer_adds_with_deb_digests_from_the_packages_index() -> None:
    parent = [Component(Ecosystem.DEB, "jq", "1.6", arch="amd64"), Component(Ecosystem.DEB, "tzdata", "2025b-4",
                                                                              arch="all")]
    child = [Component(Ecosystem.DEB, "jq", "1.7.1-6", arch="amd64"), parent[1],
             Component(Ecosystem.PYPI, "numpy", "2.1.3", location="/opt/venv/lib/python3.13/site-packages"),
             Component(Ecosystem.NPM, "typescript", "5.9.3", location="/usr/lib/node_modules/typescript"),
             Component(Ecosystem.CARGO, "ripgrep", "14.1.1")]
    new = lockfile.with_deb_digests(lockfile.added(parent, child), lockfile.parse_packages_index(PACKAGES))
    assert new == sorted([
        Package("deb", "jq:amd64", "1.7.1-6", "sha256:aaaa"),  # upgraded: recorded at its new version
        Package("pip", "numpy@/opt/venv/lib/python3.13/site-packages", "2.1.3"),
        Package("npm", "typescript@/usr/lib/node_modules/typescript", "5.9.3"),
        Package("cargo", "ripgrep", "14.1.1"),
    ])  # tzdata is the parent's: not this layer's
    unknown = lockfile.with_deb_digests([Package("deb", "jq:amd64", "9")], lockfile.parse_packages_index(PACKAGES))
    assert unknown[0].digest == ""  # another version: no digest is made up


def test_stale_names_each_module_added_dropped_or_changed(tmp_path: Path) -> None:
    lock = Lock(tmp_path / "r.lock", (("source", "debootstrap:trixie"), ("release_date", "then")),
                {"a": Entry("a", "in-a"), "b": Entry("b", "in-b"), "gone": Entry("gone", "x")})
    base = [("source", "debootstrap:trixie")]  # release_* are what the mirror said, not the recipe
    assert lockfile.stale(lock, {"a": "in-a", "b": "in-b", "gone": "x"}, base) == []
    lines = lockfile.stale(lock, {"a": "in-a", "b": "changed", "new": "y"}, [("source", "debootstrap:forky")])
    assert lines == [
        f"{lock.path}: base: the recipe's base changed",
        f"{lock.path}: modules.b.inputs: the module, its options or its files changed",
        f"{lock.path}: modules.gone: the recipe has no such module any more",
        f"{lock.path}: modules.new: not in the lock (a module the recipe added)",
    ]
    assert lockfile.stale(None, {}, base) == ["no lock file"]
