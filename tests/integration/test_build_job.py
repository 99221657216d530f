"""composer as a build job: the image of recipes/composer.toml (under the test tag) builds a
one-module recipe inside a container, as the Pod of `composer job`'s template played by
podman, pushes its layers and the image to the test registry, and the image it built
holds the module's file, in the pod's storage and as pulled from the registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from composer.cache.signing import Verifier, attachment_tag, payload_problem, read_attachment_dir
from tests.conftest import RECIPES, Containers, Registry

pytestmark = pytest.mark.integration

INNER_RECIPE = """\
name = "inner"
tag = "t1"

[base]
from = "scratch"
family = "debian"

[[layers]]
module = "note"
"""
NOTE_MODULE = 'name = "note"\nversion = "1.0.0"\ndescription = "one file"\n\n' \
              '[[files]]\nsrc = "files/note"\ndest = "/etc/note"\nmode = "0644"\n'
NOTE = "built inside the composer image\n"
INNER_REF = "localhost/inner:t1"
PULLED_REF = "localhost/inner-pulled:t1"


def inner_project(folder: Path) -> Path:
    (folder / "layers" / "note" / "files").mkdir(parents=True)
    (folder / "layers" / "note" / "module.toml").write_text(NOTE_MODULE)
    (folder / "layers" / "note" / "files" / "note").write_text(NOTE)
    recipe = folder / "inner.toml"
    recipe.write_text(INNER_RECIPE)
    return recipe


def host_volumes(pod: dict[str, Any], work: Path, storage: Path, signing: Path) -> dict[str, Any]:
    """The Job's volumes as host folders, so the test can look at what the build left; the
    recipe comes in at /work as a team's would (docs/build-job.md); the signing Secret is a
    folder with its three files (podman kube play has no Kubernetes Secrets)."""
    spec = pod["spec"]
    spec["volumes"] = [
        {"name": "storage", "hostPath": {"path": str(storage), "type": "Directory"}},
        {"name": "cache", "emptyDir": {}},
        {"name": "work", "hostPath": {"path": str(work), "type": "Directory"}},
        {"name": "signing", "hostPath": {"path": str(signing), "type": "Directory"}},
    ]
    spec["containers"][0]["volumeMounts"].append({"name": "work", "mountPath": "/work", "readOnly": True})
    return pod


def signing_secret(box: Containers, folder: Path) -> Path:
    """The three files of the Job's signing Secret, from a `composer keygen` pair, 0400."""
    folder.mkdir()
    (folder / "cosign.password").write_text("correct horse battery\n")
    box.composer("keygen", "--output-prefix", str(folder / "team"), "--passphrase-file",
                 str(folder / "cosign.password"))
    (folder / "team.private").rename(folder / "cosign.key")
    (folder / "team.pub").rename(folder / "cosign.pub")
    for name in ("cosign.key", "cosign.password", "cosign.pub"):
        (folder / name).chmod(0o400)
    return folder


