"""Export an image as an OCI image layout folder (and, on request, an OCI archive) whose
cost is proportional to what changed since the last export.

c/image (buildah push, skopeo copy) compresses every layer on every export, even into a
layout that already holds the compressed blob: the source side of containers-storage only
knows a layer's uncompressed digest (its diff ID), so the layout, which stores blobs by
compressed digest, never matches. Composer therefore keeps the layout itself:

  - the layout's own manifest and config pair each layer blob with its diff ID (the index of
    reusable blobs; nothing else to keep in sync);
  - the image is pushed into a staging layout in which every known diff ID already "exists"
    as an empty placeholder file, so c/image reuses those and compresses only the new
    layers (in parallel: c/image's gzip is pgzip);
  - composer moves the new blobs and the config into the layout, writes the manifest with
    each placeholder replaced by the blob recorded for its diff ID, switches index.json
    atomically, then removes the blobs nothing references any more.

The archive (`.oci.tar`) is a plain tar of the layout with the layer blobs first, in layer
order: a later export keeps the longest unchanged prefix of the file and appends the rest,
so after a change to the last module only that layer's blob and three small documents are
written. docs/export.md has the measurements behind this choice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import commands as cmd
from composer.errors import CommandError, ComposerError
from composer.runner import Runner

LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
# The containers-storage image ID the layout was made from. Not the config digest: composer
# commits Docker-format images, which the push converts (a new config) to OCI.
SOURCE_ID = "composer.source.image-id"
DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
BLOCK = 512
SMALL = 1 << 16  # archive members up to this size are compared by content, not by name
LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
LEVELS = {"gzip": range(1, 10), "zstd": range(1, 21)}  # what c/image's compressors accept


@dataclass(frozen=True)
class Compression:
    """How an export compresses the layers it writes (docs/export.md, "Compression").

    gzip is what every consumer reads; zstd is read by podman, buildah and skopeo (c/image;
    podman 4.3 loads and pulls it, tests/integration/test_export.py), containerd 1.5 and
    Docker 23, not by older Docker. level None: c/image's default for the format."""

    format: str = "gzip"
    level: int | None = None

    def __post_init__(self) -> None:
        if self.format not in LAYER_TYPES:
            raise ComposerError(f"compression: unknown format {self.format!r}",
                                hint=f"one of {', '.join(LAYER_TYPES)}")
        levels = LEVELS[self.format]
        if self.level is not None and self.level not in levels:
            raise ComposerError(f"compression: {self.format} level {self.level} is out of range",
                                hint=f"{self.format} levels are {levels.start}-{levels.stop - 1}")

    @property
    def layer_type(self) -> str:
        return LAYER_TYPES[self.format]

    def flags(self) -> list[str]:
        """buildah push's flags for it."""
        level = [] if self.level is None else ["--compression-level", str(self.level)]
        return ["--compression-format", self.format, *level]


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Descriptor:
        return cls(str(document["mediaType"]), str(document["digest"]), int(document["size"]))

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))

    def as_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @property
    def hex(self) -> str:
        return hex_of(self.digest)


def hex_of(digest: str) -> str:
    """The file name of a blob; anything but sha256 would be a path we must not build."""
    match = DIGEST.match(digest)
    if match is None:
        raise ComposerError(f"OCI layout: unsupported digest {digest!r}", hint="only sha256 digests are written")
    return match.group(1)


