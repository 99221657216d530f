"""The export against real buildah/skopeo/podman: a change to the last module writes one new
layer blob (plus config and manifest), an unchanged rebuild writes nothing, and the layout
and archive load into a fresh storage with the source's diff IDs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers, started_registry
from tests.unit.test_attach import validate_image

pytestmark = pytest.mark.integration

RECIPE = """\
name = "export-test"
tag = "t1"

[base]
from = "scratch"
family = "debian"

[[layers]]
module = "motd"

[[layers]]
module = "note"
"""
NOTE = 'name = "note"\nversion = "1.0.0"\ndescription = "one file"\n\n' \
       '[[files]]\nsrc = "files/note"\ndest = "/etc/note"\nmode = "0644"\n'
REF = "localhost/export-test:t1"
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under roots: (mtime_ns, size)."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def blobs(layout: Path) -> dict[str, tuple[int, int]]:
    return {Path(k).name: v for k, v in snapshot(layout / "blobs").items()}


def manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    return json.loads((layout / "blobs" / "sha256" / digest).read_text())


def fresh_storage(folder: Path) -> dict[str, str]:
    """An empty storage of its own (vfs: nothing mounted, removed with its folder)."""
    folder.mkdir(parents=True)
    conf = folder / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{folder}/root"\nrunroot = "{folder}/run"\n')
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}


def diff_ids(env: dict[str, str], ref: str) -> list[str]:
    out = subprocess.run(["buildah", "inspect", "--type", "image", ref], env=env, check=True,
                         capture_output=True, text=True).stdout
    return list(json.loads(out)["OCIv1"]["rootfs"]["diff_ids"])


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copytree(RECIPES / "layers" / "motd", tmp_path / "layers" / "motd")
    note = tmp_path / "layers" / "note"
    (note / "files").mkdir(parents=True)
    (note / "module.toml").write_text(NOTE)
    (note / "files" / "note").write_text("first\n")
    (tmp_path / "export-test.toml").write_text(RECIPE)
    return tmp_path


def test_export_writes_only_what_changed_and_round_trips(containers: Containers, project: Path,
                                                         tmp_path: Path) -> None:
    recipe = project / "export-test.toml"
    out = tmp_path / "out"
    layout, archive = out / "export-test-t1.oci", out / "export-test-t1.oci.tar"

    # --no-sbom: the layout holds the image alone here (test_sbom checks the documents attached beside it).
    first = containers.composer("build", str(recipe), "-o", str(out), "--no-sbom")
    assert f"write oci layout {layout}" in first.stderr
    assert f"write oci-archive {archive}" in first.stderr
    validate_image(layout, REF, tmp_path / "view-first")
    inspect = json.loads(containers.run("skopeo", "inspect", f"oci:{layout}:{REF}").stdout)
    assert len(inspect["Layers"]) == 4  # base, motd, note, finalize
    before, manifest_before = blobs(layout), manifest(layout)
    index_before = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"][7:]

    # Nothing changed: not one file of the layout or the archive is written again.
    files = snapshot(layout, archive)
    again = containers.composer("build", str(recipe), "-o", str(out), "--no-sbom")
    assert again.stderr.count("up to date") >= 3  # tag, layout, archive
    assert snapshot(layout, archive) == files

    # The last module changes: one new layer blob, a new config and manifest; the rest stays.
    # The build compressed its two new layers (note, finalize) as it committed them, so the
    # export at the end compresses none. The finalize layer came out as before (its blob is the
    # layout's); note's comes from the early folder, which goes after.
    (project / "layers" / "note" / "files" / "note").write_text("second\n")
    report = tmp_path / "report.json"
    changed = containers.composer("build", str(recipe), "-o", str(out), "--report", str(report), "--no-sbom")
    assert "0 layers written" in changed.stderr and "4 reused (of which 1 compressed during the build" in changed.stderr
    export = json.loads(report.read_text())["export"]  # the same, for a script or a benchmark
    assert (export["layout"]["layers_written"], export["layout"]["layers_reused"]) == (0, 4)
    assert export["early"]["layers_written"] == 1 and export["early"]["failures"] == []
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no early or staging folder
    kept, written = export["archive"]["bytes_kept"], export["archive"]["bytes_written"]
    assert kept > 0 and written > 0 and kept + written <= archive.stat().st_size
    after, manifest_after = blobs(layout), manifest(layout)
    old_layers = [layer["digest"] for layer in manifest_before["layers"]]
    new_layers = [layer["digest"] for layer in manifest_after["layers"]]
    assert [a == b for a, b in zip(old_layers, new_layers, strict=True)] == [True, True, False, True]
    added = set(after) - set(before)
    assert added == {new_layers[2][7:], manifest_after["config"]["digest"][7:],
                     json.loads((layout / "index.json").read_text())["manifests"][0]["digest"][7:]}
    assert all(after[name] == before[name] for name in set(after) & set(before))  # not rewritten
    assert set(before) - set(after) == {old_layers[2][7:], manifest_before["config"]["digest"][7:],
                                        index_before}  # the old image's own blobs are removed
    validate_image(layout, REF, tmp_path / "view-after")

    # Into fresh storages: from the layout with skopeo, from the archive with podman load.
    source = diff_ids(containers.env, REF)
    copied = fresh_storage(tmp_path / "copied")
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:{REF}", f"containers-storage:{REF}"],
                   env=copied, check=True, capture_output=True)
    assert diff_ids(copied, REF) == source
    loaded = fresh_storage(tmp_path / "loaded")
    load = subprocess.run(["podman", "load", "--quiet", "-i", str(archive)], env=loaded, check=True,
                          capture_output=True, text=True)
    assert REF in load.stdout
    assert diff_ids(loaded, REF) == source
    for env in (copied, loaded):
        subprocess.run(["buildah", "rmi", "--all", "--force"], env=env, capture_output=True)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def layer_blobs(layout: Path) -> list[tuple[str, bytes]]:
    """(media type, first bytes of the blob) of each layer of the layout's image."""
    found = []
    for layer in manifest(layout)["layers"]:
        with open(layout / "blobs" / "sha256" / layer["digest"][7:], "rb") as f:
            found.append((layer["mediaType"], f.read(4)))
    return found


