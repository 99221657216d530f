"""stack_documents on recorded `buildah inspect` output (tests/unit/data/stack: a parent
p, modules ma/mb/mc built on it, md2 with two layers of its own), and list_changes on a
folder laid out like an overlay layer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from composer.commands import Storage
from composer.commands import storage_ref as cmd_storage_ref
from composer.errors import ComposerError
from composer.restack.stack import (
    Change,
    DigestCache,
    ImageDocs,
    list_changes,
    stack_documents,
    without_container,
)

DATA = Path(__file__).parent / "data" / "stack"


def docs(name: str) -> ImageDocs:
    raw = json.loads((DATA / f"{name}.json").read_text())
    return ImageDocs(f"localhost/{name}", json.loads(raw["Manifest"]), json.loads(raw["Config"]))


def stacked(*names: str) -> tuple[dict[str, Any], dict[str, Any], tuple[tuple[str, str, str], ...]]:
    result = stack_documents(docs("p"), [docs(n) for n in names])
    return json.loads(result.manifest), json.loads(result.config), result.env_overridden


def test_layers_are_parents_then_each_modules_top_layer_in_order() -> None:
    p, a, b = docs("p"), docs("ma"), docs("mb")
    manifest, config, _ = stacked("ma", "mb")
    assert manifest["layers"] == [*p.layers, a.layers[-1], b.layers[-1]]
    assert config["rootfs"]["diff_ids"] == [*p.diff_ids, a.diff_ids[-1], b.diff_ids[-1]]
    assert manifest["mediaType"] == p.manifest["mediaType"]


def test_manifest_names_the_config_by_its_digest_and_size() -> None:
    result = stack_documents(docs("p"), [docs("ma")])
    manifest = json.loads(result.manifest)
    assert manifest["config"]["digest"] == "sha256:" + hashlib.sha256(result.config).hexdigest()
    assert manifest["config"]["size"] == len(result.config)
    assert result.image_id == manifest["config"]["digest"].removeprefix("sha256:")


def test_without_container_drops_the_two_machine_ids_and_keeps_everything_else() -> None:
    image = docs("ma")
    result = without_container(image)
    assert result is not None
    manifest, config = json.loads(result.manifest), json.loads(result.config)
    assert {"container", "parent"} <= set(image.config) and not {"container", "parent"} & set(config)
    assert config == {k: v for k, v in image.config.items() if k not in ("container", "parent")}
    assert manifest["layers"] == image.layers and manifest["mediaType"] == image.manifest["mediaType"]
    assert manifest["config"]["digest"] == "sha256:" + hashlib.sha256(result.config).hexdigest()
    # The same image committed by another container on another parent: one ID.
    moved = {**image.config, "container": "f" * 64, "parent": "sha256:" + "e" * 64}
    other = ImageDocs(image.ref, image.manifest, moved)
    again = without_container(other)
    assert again is not None and again.image_id == result.image_id
    # Nothing to drop: nothing to re-tag.
    assert without_container(ImageDocs(image.ref, image.manifest, config)) is None


def test_history_has_the_parents_entries_then_one_per_module() -> None:
    _, config, _ = stacked("ma", "mb", "mc")
    assert [h["created_by"] for h in config["history"]] == ["P layer", "module a", "module b", "module c"]


def test_env_merges_later_module_wins_per_name_path_included() -> None:
    _, config, overridden = stacked("ma", "mc", "mb")
    env = config["config"]["Env"]
    assert env == ["PATH=/b/bin:/bin", "P=2", "M_a=1", "M_c=1", "M_b=1"]
    assert ("PATH", "localhost/ma", "localhost/mc") in overridden
    assert ("PATH", "localhost/mc", "localhost/mb") in overridden
    assert all(name == "PATH" for name, _, _ in overridden)


def test_env_a_module_did_not_change_keeps_the_earlier_value() -> None:
    # mc sets P=2; ma leaves P alone (P=1 is the parent's), so ma after mc must not undo it.
    _, config, _ = stacked("mc", "ma")
    assert "P=2" in config["config"]["Env"]


def test_other_config_a_module_changed_is_kept() -> None:
    _, config, _ = stacked("ma", "mc", "mb")
    runtime = config["config"]
    assert runtime["WorkingDir"] == "/c"
    assert runtime["Labels"] == {"org.example.c": "yes"}
    assert runtime["ExposedPorts"] == {"8080/tcp": {}}
    assert config["container_config"] == runtime


def test_labels_given_are_set_over_the_merged_ones_and_nothing_else_moves() -> None:
    plain = stack_documents(docs("p"), [docs("ma"), docs("mc")])
    labelled = stack_documents(docs("p"), [docs("ma"), docs("mc")], {"io.composer.key": "k" * 64})
    a, b = json.loads(plain.config), json.loads(labelled.config)
    assert b["config"]["Labels"] == {"org.example.c": "yes", "io.composer.key": "k" * 64}
    b["config"]["Labels"] = a["config"]["Labels"]
    b["container_config"] = a["container_config"]
    assert a == b and json.loads(plain.manifest)["layers"] == json.loads(labelled.manifest)["layers"]
    assert labelled.image_id != plain.image_id


def test_created_is_fixed_and_the_build_container_is_not_named() -> None:
    _, config, _ = stacked("ma")
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert "container" not in config and "parent" not in config


def test_same_inputs_give_the_same_bytes() -> None:
    first = stack_documents(docs("p"), [docs("ma"), docs("mc")])
    second = stack_documents(docs("p"), [docs("ma"), docs("mc")])
    assert (first.manifest, first.config) == (second.manifest, second.config)
    other = stack_documents(docs("p"), [docs("mc"), docs("ma")])
    assert other.image_id != first.image_id


def test_a_module_with_two_own_layers_is_refused() -> None:
    with pytest.raises(ComposerError, match=r"localhost/md2: has 2 layers of its own over localhost/p"):
        stack_documents(docs("p"), [docs("ma"), docs("md2")])


def test_a_module_not_built_on_the_parent_is_refused() -> None:
    with pytest.raises(ComposerError, match=r"localhost/mc: not built on localhost/ma"):
        stack_documents(docs("ma"), [docs("mc")])


def test_the_parent_itself_is_not_a_module() -> None:
    with pytest.raises(ComposerError, match="has 0 layers of its own"):
        stack_documents(docs("p"), [docs("p")])


def test_no_modules_is_an_error() -> None:
    with pytest.raises(ComposerError, match="no module images"):
        stack_documents(docs("p"), [])


def test_storage_ref_names_a_private_storage() -> None:
    assert cmd_storage_ref(Storage(), "x") == "containers-storage:x"
    assert cmd_storage_ref(Storage("/r", "/rr", "overlay"), "x") == "containers-storage:[overlay@/r+/rr]x"


def make_layer(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/a.conf").write_text("a\n")
    os.link(root / "etc/a.conf", root / "etc/hard.conf")
    (root / "etc/link").symlink_to("a.conf")
    (root / "opt/new").mkdir(parents=True)


def test_list_changes_kinds_paths_and_digests(tmp_path: Path) -> None:
    make_layer(tmp_path)
    changes = list_changes(tmp_path)
    digest = "sha256:" + hashlib.sha256(b"a\n").hexdigest()
    assert changes == [
        Change("/etc", "dir", None),
        Change("/etc/a.conf", "file", digest),
        Change("/etc/hard.conf", "file", digest),
        Change("/etc/link", "symlink", "sha256:" + hashlib.sha256(b"a.conf").hexdigest()),
        Change("/opt", "dir", None),
        Change("/opt/new", "dir", None),
    ]


@pytest.mark.needs(root=True, why="whiteouts (0/0 char devices) and trusted.* xattrs need root")
def test_list_changes_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    os.mknod(tmp_path / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    (tmp_path / "fresh").mkdir()
    os.setxattr(tmp_path / "fresh", "trusted.overlay.opaque", b"y")
    (tmp_path / "fresh/only").write_text("x")
    kinds = {c.path: c.kind for c in list_changes(tmp_path)}
    assert kinds == {"/gone": "whiteout", "/fresh": "opaque", "/fresh/only": "file"}


def test_digest_cache_is_saved_and_reused(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    make_layer(layer)
    cache_file = tmp_path / "digests.json"
    cache = DigestCache.load(cache_file)
    first = list_changes(layer, cache)
    # One entry for the file and its hard link: same inode.
    assert len(json.loads(cache_file.read_text())) == 1
    again = DigestCache.load(cache_file)
    assert list_changes(layer, again) == first and not again.dirty
