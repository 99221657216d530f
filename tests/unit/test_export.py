"""The pure part of the export (which blobs are reused, the documents written) and the
archive writer on hand-made layouts (plain files, no container tool)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from composer.emit import oci as export
from composer.emit.oci import Descriptor, Entry, Image, Member
from composer.errors import ComposerError

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"
CONFIG = "application/vnd.oci.image.config.v1+json"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def image(layers: list[Descriptor], diff_ids: list[str], source_id: str = "") -> Image:
    config_doc = {"rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config = Descriptor.for_bytes(CONFIG, export.serialize(config_doc))
    manifest_doc = {"schemaVersion": 2, "mediaType": export.MANIFEST_TYPE, "config": config.as_dict(),
                    "layers": [layer.as_dict() for layer in layers], "annotations": {"a": "b"}}
    manifest = Descriptor.for_bytes(export.MANIFEST_TYPE, export.serialize(manifest_doc))
    return Image(manifest, manifest_doc, config_doc, source_id)


A, B, C = digest("diff a"), digest("diff b"), digest("diff c")
GA, GB, GC = Descriptor(GZ, digest("gz a"), 10), Descriptor(GZ, digest("gz b"), 20), Descriptor(GZ, digest("gz c"), 30)


def test_hex_of_accepts_sha256_only() -> None:
    assert export.hex_of(A) == A[7:]
    for bad in ("sha512:" + "0" * 128, "sha256:../../etc/passwd", "sha256:" + "A" * 64, A + "0"):
        with pytest.raises(ComposerError):
            export.hex_of(bad)


def test_reusable_layers_pair_blobs_with_diff_ids_and_skip_partial_blobs() -> None:
    img = image([GA, GB, GC], [A, B, C])
    sizes = {GA.hex: 10, GB.hex: 19}  # b's file is short (an interrupted copy); c's is missing
    assert export.reusable_layers(img, sizes, GZ) == {A: GA}
    assert export.reusable_layers(None, sizes, GZ) == {}


def test_a_layer_compressed_otherwise_is_not_reused() -> None:
    za = Descriptor(ZST, digest("zst a"), 9)
    img = image([za, GB], [A, B])
    sizes = {za.hex: 9, GB.hex: 20}
    assert export.reusable_layers(img, sizes, GZ) == {B: GB}
    assert export.reusable_layers(img, sizes, ZST) == {A: za}


def early(tmp_path: Path, record: object, files: dict[Descriptor, int]) -> Path:
    """A layout path whose early folder holds record and, per blob, a file of that size."""
    layout = tmp_path / "img-t.oci"
    blobs = export.early_folder(layout) / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (export.early_folder(layout) / export.EARLY_RECORD).write_text(json.dumps(record))
    for blob, size in files.items():
        (blobs / blob.hex).write_bytes(b"x" * size)
    return layout


def test_early_layers_offer_whole_blobs_compressed_as_asked(tmp_path: Path) -> None:
    za = Descriptor(ZST, digest("zst c"), 9)
    record = {A: GA.as_dict(), B: GB.as_dict(), C: za.as_dict()}
    layout = early(tmp_path, record, {GA: 10, GB: 19, za: 9})  # b's blob is short (a write cut off)
    assert export.early_folder(layout) == tmp_path / ".img-t.oci.early"
    assert export.early_layers(layout, GZ) == {A: GA}
    assert export.early_layers(layout, ZST) == {C: za}


def test_early_layers_ignore_a_record_that_is_unreadable_or_names_paths(tmp_path: Path) -> None:
    assert export.early_layers(tmp_path / "none.oci", GZ) == {}  # no early folder at all
    bad = Descriptor(GZ, "sha256:../../../etc/passwd", 10)
    layout = early(tmp_path, {A: bad.as_dict(), "sha256:../x": GB.as_dict(), C: GC.as_dict()}, {GB: 20, GC: 30})
    assert export.early_layers(layout, GZ) == {C: GC}
    (export.early_folder(layout) / export.EARLY_RECORD).write_text("[1, 2]")
    assert export.early_layers(layout, GZ) == {}
    (export.early_folder(layout) / export.EARLY_RECORD).write_text(json.dumps({A: {"digest": 1}}))
    assert export.early_layers(layout, GZ) == {}


def test_compression_flags_and_levels() -> None:
    assert export.Compression().flags() == ["--compression-format", "gzip"]
    assert export.Compression().layer_type == GZ
    assert export.Compression("zstd", 3).flags() == ["--compression-format", "zstd", "--compression-level", "3"]
    assert export.Compression("zstd").layer_type == ZST
    assert export.Compression("gzip", 1).level == 1 and export.Compression("zstd", 20).level == 20
    for format_, level, message in (("gzip", 0, "gzip level 0 is out of range"),
                                    ("gzip", 10, "gzip level 10 is out of range"),
                                    ("zstd", 21, "zstd level 21 is out of range"),
                                    ("xz", None, "unknown format 'xz'")):
        with pytest.raises(ComposerError, match=message):
            export.Compression(format_, level)


def test_layers_and_diff_ids_must_pair_up() -> None:
    with pytest.raises(ComposerError, match="2 layers but 1 diff_ids"):
        image([GA, GB], [A]).layers_by_diff_id()


def test_merge_replaces_placeholders_by_the_known_blob_and_keeps_new_layers() -> None:
    # c/image lists a reused placeholder under its diff ID, with the placeholder's size (0).
    staged = image([Descriptor(TAR, A, 0), Descriptor(TAR, B, 0), GC], [A, B, C])
    merged = export.merge_manifest(staged, {A: GA, B: GB})
    document = json.loads(merged.manifest)
    assert [layer["digest"] for layer in document["layers"]] == [GA.digest, GB.digest, GC.digest]
    assert [layer["mediaType"] for layer in document["layers"]] == [GZ, GZ, GZ]
    assert merged.new_layers == (GC,) and merged.reused_layers == (GA, GB)
    assert document["config"] == staged.manifest_doc["config"]
    assert document["annotations"] == {"a": "b"}


def test_merge_keeps_a_layer_c_image_compressed_although_a_placeholder_was_there() -> None:
    staged = image([GA, Descriptor(TAR, B, 0)], [A, B])
    merged = export.merge_manifest(staged, {A: GA, B: GB})
    assert merged.new_layers == (GA,) and merged.reused_layers == (GB,)


def test_merge_of_a_repeated_layer_reuses_it_twice() -> None:
    staged = image([Descriptor(TAR, A, 0), Descriptor(TAR, A, 0)], [A, A])
    merged = export.merge_manifest(staged, {A: GA})
    assert [layer["digest"] for layer in json.loads(merged.manifest)["layers"]] == [GA.digest, GA.digest]
    assert image([GA, GA], [A, A]).blobs()[:1] == [GA]  # one blob file for both


def test_index_names_the_tag_and_records_the_source() -> None:
    manifest = Descriptor(export.MANIFEST_TYPE, digest("m"), 5)
    index = export.index_document(manifest, "v1", "abc")
    assert index["manifests"] == [{"mediaType": export.MANIFEST_TYPE, "digest": manifest.digest, "size": 5,
                                   "annotations": {export.REF_NAME: "v1", export.SOURCE_ID: "abc"}}]
    assert export.find_manifest(index, "v1") == (manifest, "abc")
    assert export.find_manifest(index, "v2") is None


def test_garbage_is_every_blob_nothing_references() -> None:
    img = image([GA, GB], [A, B])
    present = [GA.hex, GB.hex, GC.hex, img.config.hex, img.manifest.hex, "ab" * 32]
    assert export.garbage(present, (b.hex for b in img.blobs())) == sorted([GC.hex, "ab" * 32])


def test_archive_puts_layers_first_in_order_and_documents_last() -> None:
    img = image([GB, GA, GB], [B, A, B], "id")
    names = [e.name for e in export.archive_entries(img, "v1")]
    assert names == ["blobs", "blobs/sha256", f"blobs/sha256/{GB.hex}", f"blobs/sha256/{GA.hex}",
                     f"blobs/sha256/{img.config.hex}", f"blobs/sha256/{img.manifest.hex}", "index.json", "oci-layout"]


def test_kept_prefix_stops_at_the_first_member_that_differs() -> None:
    entries = [Entry("blobs"), Entry("blobs/sha256/aa", 10, blob="aa"), Entry("blobs/sha256/bb", 20, blob="bb"),
               Entry("index.json", 3, data=b"new")]
    same = [Member("blobs", 0, 512, True), Member("blobs/sha256/aa", 10, 1536, False)]
    assert export.kept_prefix(same, entries) == 2
    assert export.kept_prefix([*same, Member("blobs/sha256/cc", 20, 2560, False)], entries) == 2
    assert export.kept_prefix([*same, Member("blobs/sha256/bb", 20, 3072, False),
                               Member("index.json", 3, 4096, False, b"old")], entries) == 3
    assert export.kept_prefix([*same, Member("blobs/sha256/bb", 20, 3072, False),
                               Member("index.json", 3, 4096, False, b"new")], entries) == 4
    assert export.kept_prefix([Member("blobs", 0, 512, False)], entries) == 0  # a file, not a folder


def write_layout(root: Path, layers: list[bytes], source_id: str) -> Image:
    """A layout of plain files (the layers need not be real tars for the archive writer)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors = [Descriptor.for_bytes(GZ, data) for data in layers]
    img = image(descriptors, [digest(f"diff {i}") for i in range(len(layers))], source_id)
    for descriptor, data in zip(descriptors, layers, strict=True):
        (blobs / descriptor.hex).write_bytes(data)
    (blobs / img.config.hex).write_bytes(export.serialize(img.config_doc))
    (blobs / img.manifest.hex).write_bytes(export.serialize(img.manifest_doc))
    (root / "oci-layout").write_bytes(export.LAYOUT_VERSION)
    (root / "index.json").write_bytes(export.serialize(export.index_document(img.manifest, "v1", source_id)))
    return img


