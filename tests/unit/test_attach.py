"""SBOMs and provenance attached to the image in its OCI layout as OCI 1.1 artifacts
(composer/emit/attach.py): checked with the OCI image-spec's JSON schemas (Debian's
golang-github-opencontainers-image-spec-dev), oci-image-tool and skopeo, on a small
image layout written here byte by byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from composer.emit.attach import EMPTY_TYPE, KINDS, attach, attached, write_artifact_layout
from composer.emit.oci import INDEX_TYPE, MANIFEST_TYPE, REF_NAME, read_image

TAG = "localhost/tiny:latest"
SCHEMAS = Path("/usr/share/gocode/src/github.com/opencontainers/image-spec/schema")


def blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    folder = layout / "blobs" / "sha256"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def tiny_image(layout: Path) -> dict[str, Any]:
    """A one-layer image (a file etc/hello) as an OCI layout tagged TAG; its manifest descriptor."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        data = b"hello\n"
        info = tarfile.TarInfo("etc/hello")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(layout, config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       **blob(layout, layer)}]}).encode()
    descriptor = {"mediaType": MANIFEST_TYPE, **blob(layout, manifest)}
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [
        {**descriptor, "annotations": {REF_NAME: TAG}}]}))
    return descriptor


def documents(folder: Path, text: str = "v1") -> list[tuple[Any, Path]]:
    out = []
    for kind in KINDS:
        path = folder / f"tiny-latest.{kind.suffix}"
        path.write_text(json.dumps({"kind": kind.name, "text": text}))
        out.append((kind, path))
    return out


def schema_validator(name: str) -> jsonschema.Draft4Validator:
    """The image-spec schema `name`; its $refs name the files beside it (by their last
    path segment, whatever base URI a nested `id` gives them)."""
    if not SCHEMAS.is_dir():
        pytest.fail("needs the OCI image-spec schemas: scripts/setup-host --test installs "
                    "golang-github-opencontainers-image-spec-dev", pytrace=False)

    def retrieve(uri: str) -> Resource[Any]:
        return DRAFT4.create_resource(json.loads((SCHEMAS / uri.rsplit("/", 1)[-1]).read_text()))

    return jsonschema.Draft4Validator(json.loads((SCHEMAS / name).read_text()),
                                      registry=Registry(retrieve=retrieve))  # type: ignore[call-arg]


def validate_image(layout: Path, tag: str, view: Path) -> None:
    """oci-image-tool's validation of the image tagged tag. Its 1.0.0-rc1 matches refs by
    the annotation key of before image-spec 1.0 (org.opencontainers.ref.name), so it cannot
    pick one of several manifests: it validates a view of the layout (the same blobs) whose
    index lists that image alone (the blobs hard-linked)."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [e for e in index["manifests"] if (e.get("annotations") or {}).get(REF_NAME) == tag]
    shutil.copytree(layout / "blobs", view / "blobs", copy_function=os.link)  # hard links: the same files
    (view / "oci-layout").write_bytes((layout / "oci-layout").read_bytes())
    (view / "index.json").write_text(json.dumps({**index, "manifests": [entry]}))
    subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", f"name={tag}", str(view)],
                   check=True, capture_output=True)


@pytest.mark.needs("skopeo", "oci-image-tool")
def test_attached_documents_are_oci_artifacts_of_the_image(tmp_path: Path) -> None:
    layout = tmp_path / "tiny-latest.oci"
    image = tiny_image(layout)
    subject, artifacts = attach(layout, TAG, documents(tmp_path))
    assert subject.digest == image["digest"] and [a.kind.name for a in artifacts] == ["spdx", "cdx", "att"]

    index = json.loads((layout / "index.json").read_text())
    schema_validator("image-index-schema.json").validate(index)
    assert index["manifests"][0] == {**image, "annotations": {REF_NAME: TAG}}  # the image stays first, tagged
    by_type = {e["artifactType"]: e for e in index["manifests"][1:]}
    assert set(by_type) == {"application/spdx+json", "application/vnd.cyclonedx+json", "application/vnd.in-toto+json"}
    manifest_schema = schema_validator("image-manifest-schema.json")
    for kind, path in documents(tmp_path):
        entry = by_type[kind.media_type]
        raw = (layout / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == entry["digest"] and len(raw) == entry["size"]
        manifest = json.loads(raw)
        manifest_schema.validate(manifest)
        # OCI 1.1: the subject is the image manifest, the config the empty descriptor ({}).
        assert manifest["subject"] == image and manifest["artifactType"] == kind.media_type
        assert manifest["config"] == {"mediaType": EMPTY_TYPE, "size": 2, "digest":
                                      "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == kind.media_type and layer["annotations"] == {
            "org.opencontainers.image.title": path.name}
        assert (layout / "blobs" / "sha256" / layer["digest"][7:]).read_bytes() == path.read_bytes()

    # The image itself still reads and validates; skopeo copies each artifact, checking digests.
    validate_image(layout, TAG, tmp_path / "view")
    inspect = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{layout}:{TAG}"], check=True,
                                        capture_output=True, text=True).stdout)
    assert inspect["Digest"] == image["digest"]
    for item in artifacts:
        single = tmp_path / f"single-{item.kind.name}"
        write_artifact_layout(single, item)
        out = tmp_path / f"copied-{item.kind.name}"
        subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", f"oci:{single}", f"dir:{out}"],
                       check=True, capture_output=True)
        assert json.loads((out / "manifest.json").read_bytes())["subject"]["digest"] == image["digest"]
    assert len(attached(layout)) == 3


def test_attaching_again_writes_nothing_and_new_documents_replace_the_old(tmp_path: Path) -> None:
    layout = tmp_path / "tiny-latest.oci"
    tiny_image(layout)
    attach(layout, TAG, documents(tmp_path))
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in layout.rglob("*") if p.is_file()}
    attach(layout, TAG, documents(tmp_path))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in layout.rglob("*") if p.is_file()} == files

    attach(layout, TAG, documents(tmp_path, "v2"))
    texts = sorted(json.loads((layout / "blobs" / "sha256" / m["layers"][0]["digest"][7:]).read_text())["text"]
                   for m in attached(layout))
    assert texts == ["v2", "v2", "v2"]
    # The old documents' manifests and blobs are gone; the image's are all there.
    image = read_image(layout, TAG)
    assert image is not None
    kept = {b.hex for b in image.blobs()} | {
        d[7:] for m in attached(layout) for d in (m["layers"][0]["digest"], m["config"]["digest"])} | {
        e["digest"][7:] for e in json.loads((layout / "index.json").read_text())["manifests"]}
    assert {p.name for p in (layout / "blobs" / "sha256").iterdir()} == kept


def test_no_image_to_attach_to_is_one_clear_error(tmp_path: Path) -> None:
    from composer.errors import ComposerError

    layout = tmp_path / "tiny-latest.oci"
    tiny_image(layout)
    with pytest.raises(ComposerError, match="no image tagged localhost/other:latest"):
        attach(layout, "localhost/other:latest", documents(tmp_path))
