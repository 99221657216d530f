"""Reusing a previous reconcile layer (docs/restack.md, "Reconcile reuse"): where the
reconcile commands read, when a member is a bystander of a layer, the memo of the last
layer made, and the image documents of a layer moved onto a new stack."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.restack.reconcile import (
    Entry,
    FileWrite,
    ReuseMemo,
    analyse,
    analysis_digest,
    scan_layer,
    tie,
)
from composer.restack.stack import transplant_documents
from tests.unit.test_reconcile import layer, needs_root
from tests.unit.test_stack import docs

STATUS = b"Package: pkg-p\nStatus: install ok installed\nArchitecture: all\n\n"


def stack(tmp_path: Path, *members: dict[str, bytes | None]) -> tuple[Path, list[tuple[str, Path]]]:
    """A parent with a file trigger on /usr/share/foo and an ld.so.conf.d file naming
    /opt/x/lib, and one layer per member (m0, m1, ...)."""
    parent = layer(tmp_path / "p", {
        "/var/lib/dpkg/triggers/File": b"/usr/share/foo pkg-p/noawait\n",
        "/var/lib/dpkg/status": STATUS,
        "/etc/ld.so.conf.d/x.conf": b"# the x libraries\n/opt/x/lib/\n",
    })
    return parent, [(f"m{i}", layer(tmp_path / f"m{i}", files)) for i, files in enumerate(members)]


def test_the_commands_read_dpkg_the_linker_and_every_trigger_interest(tmp_path: Path) -> None:
    parent, members = stack(tmp_path, {"/opt/a/tool": b"a"},
                            {"/etc/ld.so.conf.d/y.conf": b"/opt/y/lib64\n/opt/y/lib # and a comment\n"})
    reads = analyse(parent, members).reads
    assert reads is not None
    assert {"/var/lib/dpkg", "/etc/ld.so.conf.d", "/usr/lib", "/usr/share/foo",  # dpkg, linker, interest
            "/opt/x/lib", "/opt/y/lib64", "/opt/y/lib"} <= set(reads)  # the folders the conf files name
    assert not any(r.startswith("/opt/a") for r in reads)


def test_a_member_is_tied_to_the_commands_by_what_they_read(tmp_path: Path) -> None:
    parent, members = stack(tmp_path,
                            {"/opt/a/tool": b"a", "/home/dev/notes": b"n"},  # a bystander
                            {"/usr/share/foo/icon": b"i"},  # below a trigger's interest
                            {"/opt/x/lib/libx.so.1": b"x"},  # in a folder ld.so.conf.d names
                            {"/var/lib/dpkg/status": STATUS},  # dpkg's database
                            {"/usr/local/lib/libz.so": b"z"})  # a folder ldconfig searches anyway
    analysis = analyse(parent, members)
    assert analysis.reads is not None
    ties = [tie(x, analysis.reads, {}) for x in analysis.layers]
    # A layer holds the folders of what it changed: the folder read is the first found.
    assert ties == [None, "/usr/share/foo", "/opt/x/lib", "/var/lib/dpkg", "/usr/local/lib"]
    assert tie(analysis.layers[1], ["/usr/share/foo/icon"], {}) == "/usr/share/foo/icon"


@needs_root
def test_a_member_that_deletes_a_folder_the_commands_read_is_tied(tmp_path: Path) -> None:
    parent, members = stack(tmp_path, {"/usr/share": None})  # a whiteout above /usr/share/foo
    analysis = analyse(parent, members)
    assert analysis.reads is not None
    assert tie(analysis.layers[0], analysis.reads, {}) == "/usr/share"


@needs_root
def test_a_member_is_tied_to_the_previous_layer_by_what_that_layer_changed(tmp_path: Path) -> None:
    previous_root = layer(tmp_path / "previous", {"/usr/share/mime/types": b"t", "/var/cache/gone": None})
    (previous_root / "srv").mkdir(mode=0o755)
    os.chmod(previous_root / "srv", 0o755)
    previous = scan_layer(previous_root)
    parent, members = stack(tmp_path,
                            {"/opt/a/tool": b"a"},
                            {"/usr/share/mime/types": b"other"},  # a file the layer wrote
                            {"/var/cache/gone/x": b"x"},  # at (below) a path the layer deletes
                            {"/srv/site": b"s"},  # a folder both have, same mode
                            {"/srv/site2": b"s"})  # ... and with another mode
    os.chmod(tmp_path / "m3" / "srv", 0o755)
    os.chmod(tmp_path / "m4" / "srv", 0o700)
    analysis = analyse(parent, members)
    assert analysis.reads is not None
    assert [tie(x, analysis.reads, previous) for x in analysis.layers] == [
        None, "/usr/share/mime/types", "/var/cache/gone", None, "/srv"]
    # An opaque folder in the previous layer hides everything below it.
    opaque = {"/srv": Entry("dir", 0o755, 0, 0, opaque=True)}
    assert tie(analysis.layers[3], analysis.reads, opaque) == "/srv"


def test_the_digest_of_an_analysis_follows_content_mode_owner_and_commands(tmp_path: Path) -> None:
    parent, members = stack(tmp_path, {"/usr/share/foo/a": b"a"}, {"/usr/share/foo/b": b"b"})
    analysis = analyse(parent, members)
    assert analysis.commands  # the trigger, set off by both
    base = analysis_digest(analysis)
    write = FileWrite("/etc/x", b"x", 0o644, 0, 0)
    variants = [
        replace(analysis, writes=(write,)),
        replace(analysis, writes=(FileWrite("/etc/x", b"y", 0o644, 0, 0),)),
        replace(analysis, writes=(FileWrite("/etc/x", b"x", 0o600, 0, 0),)),
        replace(analysis, writes=(FileWrite("/etc/x", b"x", 0o644, 1000, 0),)),
        replace(analysis, commands=analysis.commands[1:]),
        replace(analysis, deletes=("/var/log/apt",)),
    ]
    digests = [analysis_digest(v) for v in variants]
    assert len({base, *digests}) == 1 + len(variants)
    assert analysis_digest(replace(analysis)) == base


MEMBERS = [("ssh", "k-ssh", False), ("tmux", "k-tmux", True), ("agents", "k-agents", True)]


@pytest.fixture
def memo(tmp_path: Path) -> ReuseMemo:
    kept = ReuseMemo(tmp_path, "k-parent", ["ssh", "tmux", "agents"])
    kept.save("code-1", "analysis-1", "k-reconcile", MEMBERS)
    return kept


def test_the_memo_offers_the_layer_when_only_bystanders_changed(memo: ReuseMemo) -> None:
    assert memo.candidate("code-1", "analysis-1", ["k-ssh", "k-tmux", "k-agents-2"]) == ("k-reconcile", [2])
    assert memo.candidate("code-1", "analysis-1", ["k-ssh", "k-tmux-2", "k-agents-2"]) == ("k-reconcile", [1, 2])


@pytest.mark.parametrize(("reconciler", "digest", "keys"), [
    ("code-1", "analysis-1", ["k-ssh-2", "k-tmux", "k-agents"]),  # ssh was not a bystander
    ("code-1", "analysis-1", ["k-ssh", "k-tmux", "k-agents"]),  # nothing changed: that layer is this one
    ("code-1", "analysis-2", ["k-ssh", "k-tmux", "k-agents-2"]),  # other files written, commands
    ("code-2", "analysis-1", ["k-ssh", "k-tmux", "k-agents-2"]),  # other reconcile code
    ("code-1", "analysis-1", ["k-ssh", "k-agents-2"]),  # other members
])
def test_the_memo_offers_nothing_otherwise(memo: ReuseMemo, reconciler: str, digest: str, keys: list[str]) -> None:
    assert memo.candidate(reconciler, digest, keys) is None


def test_a_memo_is_kept_per_parent_and_members(tmp_path: Path, memo: ReuseMemo) -> None:
    keys = ["k-ssh", "k-tmux", "k-agents-2"]
    assert ReuseMemo(tmp_path, "k-other-parent", ["ssh", "tmux", "agents"]).candidate(
        "code-1", "analysis-1", keys) is None
    assert ReuseMemo(tmp_path, "k-parent", ["tmux", "ssh", "agents"]).candidate("code-1", "analysis-1", keys) is None
    memo.file.write_text("{not json")
    assert memo.candidate("code-1", "analysis-1", keys) is None
    memo.file.write_text(json.dumps({"format": 1}))
    assert memo.candidate("code-1", "analysis-1", keys) is None


def test_a_transplanted_layer_sits_on_the_new_parent_with_its_own_history_and_key() -> None:
    parent, donor = docs("p"), docs("ma")
    result = transplant_documents(parent, donor, {"io.composer.key": "k-new"})
    manifest, config = json.loads(result.manifest), json.loads(result.config)
    assert manifest["layers"] == [*parent.layers, donor.layers[-1]]
    assert config["rootfs"]["diff_ids"] == [*parent.diff_ids, donor.diff_ids[-1]]
    assert config["history"][:-1] == parent.history
    assert config["history"][-1] == {**donor.history[-1], "comment": "FROM localhost/p"}
    runtime = parent.config["config"]
    assert config["config"] == {**runtime, "Labels": {**(runtime.get("Labels") or {}), "io.composer.key": "k-new"}}
    assert "container" not in config and "parent" not in config


def test_a_layer_is_not_transplanted_across_manifest_types() -> None:
    donor = docs("ma")
    other = donor.__class__(donor.ref, {**donor.manifest, "mediaType": "application/vnd.oci.image.manifest.v1+json"},
                            donor.config)
    with pytest.raises(ComposerError, match="manifest type"):
        transplant_documents(docs("p"), other, {})