def test_the_composer_image_builds_a_recipe_inside_a_pod_and_pushes_it(containers: Containers, registry: Registry,
                                                                      tmp_path: Path) -> None:
    image = containers.build_once(RECIPES / "composer-ci.toml")["image"]
    version = containers.podman("run", "--rm", image, "composer", "--version").stdout
    assert version.startswith("composer"), version

    recipe = inner_project(tmp_path / "work")
    cache, pushed = f"{registry.host}/inner-cache", f"{registry.host}/inner:t1"
    signing = signing_secret(containers, tmp_path / "signing")
    text = containers.composer("job", str(recipe), "--image", image, "--recipe-path", "/work/inner.toml",
                               "--cache", cache, "--push", pushed, "--signing-secret", "composer-signing",
                               "--pod").stdout
    pod = yaml.safe_load(text)
    assert pod["spec"]["automountServiceAccountToken"] is False
    args = pod["spec"]["containers"][0]["args"]
    assert args == ["build", "/work/inner.toml", "--no-archive", "--cache-from", cache, "--cache-to", cache,
                    "--push", pushed, "--sign-key", "/run/composer-signing/cosign.key",
                    "--sign-passphrase-file", "/run/composer-signing/cosign.password",
                    "--verify-key", "/run/composer-signing/cosign.pub"]
    # The test registry listens on the host's 127.0.0.1 and speaks plain HTTP.
    pod["spec"]["hostNetwork"] = True
    args.append("--no-tls-verify")
    name = f"composer-job-{uuid.uuid4().hex[:8]}"
    pod["metadata"]["name"] = name
    storage = tmp_path / "storage"
    storage.mkdir()
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(host_volumes(pod, tmp_path / "work", storage, signing), sort_keys=False))

    containers.podman("kube", "play", str(manifest))
    try:
        ctr = f"{name}-composer"
        code = containers.podman("wait", ctr, timeout=600).stdout.strip()
        logs = containers.podman("logs", ctr).stdout + containers.podman("logs", ctr).stderr
        assert code == "0", f"the build in the pod exited {code}:\n{logs}"
        assert "[1/2] note" in logs and INNER_REF in logs and f"push {pushed}" in logs, logs
        assert "warning" not in logs and logs.count(", pushed") == 3, logs  # every layer went to the cache
        assert "correct horse" not in logs
    finally:
        containers.podman("kube", "down", str(manifest), check=False)

    # The image the pod built, read on the host from the storage it left (the image's
    # default driver, the kernel's overlay, on the volume).
    flags = ["--root", str(storage / "storage"), "--runroot", str(tmp_path / "run"), "--storage-driver", "overlay"]
    work = containers.buildah(*flags, "from", "--quiet", INNER_REF).stdout.strip()
    try:
        root = Path(containers.buildah(*flags, "mount", work).stdout.strip())
        assert (root / "etc" / "note").read_text() == NOTE
        listing = json.loads(containers.buildah(*flags, "images", "--json").stdout)
        pod_image_id = next(i["id"] for i in listing if INNER_REF in (i.get("names") or ()))
    finally:
        containers.buildah(*flags, "rm", work, check=False)
        containers.buildah(*flags, "rm", "--all", check=False)
        containers.buildah(*flags, "rmi", "--all", "--force", check=False)

    # What the pod pushed, read from the host: every layer under its key, and the image.
    tags = json.loads(containers.run("skopeo", "list-tags", "--tls-verify=false", f"docker://{cache}").stdout)["Tags"]
    keys = [t for t in tags if not t.endswith(".sig")]
    assert len(keys) == 3, keys  # scratch base, note, finalize
    # ... each signed in the pod with the Secret's key, checked here with its public key.
    verifier = Verifier(str(signing / "cosign.pub"))
    for key in keys:
        digest = json.loads(containers.run("skopeo", "inspect", "--tls-verify=false",
                                           f"docker://{cache}:{key}").stdout)["Digest"]
        assert attachment_tag(digest) in tags
        copied = tmp_path / f"sig-{key[:12]}"
        containers.run("skopeo", "copy", "--quiet", "--src-tls-verify=false",
                       f"docker://{cache}:{attachment_tag(digest)}", f"dir:{copied}")
        ((payload, signature),) = read_attachment_dir(copied)
        assert verifier.verifies(payload, signature) and payload_problem(payload, digest, f"{cache}:{key}") == ""
    containers.run("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{pushed}",
                   f"containers-storage:{PULLED_REF}")
    try:
        assert containers.images()[PULLED_REF] == pod_image_id
        work = containers.buildah("from", "--quiet", PULLED_REF).stdout.strip()
        try:
            root = Path(containers.buildah("mount", work).stdout.strip())
            assert (root / "etc" / "note").read_text() == NOTE
        finally:
            containers.buildah("rm", work, check=False)
    finally:
        containers.buildah("rmi", PULLED_REF, check=False)