def serialize(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


# ---- pure part: what the layout and the archive hold ------------------------------------


@dataclass(frozen=True)
class Image:
    """One image of a layout: its manifest (descriptor and document) and its config."""

    manifest: Descriptor
    manifest_doc: Mapping[str, Any]
    config_doc: Mapping[str, Any]
    source_id: str = ""

    @property
    def config(self) -> Descriptor:
        return Descriptor.of(self.manifest_doc["config"])

    def layers(self) -> list[Descriptor]:
        return [Descriptor.of(layer) for layer in self.manifest_doc.get("layers") or ()]

    def diff_ids(self) -> list[str]:
        return [str(d) for d in (self.config_doc.get("rootfs") or {}).get("diff_ids") or ()]

    def layers_by_diff_id(self) -> list[tuple[str, Descriptor]]:
        layers, diff_ids = self.layers(), self.diff_ids()
        if len(layers) != len(diff_ids):
            raise ComposerError(
                f"OCI image {self.manifest.digest}: {len(layers)} layers but {len(diff_ids)} diff_ids in its config"
            )
        return list(zip(diff_ids, layers, strict=True))

    def blobs(self) -> list[Descriptor]:
        """Every blob the image needs, layers first in order, each once; the manifest last."""
        seen: dict[str, Descriptor] = {}
        for blob in (*self.layers(), self.config, self.manifest):
            seen.setdefault(blob.digest, blob)
        return list(seen.values())


def reusable_layers(image: Image | None, sizes: Mapping[str, int], layer_type: str) -> dict[str, Descriptor]:
    """diff ID -> blob of each layer of the layout's image whose blob file is there whole
    and compressed as asked (layer_type, a media type).

    sizes: file name (hex digest) -> size of the blob files present. A blob of the wrong
    size (an interrupted copy) is not reused; nor is a gzip blob when zstd is asked for.
    """
    if image is None:
        return {}
    found: dict[str, Descriptor] = {}
    for diff_id, layer in image.layers_by_diff_id():
        if sizes.get(layer.hex) == layer.size and layer.media_type == layer_type:
            found.setdefault(diff_id, layer)
    return found


@dataclass(frozen=True)
class Merged:
    manifest: bytes
    new_layers: tuple[Descriptor, ...]
    reused_layers: tuple[Descriptor, ...]


def merge_manifest(staged: Image, placeholders: Mapping[str, Descriptor]) -> Merged:
    """The manifest to publish: the staged one with every placeholder layer (listed by its
    diff ID, as c/image reused it) replaced by the blob recorded for that diff ID."""
    layers: list[dict[str, Any]] = []
    new: list[Descriptor] = []
    reused: list[Descriptor] = []
    for diff_id, layer in staged.layers_by_diff_id():
        known = placeholders.get(diff_id)
        if known is not None and layer.digest == diff_id:
            layers.append(known.as_dict())
            reused.append(known)
        else:
            layers.append(layer.as_dict())
            new.append(layer)
    document = {**staged.manifest_doc, "layers": layers}
    return Merged(serialize(document), tuple(new), tuple(reused))


def index_document(manifest: Descriptor, tag: str, source_id: str) -> dict[str, Any]:
    annotations = {REF_NAME: tag, SOURCE_ID: source_id} if source_id else {REF_NAME: tag}
    return {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{**manifest.as_dict(), "annotations": annotations}],
    }


def find_manifest(index: Mapping[str, Any], tag: str) -> tuple[Descriptor, str] | None:
    """The manifest tagged tag and the source image ID recorded with it ("" if none)."""
    for entry in index.get("manifests") or ():
        annotations = entry.get("annotations") or {}
        if annotations.get(REF_NAME) == tag:
            return Descriptor.of(entry), str(annotations.get(SOURCE_ID, ""))
    return None


def garbage(present: Iterable[str], keep: Iterable[str]) -> list[str]:
    """Blob files to remove: every file name under blobs/sha256 that no kept blob uses."""
    kept = set(keep)
    return sorted(name for name in present if name not in kept)


@dataclass(frozen=True)
class Entry:
    """One member of the archive: a folder, a blob file of the layout, or small bytes."""

    name: str
    size: int = 0
    blob: str = ""  # hex digest of the layout's blob file
    data: bytes | None = None

    @property
    def is_dir(self) -> bool:
        return not self.blob and self.data is None


@dataclass(frozen=True)
class Member:
    """One member found in an existing archive, with where its data ends in the file."""

    name: str
    size: int
    end: int
    is_dir: bool
    data: bytes | None = None  # read for small members only


