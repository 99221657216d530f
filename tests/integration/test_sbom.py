"""The SBOMs `composer build` writes, against what the built image really holds: every
package dpkg-query, the venv's pip and npm list is in them with the same version and the
module that brought it; they validate against the official schemas; `composer why` names
the module and the Depends chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from composer.emit.attach import KINDS
from tests.conftest import RECIPES, Containers, Registry
from tests.unit.test_attach import validate_image
from tests.unit.test_sbom import SCHEMAS, cyclonedx_validator

pytestmark = pytest.mark.integration


def documents(build: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    out = Path(build["output"])
    stem = next(p.name for p in out.glob("*.spdx.json")).removesuffix(".spdx.json")
    return (json.loads((out / f"{stem}.spdx.json").read_text()),
            json.loads((out / f"{stem}.cdx.json").read_text()))


def in_image(box: Containers, image: str, script: str) -> str:
    return box.podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script).stdout


def by_purl_type(cdx: dict[str, Any], kind: str) -> dict[tuple[str, str], list[str]]:
    """(name, version) -> modules, for one purl type."""
    out: dict[tuple[str, str], list[str]] = {}
    for c in cdx["components"]:
        if c["purl"].startswith(f"pkg:{kind}/"):
            modules = [p["value"] for p in c["properties"] if p["name"] == "composer:module"]
            out.setdefault((c["name"], c["version"]), []).extend(modules)
    return out


def fresh(containers: Containers, recipe: Path, out: Path) -> dict[str, Any]:
    """The recipe built (cached) into an output folder of this test's own, and its image by
    ID: other tests build copies of these recipes under the same name and output folder."""
    containers.build_once(recipe)
    build = containers.build(recipe, "--no-archive", "-o", str(out))
    build["output"] = str(out)
    build["image"] = build["image_id"]
    return build


def test_core_sbom_covers_every_debian_package_with_its_module(containers: Containers, tmp_path: Path) -> None:
    build = fresh(containers, RECIPES / "core-test.toml", tmp_path / "out")
    spdx, cdx = documents(build)
    assert sorted(str(e) for e in Draft7Validator(json.loads((SCHEMAS / "spdx-2.3.schema.json").read_text()))
                  .iter_errors(spdx)) == []
    assert sorted(str(e) for e in cyclonedx_validator().iter_errors(cdx)) == []
    installed = in_image(containers, build["image"],
                         "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' | grep ' ii'")
    dpkg = {tuple(line.split()[:2]) for line in installed.splitlines()}
    debs = by_purl_type(cdx, "deb")
    assert len(dpkg) > 50
    assert set(debs) == dpkg  # 0 missing, 0 differing, nothing extra
    assert debs[next(k for k in debs if k[0] == "jq")] == ["jq"]
    assert debs[next(k for k in debs if k[0] == "libc6")] == ["base debootstrap:trixie"]
    assert len(spdx["packages"]) == len(cdx["components"]) + 1  # + the image itself
    provenance = json.loads(next(Path(build["output"]).glob("*.provenance.json")).read_text())
    assert provenance["subject"][0]["digest"]["sha256"].startswith(build["image_id"].removeprefix("sha256:"))


def test_why_names_the_module_and_the_chain(containers: Containers) -> None:
    containers.build_once(RECIPES / "core-test.toml")
    out = containers.composer("why", "libonig5", str(RECIPES / "core-test.toml")).stdout.splitlines()
    assert out[0].startswith("libonig5 ") and "brought by jq (layer " in out[0]
    assert out[1] == "  jq -> libjq1 -> libonig5"
    missing = containers.composer("why", "no-such-package", str(RECIPES / "core-test.toml"), check=False)
    assert missing.returncode == 1 and "no-such-package: not in localhost/composer-core-test:test" in missing.stderr


def test_tools_sbom_covers_the_venv_and_npm_globals(containers: Containers, tmp_path: Path) -> None:
    build = fresh(containers, RECIPES / "tools-ci.toml", tmp_path / "out")
    _, cdx = documents(build)
    pip = json.loads(in_image(containers, build["image"], "/opt/venv/bin/pip list --format json 2>/dev/null"))
    pypi = by_purl_type(cdx, "pypi")
    venv = {(p["name"].lower().replace("_", "-").replace(".", "-"), p["version"]) for p in pip}
    assert venv and venv <= set(pypi), sorted(venv - set(pypi))[:10]
    assert all(pypi[k] == ["python"] for k in venv), {k: pypi[k] for k in venv if pypi[k] != ["python"]}
    npm = json.loads(in_image(containers, build["image"], "npm ls -g --all --json 2>/dev/null"))
    listed: set[tuple[str, str]] = set()

    def walk(deps: dict[str, Any]) -> None:
        for name, info in deps.items():
            if "version" in info:
                listed.add((name, info["version"]))
            walk(info.get("dependencies", {}))

    walk(npm.get("dependencies", {}))
    npms = by_purl_type(cdx, "npm")
    assert {"typescript", "ts-node"} <= {n for n, _ in listed}
    assert listed <= set(npms), sorted(listed - set(npms))[:10]
    assert npms[next(k for k in npms if k[0] == "typescript")] == ["node"]


def test_the_layout_and_a_push_carry_the_sboms_and_provenance(containers: Containers, registry: Registry,
                                                               tmp_path: Path) -> None:
    """Attached as OCI 1.1 artifacts of the image: in the build's layout (listed beside the
    image, named by their tag) and in the registry under sha256-<hex>.<kind>, fetched back
    here byte for byte, their subject the manifest the registry serves for the image."""
    recipe = RECIPES / "core-test.toml"
    containers.build_once(recipe)
    out, dest = tmp_path / "out", f"{registry.host}/core-sbom:1.0"
    result = containers.composer("build", str(recipe), "-o", str(out), "--no-oci-archive", "--push", dest,
                                 "--no-tls-verify")
    layout = next(out.glob("*.oci"))
    stem = layout.name.removesuffix(".oci")
    files = {kind.name: out / f"{stem}.{kind.suffix}" for kind in KINDS}
    assert "attached spdx, cdx, att to sha256:" in result.stderr, result.stderr

    index = json.loads((layout / "index.json").read_text())
    image = index["manifests"][0]
    validate_image(layout, image["annotations"]["org.opencontainers.image.ref.name"], tmp_path / "view")
    for kind in KINDS:
        name = f"sha256-{image['digest'][7:]}.{kind.name}"
        copied = tmp_path / f"layout-{kind.name}"
        containers.run("skopeo", "copy", "--quiet", "--preserve-digests", f"oci:{layout}:{name}", f"dir:{copied}")
        manifest = json.loads((copied / "manifest.json").read_text())
        assert manifest["subject"]["digest"] == image["digest"] and manifest["artifactType"] == kind.media_type
        assert (copied / manifest["layers"][0]["digest"][7:]).read_bytes() == files[kind.name].read_bytes()

    pushed = json.loads(containers.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dest}").stdout)
    digest = json.loads(containers.run("skopeo", "inspect", "--tls-verify=false", f"docker://{dest}").stdout)["Digest"]
    assert pushed["layers"]  # the image itself
    for kind in KINDS:
        fetched = tmp_path / f"registry-{kind.name}"
        containers.run("skopeo", "copy", "--quiet", "--src-tls-verify=false",
                       f"docker://{registry.host}/core-sbom:sha256-{digest[7:]}.{kind.name}", f"dir:{fetched}")
        manifest = json.loads((fetched / "manifest.json").read_text())
        assert manifest["subject"]["digest"] == digest, kind
        assert (fetched / manifest["layers"][0]["digest"][7:]).read_bytes() == files[kind.name].read_bytes()
    spdx = json.loads(files["spdx"].read_text())
    assert any(p["name"] == "jq" for p in spdx["packages"])

    # `composer push` of the built image carries them too when they are its own (the
    # provenance names the image), and says so when the folder holds none.
    again = f"{registry.host}/core-sbom:again"
    pushed_again = containers.composer("push", str(recipe), again, "-o", str(out), "--no-tls-verify")
    assert "with sha256-" in pushed_again.stdout and ".spdx" in pushed_again.stdout, pushed_again.stdout
    bare = containers.composer("push", str(recipe), f"{registry.host}/core-sbom:bare", "-o", str(tmp_path / "none"),
                               "--no-tls-verify")
    assert "warning: no SBOMs of this image in" in bare.stderr, bare.stderr