def test_a_zstd_export_loads_pushes_pulls_and_switches_back_to_gzip(containers: Containers, project: Path,
                                                                    tmp_path: Path) -> None:
    recipe = project / "export-test.toml"
    out = tmp_path / "out"
    layout, archive = out / "export-test-t1.oci", out / "export-test-t1.oci.tar"
    containers.composer("build", str(recipe), "-o", str(out), "--no-sbom")
    assert all(t == GZ and head[:2] == GZIP_MAGIC for t, head in layer_blobs(layout))
    gzip_layers = {layer["digest"][7:] for layer in manifest(layout)["layers"]}

    # zstd asked for: not one gzip blob is reused (same diff IDs, other compression), all go.
    zstd = containers.composer("build", str(recipe), "-o", str(out), "--no-sbom", "--compression", "zstd",
                               "--compression-level", "3")
    assert "4 layers written" in zstd.stderr and "0 reused" in zstd.stderr
    assert all(t == ZST and head == ZSTD_MAGIC for t, head in layer_blobs(layout))
    assert not gzip_layers & set(blobs(layout))  # the gzip layers are removed (the config stays: the same)
    again = containers.composer("build", str(recipe), "-o", str(out), "--no-sbom", "--compression", "zstd")
    assert again.stderr.count("up to date") >= 3  # the level is not part of "current": the format is

    # podman 4.3 loads it; a registry takes it and podman pulls it back, the same diff IDs.
    source = diff_ids(containers.env, REF)
    loaded = fresh_storage(tmp_path / "loaded")
    subprocess.run(["podman", "load", "--quiet", "-i", str(archive)], env=loaded, check=True, capture_output=True)
    assert diff_ids(loaded, REF) == source
    # A registry of its own: c/image remembers the zstd blobs it pushed to a registry and would
    # reuse them for the session registry's cache pushes (see test_registry's zstd test).
    with started_registry(tmp_path / "registry") as registry:
        pushed = f"{registry.host}/export-test:zstd"
        containers.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{REF}",
                       f"docker://{pushed}")
        raw = json.loads(containers.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                                        f"docker://{pushed}").stdout)
        assert [layer["mediaType"] for layer in raw["layers"]] == [ZST] * 4
        pulled = fresh_storage(tmp_path / "pulled")
        subprocess.run(["podman", "pull", "--quiet", "--tls-verify=false", pushed], env=pulled, check=True,
                       capture_output=True)
        assert diff_ids(pulled, pushed) == source
    for env in (loaded, pulled):
        subprocess.run(["buildah", "rmi", "--all", "--force"], env=env, capture_output=True)

    # Back to gzip: every layer compressed again, the zstd blobs gone.
    back = containers.composer("build", str(recipe), "-o", str(out), "--no-sbom")
    assert "4 layers written" in back.stderr
    assert all(t == GZ and head[:2] == GZIP_MAGIC for t, head in layer_blobs(layout))
    validate_image(layout, REF, tmp_path / "view-back")



def test_layers_are_compressed_as_they_are_committed_and_kept_when_a_build_fails(
        containers: Containers, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    layout, early = out / "export-test-t1.oci", out / ".export-test-t1.oci.early"
    (project / "layers" / "note" / "files" / "note").write_text(f"early {tmp_path.name}\n")  # built here only
    broken = project / "layers" / "broken"
    (broken / "scripts").mkdir(parents=True)
    (broken / "module.toml").write_text('name = "broken"\nversion = "1.0.0"\ndescription = "fails"\n\n'
                                        '[[scripts]]\nrun = "scripts/fail.sh"\n')
    (broken / "scripts" / "fail.sh").write_text("exit 3\n")  # scratch has no shell: it fails either way
    (project / "broken.toml").write_text(RECIPE + '\n[[layers]]\nmodule = "broken"\n')

    # A build that fails after note's layer: what it compressed so far waits beside the
    # layout (base, motd and note, in one push when note was committed); no layout is made.
    failed = containers.composer("build", str(project / "broken.toml"), "-o", str(out), "--no-sbom", check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert not layout.exists()
    recorded = json.loads((early / "layers.json").read_text())

    # The next build compresses only its new finalize layer, and its export none at all.
    report = tmp_path / "report.json"
    containers.composer("build", str(project / "export-test.toml"), "-o", str(out), "--no-sbom",
                        "--report", str(report))
    export = json.loads(report.read_text())["export"]
    assert (export["layout"]["layers_written"], export["layout"]["layers_reused"]) == (0, 4)
    assert export["early"]["layers_written"] == 1
    assert not early.exists()
    assert sorted(recorded) == sorted(diff_ids(containers.env, REF)[:3])  # base, motd, note
    validate_image(layout, REF, tmp_path / "view")

    # The same blobs, byte for byte, as an export after the build writes.
    late = tmp_path / "late"
    containers.composer("build", str(project / "export-test.toml"), "-o", str(late), "--no-sbom",
                        "--no-early-export", "--report", str(report))
    assert json.loads(report.read_text())["export"]["layout"]["layers_written"] == 4
    assert manifest(late / "export-test-t1.oci")["layers"] == manifest(layout)["layers"]
    assert blobs(late / "export-test-t1.oci").keys() == blobs(layout).keys()
