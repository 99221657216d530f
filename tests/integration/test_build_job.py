"""composer as a build job: the image of recipes/composer.toml (under the test tag) builds
recipes inside a container, as the Pod of `composer job`'s template played by podman, and
pushes the layers and the image to the test registry.

- The default Pod, without privileges (a user namespace of its own, CAP_SYS_ADMIN in it),
  builds the fan-out CI recipe whole: a debootstrap base, a package install, scripts,
  restacked modules, reconcile; the image, pulled from the registry on the host, runs. The
  same Pod without CAP_SYS_ADMIN fails at its first mount.
- The privileged Pod (--privileged) builds a one-module recipe with the signing Secret; the
  image holds the module's file, in the pod's storage and as pulled from the registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from composer.cache.signing import Verifier, attachment_tag, payload_problem, read_attachment_dir
from tests.conftest import RECIPES, Containers, Registry, copy_tree
from tests.integration.helpers import HOST_LOOPBACK, start_pod, wait_pod
from tests.integration.rootless import AUTO_USERNS, reachable_folder

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
    # The privileged fallback: the test's pod shares the host's network (its registry listens on
    # the host's 127.0.0.1), which a pod in a user namespace of its own may not.
    text = containers.composer("job", str(recipe), "--image", image, "--recipe-path", "/work/inner.toml",
                               "--cache", cache, "--push", pushed, "--signing-secret", "composer-signing",
                               "--privileged", "--pod").stdout
    pod = yaml.safe_load(text)
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["containers"][0]["securityContext"] == {"privileged": True}
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


UNPRIVILEGED_REF = "localhost/fanout-unprivileged:t"


def test_the_default_pod_builds_a_debootstrap_recipe_without_privileges(
        containers: Containers, registry: Registry, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    image = containers.build_once(RECIPES / "composer-ci.toml")["image"]
    cache, pushed = f"{registry.host}/unprivileged-cache", f"{registry.host}/fanout-unprivileged:t"
    inside = {ref: ref.replace("127.0.0.1", HOST_LOOPBACK) for ref in (cache, pushed)}
    text = containers.composer("job", str(RECIPES / "fanout-ci.toml"), "--image", image,
                               "--recipe-path", "/work/fanout-ci.toml", "--cache", inside[cache],
                               "--push", inside[pushed], "--pod").stdout
    pod = yaml.safe_load(text)
    spec = pod["spec"]
    assert spec["hostUsers"] is False and "privileged" not in spec["containers"][0]["securityContext"]
    spec["containers"][0]["args"].append("--no-tls-verify")  # the test registry speaks plain HTTP
    # The recipe comes in as a team's would, read-only (docs/build-job.md), from a folder that
    # root in the pod, a stranger to the host's files, can reach.
    work = copy_tree(RECIPES, reachable_folder(tmp_path_factory, "unprivileged") / "recipes")
    spec["volumes"].append({"name": "work", "hostPath": {"path": str(work), "type": "Directory"}})
    spec["containers"][0]["volumeMounts"].append({"name": "work", "mountPath": "/work", "readOnly": True})

    code, logs, given = wait_pod(containers, start_pod(containers, pod, tmp_path))
    assert code == "0", f"the unprivileged build exited {code}:\n{logs}"
    # What it got: not privileged, CAP_SYS_ADMIN added to the default set, no device, root
    # in the pod an unprivileged user of the host, from podman's "containers" range.
    assert given["Privileged"] is False and given["CapAdd"] == ["CAP_SYS_ADMIN"], given
    assert not given.get("Devices"), given["Devices"]
    uid_maps = given["IDMappings"]["UidMap"]
    assert len(uid_maps) == 1 and uid_maps[0].startswith("0:") and not uid_maps[0].startswith("0:0:"), uid_maps
    host_root = int(uid_maps[0].split(":")[1])
    assert AUTO_USERNS[1] <= host_root < AUTO_USERNS[1] + AUTO_USERNS[2] and uid_maps[0].endswith(":65536")
    # Everything built there: a debootstrap base, a package, scripts, three restacked
    # modules and reconcile, each pushed to the cache, then the image.
    for line in ("base debootstrap:trixie", "jq", "motd", "marker", "fan-note", "reconcile", "finalize"):
        assert f"{line} " in logs and "built in" in logs, logs
    assert logs.count(", pushed") == 7 and f"push {inside[pushed]}" in logs, logs

    # The image, pulled from the registry on the host, runs: the package and the modules' files.
    containers.run("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{pushed}",
                   f"containers-storage:{UNPRIVILEGED_REF}")
    try:
        out = containers.podman("run", "--rm", "--network", "none", UNPRIVILEGED_REF, "sh", "-c",
                                "jq --version && cat /opt/marker/value && "
                                "stat -c '%U %u %a %n' /opt/marker/value /usr/bin/jq /etc/shadow").stdout
        # Owners as built: root inside the pod's namespace is root in the image, not a host ID.
        assert out.splitlines() == [out.splitlines()[0], "fanned out", "root 0 644 /opt/marker/value",
                                    "root 0 755 /usr/bin/jq", "root 0 640 /etc/shadow"], out
        assert out.startswith("jq-"), out
    finally:
        containers.podman("rmi", UNPRIVILEGED_REF, check=False)

    # The same pod without CAP_SYS_ADMIN: the user namespace alone lets buildah mount nothing.
    spec["containers"][0]["securityContext"].pop("capabilities")
    code, logs, given = wait_pod(containers, start_pod(containers, pod, tmp_path))
    assert code != "0" and not given.get("CapAdd"), logs
    assert "operation not permitted" in logs, logs