def archive_entries(image: Image, tag: str) -> list[Entry]:
    """Blobs first (layers in order, the parts that change least first), documents last."""
    entries = [Entry("blobs"), Entry("blobs/sha256")]
    entries += [Entry(f"blobs/sha256/{blob.hex}", blob.size, blob=blob.hex) for blob in image.blobs()]
    index = serialize(index_document(image.manifest, tag, image.source_id))
    entries += [Entry("index.json", len(index), data=index), Entry("oci-layout", len(LAYOUT_VERSION),
                                                                       data=LAYOUT_VERSION)]
    return entries


def same_member(member: Member, entry: Entry) -> bool:
    if member.name != entry.name or member.is_dir != entry.is_dir or member.size != entry.size:
        return False
    if entry.data is not None:
        return member.data == entry.data
    return True  # blob names are their content's digest


def kept_prefix(members: Sequence[Member], entries: Sequence[Entry]) -> int:
    """How many leading entries the archive already holds as they should be."""
    count = 0
    for member, entry in zip(members, entries, strict=False):
        if not same_member(member, entry):
            break
        count += 1
    return count


def padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


# ---- effectful part ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutResult:
    path: Path
    tag: str
    manifest: str
    up_to_date: bool
    new_layers: tuple[str, ...] = ()  # blobs compressed and written by this export
    reused_layers: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    written_bytes: int = 0


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    up_to_date: bool
    kept_bytes: int
    written_bytes: int


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / hex_of(digest)


def blob_sizes(layout: Path) -> dict[str, int]:
    folder = layout / "blobs" / "sha256"
    if not folder.is_dir():
        return {}
    return {entry.name: entry.stat().st_size for entry in os.scandir(folder) if entry.is_file()}


