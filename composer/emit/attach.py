"""The SBOMs and the provenance statement attached to the image they describe, as OCI 1.1
artifacts: one manifest per document, its `subject` the image manifest, its config the
empty descriptor, the document its one blob (docs/sbom.md).

In the build's OCI layout they are listed in index.json after the image (a layout has no
referrers API: a reader finds them by their subject, or by the name each carries, the tag a
push gives it). A push puts each one under the tag
cosign's scheme gives it, `sha256-<image manifest hex>.<kind>`: a registry with the OCI
1.1 referrers API also lists it under the image (the manifest's subject), one without it
(Debian's docker-registry 2.8) still serves it by that tag."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.emit.oci import (
    INDEX_TYPE,
    MANIFEST_TYPE,
    REF_NAME,
    Descriptor,
    blob_path,
    blob_sizes,
    garbage,
    read_image,
    serialize,
    write_atomic,
    write_one_manifest_layout,
)
from composer.errors import ComposerError

# The OCI 1.1 empty descriptor: an artifact's config when it has nothing to configure.
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class Kind:
    """One kind of document attached: its tag suffix, media type and file suffix in build/."""

    name: str
    media_type: str
    suffix: str


KINDS = (
    Kind("spdx", "application/spdx+json", "spdx.json"),
    Kind("cdx", "application/vnd.cyclonedx+json", "cdx.json"),
    Kind("att", "application/vnd.in-toto+json", "provenance.json"),  # cosign names attestations .att
)


@dataclass(frozen=True)
class Artifact:
    kind: Kind
    manifest: bytes  # the artifact manifest, exactly as written and pushed
    blobs: tuple[tuple[Descriptor, bytes], ...]  # its config and its document

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.for_bytes(MANIFEST_TYPE, self.manifest)

    def tag(self, subject: Descriptor) -> str:
        """Where a push puts it: sha256-<image manifest hex>.<kind>."""
        return f"sha256-{subject.hex}.{self.kind.name}"


def artifact(kind: Kind, document: bytes, title: str, subject: Descriptor) -> Artifact:
    """The artifact manifest of one document, its subject the image manifest."""
    config = Descriptor.for_bytes(EMPTY_TYPE, EMPTY)
    blob = Descriptor.for_bytes(kind.media_type, document)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": kind.media_type,
        "config": config.as_dict(),
        "layers": [{**blob.as_dict(), "annotations": {TITLE: title}}],
        "subject": subject.as_dict(),
    }
    return Artifact(kind, serialize(manifest), ((config, EMPTY), (blob, document)))


def documents(output_dir: Path, stem: str) -> list[tuple[Kind, Path]]:
    """The documents of a build in output_dir that exist, by kind."""
    return [(kind, path) for kind in KINDS if (path := output_dir / f"{stem}.{kind.suffix}").is_file()]


def attach(layout: Path, tag: str, files: Sequence[tuple[Kind, Path]]) -> tuple[Descriptor, list[Artifact]]:
    """Put the documents into the layout beside the image tagged tag, replacing what was
    attached before; the image manifest and the artifacts. Blobs first, index.json last
    (atomically): until then the layout is the one before, whole."""
    image = read_image(layout, tag)
    if image is None:
        raise ComposerError(f"{layout}: no image tagged {tag} to attach the SBOMs to",
                            hint="build again without --no-archive")
    subject = image.manifest
    artifacts = [artifact(kind, path.read_bytes(), path.name, subject) for kind, path in files]
    for item in artifacts:
        for descriptor, data in (*item.blobs, (item.descriptor, item.manifest)):
            target = blob_path(layout, descriptor.digest)
            if not (target.is_file() and target.stat().st_size == descriptor.size):
                write_atomic(target, data)
    index = json.loads((layout / "index.json").read_bytes())
    image_entry = next(e for e in index["manifests"] if e.get("digest") == subject.digest)  # read_image found it
    # Each is named as a push tags it, so `skopeo copy oci:LAYOUT:sha256-<hex>.spdx` finds it.
    entries = [image_entry] + [{**a.descriptor.as_dict(), "artifactType": a.kind.media_type,
                                "annotations": {REF_NAME: a.tag(subject)}} for a in artifacts]
    new_index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries}
    if new_index != index:
        write_atomic(layout / "index.json", serialize(new_index))
    keep = [b.hex for b in image.blobs()]
    for item in artifacts:
        keep += [item.descriptor.hex, *(descriptor.hex for descriptor, _ in item.blobs)]
    for name in garbage(blob_sizes(layout), keep):
        (layout / "blobs" / "sha256" / name).unlink(missing_ok=True)
    return subject, artifacts


def attached(layout: Path) -> list[dict[str, Any]]:
    """The artifact manifests index.json lists (with their subject), as written."""
    index = json.loads((layout / "index.json").read_bytes())
    out = []
    for entry in index.get("manifests") or ():
        if entry.get("artifactType"):
            out.append(json.loads(blob_path(layout, entry["digest"]).read_bytes()))
    return out


def write_artifact_layout(folder: Path, item: Artifact) -> None:
    """A layout holding only this artifact, tagged `artifact`: what skopeo copies to the
    registry (with --preserve-digests, so the pushed manifest is this one, byte for byte)."""
    write_one_manifest_layout(folder, (data for _, data in item.blobs), item.manifest, "artifact")