def tar_contents(path: Path) -> dict[str, bytes | None]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}  # type: ignore[union-attr]


def layout_contents(root: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = path.read_bytes() if path.is_file() else None
    return found


def test_archive_keeps_the_unchanged_prefix_and_appends_the_rest(tmp_path: Path) -> None:
    layout, archive = tmp_path / "x.oci", tmp_path / "x.oci.tar"
    big = bytes(range(256)) * 4096  # 1 MiB
    write_layout(layout, [big, b"small top 1"], "id1")
    first = export.write_oci_archive(layout, "v1", archive)
    assert not first.up_to_date and first.kept_bytes == 0
    assert tar_contents(archive) == layout_contents(layout)

    again = export.write_oci_archive(layout, "v1", archive)
    assert again.up_to_date and again.written_bytes == 0

    for old in (layout / "blobs" / "sha256").iterdir():
        old.unlink()
    write_layout(layout, [big, b"small top 2, longer"], "id2")
    second = export.write_oci_archive(layout, "v1", archive)
    assert not second.up_to_date
    assert second.kept_bytes > len(big)  # the big first layer stayed where it was
    assert second.written_bytes < 4096
    assert tar_contents(archive) == layout_contents(layout)


def test_archive_completes_one_that_was_cut_short(tmp_path: Path) -> None:
    layout, archive = tmp_path / "x.oci", tmp_path / "x.oci.tar"
    write_layout(layout, [b"a" * 5000, b"b" * 7000], "id")
    export.write_oci_archive(layout, "v1", archive)
    with open(archive, "r+b") as f:
        f.truncate(3000)  # inside the first layer's data
    result = export.write_oci_archive(layout, "v1", archive)
    assert result.kept_bytes == 1024  # the two folder members
    assert tar_contents(archive) == layout_contents(layout)


def test_read_image_of_a_missing_or_broken_layout_is_none(tmp_path: Path) -> None:
    assert export.read_image(tmp_path / "none", "v1") is None
    (tmp_path / "index.json").write_text("{not json")
    assert export.read_image(tmp_path, "v1") is None
    img = write_layout(tmp_path / "ok", [b"x"], "id")
    assert export.read_image(tmp_path / "ok", "v1") == img
    assert export.is_current(img, tmp_path / "ok", "id", GZ)
    assert not export.is_current(img, tmp_path / "ok", "other", GZ)
    assert not export.is_current(img, tmp_path / "ok", "id", ZST)  # zstd asked for, gzip there
    (tmp_path / "ok" / "blobs" / "sha256" / img.layers()[0].hex).write_bytes(b"xy")
    assert not export.is_current(img, tmp_path / "ok", "id", GZ)  # a blob is not whole