def read_image(layout: Path, tag: str) -> Image | None:
    """The image tagged tag in layout, or None when there is none or it is unreadable
    (the export then starts over: the folder is composer's output, not a source)."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
        found = find_manifest(index, tag)
        if found is None:
            return None
        manifest, source_id = found
        manifest_doc = json.loads(blob_path(layout, manifest.digest).read_bytes())
        config = Descriptor.of(manifest_doc["config"])
        config_doc = json.loads(blob_path(layout, config.digest).read_bytes())
        image = Image(manifest, manifest_doc, config_doc, source_id)
        image.layers_by_diff_id()
        return image
    except (OSError, ValueError, KeyError, TypeError, ComposerError):
        return None


def image_id(runner: Runner, storage: cmd.Storage, source: str) -> str:
    argv = cmd.buildah(storage, "inspect", "--type", "image", "--format", "{{.FromImageID}}", source)
    return runner.output(argv).strip()


def is_current(image: Image | None, layout: Path, source_id: str, layer_type: str) -> bool:
    """The layout already holds source (recorded with its manifest), its layers compressed
    as asked (layer_type), and every blob it references is there whole."""
    if image is None or not source_id or image.source_id != source_id:
        return False
    if any(layer.media_type != layer_type for layer in image.layers()):
        return False
    sizes = blob_sizes(layout)
    return all(sizes.get(blob.hex) == blob.size for blob in image.blobs())


def write_atomic(path: Path, data: bytes) -> None:
    """path holds data whole or not at all; two processes writing it never mix their bytes."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def export_layout(runner: Runner, storage: cmd.Storage, source: str, layout: Path, tag: str,
                  compression: Compression = Compression()) -> LayoutResult:
    """Make layout hold image source (from containers-storage) as tag, compressing only the
    layers whose diff ID it does not hold yet (compressed as asked). Writes nothing when it
    is up to date."""
    current = read_image(layout, tag)
    source_id = image_id(runner, storage, source)
    try:
        if is_current(current, layout, source_id, compression.layer_type) and current is not None:
            return LayoutResult(layout, tag, current.manifest.digest, up_to_date=True)
        known = reusable_layers(current, blob_sizes(layout), compression.layer_type)
        early = early_layers(layout, compression.layer_type)
        staging = layout.with_name(f".{layout.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staged = stage(runner, storage, source, staging, tag, {**early, **known}, compression)
            return publish(layout, staging, staged, tag, known, source_id, early)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        # What the image uses was moved into the layout; the rest is not needed.
        shutil.rmtree(early_folder(layout), ignore_errors=True)


# ---- early export: a build's layers compressed as they are committed ----------------------
#
# While a build goes on, each layer it commits can already be compressed into a folder
# beside the layout, `.<layout>.early`, holding the blobs and `layers.json` (diff ID -> blob
# descriptor). The export at the end offers those as known layers, like the layout's own,
# and moves the ones the image uses into the layout. The layout itself is not touched before
# that: until an export publishes, it describes the previous image, whole.

EARLY_RECORD = "layers.json"


def early_folder(layout: Path) -> Path:
    return layout.with_name(f".{layout.name}.early")


def early_layers(layout: Path, layer_type: str) -> dict[str, Descriptor]:
    """diff ID -> blob of the early folder's layers whose blob is there whole and
    compressed as asked; {} when there is none or its record is unreadable."""
    folder = early_folder(layout)
    try:
        record = json.loads((folder / EARLY_RECORD).read_bytes())
        found = {str(diff_id): Descriptor.of(blob) for diff_id, blob in record.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    sizes = blob_sizes(folder)
    return {diff_id: blob for diff_id, blob in found.items()
            if DIGEST.match(diff_id) and DIGEST.match(blob.digest)
            and sizes.get(blob.hex) == blob.size and blob.media_type == layer_type}


@dataclass(frozen=True)
class EarlyResult:
    new_layers: tuple[Descriptor, ...]  # compressed and written by this early export

    @property
    def written_bytes(self) -> int:
        return sum(blob.size for blob in self.new_layers)


def export_early(runner: Runner, storage: cmd.Storage, source: str, layout: Path, tag: str,
                 compression: Compression = Compression()) -> EarlyResult:
    """Compress into the early folder beside layout the layers of source (an image in
    containers-storage) that neither the layout's image nor the early folder holds yet."""
    folder = early_folder(layout)
    early = early_layers(layout, compression.layer_type)
    known = {**early, **reusable_layers(read_image(layout, tag), blob_sizes(layout), compression.layer_type)}
    staging = layout.with_name(f".{layout.name}.early-staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staged = stage(runner, storage, source, staging, tag, known, compression)
        new = [(diff_id, blob) for diff_id, blob in staged.layers_by_diff_id()
               if not (diff_id in known and blob.digest == diff_id)]
        blobs = folder / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        for _, blob in new:  # blobs first: a recorded layer is always there whole
            (staging / "blobs" / "sha256" / blob.hex).replace(blobs / blob.hex)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if new:
        record = {**{d: b.as_dict() for d, b in early.items()}, **{d: b.as_dict() for d, b in new}}
        write_atomic(folder / EARLY_RECORD, serialize(record))
    return EarlyResult(tuple(blob for _, blob in new))


def stage(runner: Runner, storage: cmd.Storage, source: str, staging: Path, tag: str,
          known: Mapping[str, Descriptor], compression: Compression) -> Image:
    """Push source into a fresh staging layout where every known diff ID exists as an empty
    file: c/image's layout destination reuses a blob whose file exists, so it compresses
    and writes only the other layers."""
    blobs = staging / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (staging / "oci-layout").write_bytes(LAYOUT_VERSION)
    for diff_id in known:
        (blobs / hex_of(diff_id)).touch()
    argv = cmd.buildah(storage, "push", "--quiet", "--format", "oci", *compression.flags(), source,
                       f"oci:{staging}:{tag}")
    try:
        runner.run(argv)
    except CommandError as e:
        raise ComposerError(f"export {source} to an OCI layout: {e.tail(5)}") from None
    image = read_image(staging, tag)
    if image is None:
        raise ComposerError(f"export {source}: buildah push wrote no readable image to {staging}")
    return image


def publish(layout: Path, staging: Path, staged: Image, tag: str, known: Mapping[str, Descriptor],
            source_id: str, early: Mapping[str, Descriptor] | None = None) -> LayoutResult:
    """known: the layout's own reusable layers; early: the early folder's (moved in)."""
    early = early or {}
    merged = merge_manifest(staged, {**early, **known})
    manifest = Descriptor.for_bytes(MANIFEST_TYPE, merged.manifest)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    written = 0
    # New blobs first, the manifest next, index.json last: until index.json is replaced
    # the layout still describes the previous image, whole.
    moves = [(staging, blob) for blob in (*merged.new_layers, staged.config)]
    moves += [(early_folder(layout), blob) for blob in merged.reused_layers if blob in early.values()]
    for folder, blob in moves:
        target = blobs / blob.hex
        if target.is_file() and target.stat().st_size == blob.size:
            continue
        (folder / "blobs" / "sha256" / blob.hex).replace(target)
        written += blob.size if folder == staging else 0
    write_atomic(blobs / manifest.hex, merged.manifest)
    if not (layout / "oci-layout").is_file():
        write_atomic(layout / "oci-layout", LAYOUT_VERSION)
    write_atomic(layout / "index.json", serialize(index_document(manifest, tag, source_id)))
    image = Image(manifest, json.loads(merged.manifest), staged.config_doc)
    removed = garbage(blob_sizes(layout), (blob.hex for blob in image.blobs()))
    for name in removed:
        (blobs / name).unlink(missing_ok=True)
    return LayoutResult(
        layout, tag, manifest.digest, up_to_date=False,
        new_layers=tuple(b.digest for b in merged.new_layers),
        reused_layers=tuple(b.digest for b in merged.reused_layers),
        removed=tuple(removed), written_bytes=written + manifest.size,
    )


def write_one_manifest_layout(folder: Path, blobs: Iterable[bytes], manifest: bytes, ref: str = "") -> None:
    """A layout holding one manifest and its blobs, stored by content: what skopeo copies to a
    registry byte for byte (an artifact, a signature attachment)."""
    for data in (*blobs, manifest):
        target = folder / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (folder / "oci-layout").write_bytes(LAYOUT_VERSION)
    entry = Descriptor.for_bytes(MANIFEST_TYPE, manifest).as_dict() | ({"annotations": {REF_NAME: ref}} if ref else {})
    (folder / "index.json").write_bytes(serialize({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]}))


def read_members(path: Path) -> list[Member]:
    """The members of an existing archive, up to the first one that is not whole."""
    if not path.is_file():
        return []
    total = path.stat().st_size
    members: list[Member] = []
    with contextlib.suppress(tarfile.TarError, OSError, EOFError), tarfile.open(path, "r:") as tar:
        for info in tar:
            end = info.offset_data + padded(info.size)
            if end > total:
                break
            data = None
            if info.isfile() and info.size <= SMALL:
                handle = tar.extractfile(info)
                data = handle.read() if handle else None
            members.append(Member(info.name.rstrip("/"), info.size, end, info.isdir(), data))
    return members


def header(entry: Entry) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.mtime = 0  # the same image gives the same archive
    if entry.is_dir:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = entry.size, 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_oci_archive(layout: Path, tag: str, path: Path) -> ArchiveResult:
    """The layout as an OCI archive at path: the unchanged leading members stay, the rest
    is appended. Blobs are copied as they are (no recompression)."""
    image = read_image(layout, tag)
    if image is None:
        raise ComposerError(f"write OCI archive {path}: {layout} holds no image tagged {tag}")
    entries = archive_entries(image, tag)
    members = read_members(path)
    keep = kept_prefix(members, entries)
    offset = members[keep - 1].end if keep else 0
    if keep == len(entries) and path.stat().st_size == offset + 2 * BLOCK:
        return ArchiveResult(path, True, offset, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    # Changed in place, not beside: the unchanged prefix is most of the file. An interrupted
    # write leaves a prefix of whole members that the next export keeps and completes.
    with open(path, "r+b" if path.is_file() else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        for entry in entries[keep:]:
            out.write(header(entry))
            if entry.data is not None:
                out.write(entry.data)
            elif entry.blob:
                with open(layout / "blobs" / "sha256" / entry.blob, "rb") as blob:
                    shutil.copyfileobj(blob, out, 1 << 20)
            out.write(b"\0" * (padded(entry.size) - entry.size))
            written += entry.size
        out.write(b"\0" * (2 * BLOCK))  # end of archive
    return ArchiveResult(path, False, offset, written)
