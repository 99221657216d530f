"""stack_image and layer_folders with real buildah, podman and skopeo on tiny scratch
images: a parent P and modules each committed on P, stacked without rebuilding."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from composer import commands
from composer.errors import ComposerError
from composer.restack.stack import layer_folders, list_changes, stack_image
from composer.runner import Runner
from tests.conftest import Containers

pytestmark = pytest.mark.integration

STORAGE = commands.Storage()  # the fixture's CONTAINERS_STORAGE_CONF names it


@dataclass(frozen=True)
class Box:
    containers: Containers
    runner: Runner

    def image(self, ref: str, parent: str | None, files: dict[str, str], env: dict[str, str],
              created_by: str, delete: tuple[str, ...] = (), replace_dir: str = "") -> str:
        """Commit one layer on parent (None: scratch): files written, paths deleted, and
        replace_dir emptied and refilled (overlay records it as an opaque folder)."""
        b = self.containers.buildah
        ctr = b("from", "--quiet", parent or "scratch").stdout.strip()
        mount = Path(b("mount", ctr).stdout.strip())
        for path in delete:
            (mount / path.lstrip("/")).unlink()
        if replace_dir:
            shutil.rmtree(mount / replace_dir.lstrip("/"))
            (mount / replace_dir.lstrip("/")).mkdir()
        for path, text in files.items():
            target = mount / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        b("umount", ctr)
        b(*commands.config_env(STORAGE, ctr, list(env.items()), created_by)[1:])
        return b(*commands.commit(STORAGE, ctr, ref)[1:]).stdout.strip()

    def read(self, ref: str, paths: list[str]) -> dict[str, str | None]:
        """The text of each path in ref's file system (None: absent), via a mount."""
        b = self.containers.buildah
        ctr = b("from", "--quiet", "--pull=never", ref).stdout.strip()
        try:
            mount = Path(b("mount", ctr).stdout.strip())
            found = {}
            for path in paths:
                full = mount / path.lstrip("/")
                found[path] = full.read_text() if full.exists() else None
            return found
        finally:
            b("rm", ctr)

    def inspect(self, ref: str) -> dict[str, Any]:
        out = self.containers.podman("image", "inspect", ref).stdout
        found: dict[str, Any] = json.loads(out)[0]
        return found

    def layer_ids(self) -> set[str]:
        layers = json.loads((self.containers.root / "root/overlay-layers/layers.json").read_text())
        return {layer["id"] for layer in layers}


@pytest.fixture(scope="module")
def box(containers: Containers) -> Iterator[Box]:
    saved = {k: os.environ.get(k) for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")}
    os.environ.update({k: containers.env[k] for k in saved})
    b = Box(containers, Runner())
    b.image("localhost/stack-p", None,
            {"/etc/p.txt": "p\n", "/etc/del.txt": "deleted by c\n", "/var/data/old": "old\n"},
            {"PATH": "/bin", "P": "1"}, "P")
    b.image("localhost/stack-a", "localhost/stack-p", {"/a/a.txt": "a\n"},
            {"PATH": "/a/bin:/bin", "A": "1"}, "module a")
    b.image("localhost/stack-b", "localhost/stack-p", {"/b/b.txt": "b\n", "/etc/p.txt": "p by b\n"},
            {"B": "1", "P": "2"}, "module b")
    b.image("localhost/stack-c", "localhost/stack-p", {"/c/c.txt": "c\n", "/var/data/new": "new\n"},
            {"PATH": "/c/bin:/bin", "C": "1"}, "module c", delete=("/etc/del.txt",),
            replace_dir="/var/data")
    b.image("localhost/stack-b2", "localhost/stack-p", {"/b/b2.txt": "b2\n"}, {"B": "2"}, "module b2")
    b.image("localhost/stack-two", "localhost/stack-a", {"/two.txt": "2\n"}, {}, "module on a")
    yield b
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


MODULES = ["localhost/stack-a", "localhost/stack-b", "localhost/stack-c"]


def test_stacked_image_has_every_modules_files_env_and_history(box: Box) -> None:
    image_id = stack_image(box.runner, STORAGE, "localhost/stack-p", MODULES, "localhost/stacked")
    info = box.inspect("localhost/stacked")
    assert info["Id"] == image_id
    parent = box.inspect("localhost/stack-p")["RootFS"]["Layers"]
    tops = [box.inspect(m)["RootFS"]["Layers"][-1] for m in MODULES]
    assert info["RootFS"]["Layers"] == [*parent, *tops]
    assert info["Config"]["Env"] == ["PATH=/c/bin:/bin", "P=2", "A=1", "B=1", "C=1"]
    history = box.containers.podman("history", "--format", "{{.CreatedBy}}", "localhost/stacked").stdout
    assert history.split("\n")[:4] == ["module c", "module b", "module a", "P"]
    files = box.read("localhost/stacked", ["/etc/p.txt", "/a/a.txt", "/b/b.txt", "/c/c.txt",
                                           "/etc/del.txt", "/var/data/old", "/var/data/new"])
    assert files == {"/etc/p.txt": "p by b\n", "/a/a.txt": "a\n", "/b/b.txt": "b\n", "/c/c.txt": "c\n",
                     # c deleted a file of P and replaced a folder: both honoured.
                     "/etc/del.txt": None, "/var/data/old": None, "/var/data/new": "new\n"}


def test_stacking_again_is_reproducible_and_restacks_only_after_the_change(box: Box) -> None:
    first = stack_image(box.runner, STORAGE, "localhost/stack-p", MODULES, "localhost/stacked")
    before = box.layer_ids()
    started = time.monotonic()
    again = stack_image(box.runner, STORAGE, "localhost/stack-p", MODULES, "localhost/stacked-again")
    assert again == first and box.layer_ids() == before
    print(f"\nrestack, all layers reused: {time.monotonic() - started:.2f}s")
    started = time.monotonic()
    changed = ["localhost/stack-a", "localhost/stack-b2", "localhost/stack-c"]
    replaced = stack_image(box.runner, STORAGE, "localhost/stack-p", changed, "localhost/stacked-b2")
    print(f"restack, b replaced: {time.monotonic() - started:.2f}s")
    assert replaced != first
    # P's layers and a's stay as they are; only b2 (on a) and c (on b2) are new layers.
    assert len(box.layer_ids() - before) == 2
    files = box.read("localhost/stacked-b2", ["/b/b.txt", "/b/b2.txt", "/c/c.txt", "/etc/p.txt"])
    assert files == {"/b/b.txt": None, "/b/b2.txt": "b2\n", "/c/c.txt": "c\n", "/etc/p.txt": "p\n"}


def test_layer_changes_lists_exactly_what_a_module_changed(box: Box) -> None:
    (folder,) = layer_folders(box.runner, STORAGE, ["localhost/stack-c"])
    kinds = {c.path: c.kind for c in list_changes(folder)}
    assert kinds == {"/c": "dir", "/c/c.txt": "file", "/etc": "dir", "/etc/del.txt": "whiteout",
                     "/var": "dir", "/var/data": "opaque", "/var/data/new": "file"}


def test_a_module_with_two_layers_of_its_own_is_refused(box: Box) -> None:
    with pytest.raises(ComposerError, match="localhost/stack-two: has 2 layers of its own over localhost/stack-p"):
        stack_image(box.runner, STORAGE, "localhost/stack-p", ["localhost/stack-a", "localhost/stack-two"],
                    "localhost/never")
    assert "localhost/never:latest" not in box.containers.images()
