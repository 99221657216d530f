"""The signed registry cache against a real registry (docker-registry on 127.0.0.1): what a
party without the team's key can push, and what a build with --verify-key does with it.
Each attack is performed here; every forged entry sits on the right parent with the right
key label, so only the check under test stands between it and the build."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from composer.cache.registry import attachment_tag, sign_pushed
from composer.cache.signing import Signer, Verifier, payload_problem, read_attachment_dir
from composer.runner import Runner
from tests.conftest import Containers, Registry
from tests.integration.test_registry import CORE, HTTP, build, by_module, other_machine

pytestmark = pytest.mark.integration

FORGED = "/etc/forged-by-a-pusher"


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    passphrase: Path

    def sign_args(self) -> tuple[str, ...]:
        return ("--sign-key", str(self.private), "--sign-passphrase-file", str(self.passphrase))


def keygen(box: Containers, folder: Path, name: str) -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    passphrase = folder / f"{name}.passphrase"
    passphrase.write_text(f"correct horse {name}\n")
    passphrase.chmod(0o600)
    box.composer("keygen", "--output-prefix", str(folder / name), "--passphrase-file", str(passphrase))
    return KeyPair(folder / f"{name}.private", folder / f"{name}.pub", passphrase)


@pytest.fixture(scope="module")
def team(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return keygen(containers, tmp_path_factory.mktemp("keys"), "team")


@pytest.fixture(scope="module")
def intruder(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A key pair the team never trusted: the pusher's own."""
    return keygen(containers, tmp_path_factory.mktemp("intruder-keys"), "intruder")


def signed_cache(containers: Containers, registry: Registry, team: KeyPair, name: str) -> str:
    """A fresh repository every layer of the core recipe is pushed and signed to."""
    repo = f"{registry.host}/{name}"
    containers.build_once(CORE)
    report, _ = build(containers, CORE, "--cache-to", repo, HTTP, *team.sign_args())
    assert all(layer["pushed"] for layer in report["layers"]), report
    return repo


@pytest.fixture
def fresh(containers: Containers, tmp_path: Path) -> Iterator[Containers]:
    with other_machine(containers, tmp_path / "machine") as box:
        yield box


def registry_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: registry cache")]


def layer_keys(containers: Containers) -> dict[str, str]:
    return {layer["module"]: layer["key"] for layer in containers.build_once(CORE)["layers"]}


def forge(box: Containers, parent_key: str, key: str, repo: str) -> str:
    """What a pusher without the key can do: an image on parent_key's image, with key's label
    and a file of its own, pushed under key's tag. Returns its manifest digest."""
    ctr = box.buildah("from", "--pull-never", f"localhost/composer-cache:{parent_key}").stdout.strip()
    try:
        marker = box.root / "forged"
        marker.write_text("not what the team built\n")
        box.buildah("copy", ctr, str(marker), FORGED)
        box.buildah("config", "--label", f"io.composer.key={key}", ctr)
        box.buildah("commit", "--quiet", "--format", "docker", ctr, f"localhost/forged:{key[:16]}")
    finally:
        box.buildah("rm", ctr, check=False)
    digest_file = box.root / "forged.digest"
    box.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--digestfile", str(digest_file),
            f"containers-storage:localhost/forged:{key[:16]}", f"docker://{repo}:{key}")
    return digest_file.read_text().strip()


def has_forged_file(box: Containers, image: str) -> bool:
    result = box.podman("run", "--rm", "--network", "none", "--entrypoint", "cat", image, FORGED, check=False)
    return result.returncode == 0


def test_signed_entries_are_pulled_and_are_the_image_built_here(containers: Containers, registry: Registry,
                                                                team: KeyPair, fresh: Containers) -> None:
    repo = signed_cache(containers, registry, team, "signed-cache")
    tags = set(json.loads(containers.run("skopeo", "list-tags", "--tls-verify=false",
                                         f"docker://{repo}").stdout)["Tags"])
    assert sum(1 for t in tags if t.endswith(".sig")) == 6  # one signature beside each layer
    report, stderr = build(fresh, CORE, "--cache-from", repo, "--verify-key", str(team.public), HTTP)
    assert [layer["cache"] for layer in report["layers"]] == ["pulled"] * 6, stderr
    assert fresh.images()[report["image"]] == containers.images()[report["image"]]  # same image ID
    assert registry_warnings(stderr) == [], stderr
    # `composer push` signs the image it pushes, beside it in its repository, and the SBOMs and
    # provenance it pushes beside the image (fresh's build wrote them, for this very image).
    release = f"{registry.host}/core-signed:1.0"
    pushed = fresh.composer("push", str(CORE), release, HTTP, *team.sign_args(), "-o", str(fresh.root / "out"))
    assert ".spdx" in pushed.stdout, pushed.stdout + pushed.stderr
    digest = json.loads(containers.run("skopeo", "inspect", "--tls-verify=false", f"docker://{release}").stdout)["Digest"]
    sbom = f"{registry.host}/core-signed:sha256-{digest[7:]}.spdx"
    raw = containers.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{sbom}").stdout.encode()
    sbom_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    for what, signed, reference in (("image", digest, release), ("SBOM", sbom_digest, sbom)):
        copied = fresh.root / f"release-signature-{what}"
        containers.run("skopeo", "copy", "--quiet", "--src-tls-verify=false",
                       f"docker://{registry.host}/core-signed:{attachment_tag(signed)}", f"dir:{copied}")
        ((payload, signature),) = read_attachment_dir(copied)
        assert Verifier(str(team.public)).verifies(payload, signature), what
        assert payload_problem(payload, signed, reference) == "", what


def test_a_forged_finalize_is_used_without_verify_key_and_never_with_it(
        containers: Containers, registry: Registry, team: KeyPair, intruder: KeyPair, fresh: Containers) -> None:
    """The attack of issue 19: right key tag, right label, on the right parent, other content;
    pushed unsigned, then signed with the pusher's own key."""
    repo = signed_cache(containers, registry, team, "forged-cache")
    keys = layer_keys(containers)
    final, below = keys["finalize"], keys["marker"]
    digest = forge(containers, below, final, repo)

    # Without --verify-key the registry is trusted as before: the forgery is the image.
    report, stderr = build(fresh, CORE, "--cache-from", repo, HTTP)
    assert by_module(report)["finalize"] == "pulled" and has_forged_file(fresh, report["image"])
    unverified = [w for w in registry_warnings(stderr) if "not verified" in w]
    assert len(unverified) == 1 and len(registry_warnings(stderr)) == 1, stderr
    fresh.buildah("rmi", "--force", f"localhost/composer-cache:{final}", report["image"])

    # With it, the unsigned forgery costs one warning and a local build.
    report, stderr = build(fresh, CORE, "--cache-from", repo, "--verify-key", str(team.public), HTTP)
    assert by_module(report)["finalize"] == "miss" and not has_forged_file(fresh, report["image"])
    assert [w for w in registry_warnings(stderr)] == [
        f"warning: registry cache {repo}:{final[:16]}… refused: it is not signed (no sigstore signature beside it); "
        "building it locally"], stderr
    fresh.buildah("rmi", "--force", f"localhost/composer-cache:{final}", report["image"])

    # Signed with a key the team does not trust: the same.
    sign_pushed(Runner(), Signer(str(intruder.private), str(intruder.passphrase)), f"{repo}:{final}", digest,
                False, "", containers.root)
    report, stderr = build(fresh, CORE, "--cache-from", repo, "--verify-key", str(team.public), HTTP)
    assert by_module(report)["finalize"] == "miss" and not has_forged_file(fresh, report["image"])
    warnings = registry_warnings(stderr)
    assert len(warnings) == 1 and f"{final[:16]}… refused: none of its 1 signature(s) is by --verify-key" \
        in warnings[0], stderr


def test_a_signed_entry_whose_layer_was_swapped_is_never_used(
        containers: Containers, registry: Registry, team: KeyPair, fresh: Containers) -> None:
    """The pusher replaces a signed layer and copies the team's signature beside the new
    manifest: the signature names the old manifest digest."""
    repo = signed_cache(containers, registry, team, "swapped-cache")
    keys = layer_keys(containers)
    final = keys["finalize"]
    signed = json.loads(containers.run("skopeo", "inspect", "--tls-verify=false", f"docker://{repo}:{final}").stdout)
    digest = forge(containers, keys["marker"], final, repo)
    assert digest != signed["Digest"]
    containers.run("skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false",
                   "--dest-tls-verify=false", f"docker://{repo}:{attachment_tag(signed['Digest'])}",
                   f"docker://{repo}:{attachment_tag(digest)}")
    report, stderr = build(fresh, CORE, "--cache-from", repo, "--verify-key", str(team.public), HTTP)
    assert by_module(report)["finalize"] == "miss" and not has_forged_file(fresh, report["image"])
    warnings = registry_warnings(stderr)
    assert len(warnings) == 1 and "its signature by --verify-key does not sign this image: it signs another " \
        "manifest" in warnings[0], stderr


def test_a_linear_layer_on_another_parent_is_refused_even_without_verify_key(
        containers: Containers, registry: Registry, team: KeyPair, fresh: Containers) -> None:
    """The marker layer's tag holds an image with the marker's label built straight on the
    base (motd, jq and greeting left out), signed with the team's key too: a signature says
    who pushed it, not what it sits on."""
    repo = signed_cache(containers, registry, team, "chain-cache")
    keys = layer_keys(containers)
    marker = keys["marker"]
    digest = forge(containers, keys["debootstrap:trixie"], marker, repo)
    sign_pushed(Runner(), Signer(str(team.private), str(team.passphrase)), f"{repo}:{marker}", digest, False, "",
                containers.root)
    for verify in ((), ("--verify-key", str(team.public))):
        report, stderr = build(fresh, CORE, "--cache-from", repo, HTTP, *verify)
        assert by_module(report)["marker"] == "miss" and not has_forged_file(fresh, report["image"])
        refused = [w for w in registry_warnings(stderr) if "refused" in w]
        assert len(refused) == 1 and f"{marker[:16]}… refused: it is not built on the local parent" in refused[0], \
            stderr
        for name in (report["image"], f"localhost/composer-cache:{keys['finalize']}",
                     f"localhost/composer-cache:{marker}"):
            fresh.buildah("rmi", "--force", name)


def lie_about_parent(box: Containers, image: str, claimed_below: list[str], repo: str, key: str) -> None:
    """Push image under key's tag with a config that names claimed_below as the layers under
    its own: the layers are still the image's (skopeo copies them as they are)."""
    folder = box.root / f"lie-{key[:16]}"
    box.run("skopeo", "copy", "--quiet", f"containers-storage:{image}", f"dir:{folder}")
    manifest = json.loads((folder / "manifest.json").read_text())
    config_file = folder / manifest["config"]["digest"].split(":", 1)[1]
    config = json.loads(config_file.read_text())
    config["rootfs"]["diff_ids"] = [*claimed_below, config["rootfs"]["diff_ids"][-1]]
    data = json.dumps(config).encode()
    config_file.unlink()
    digest = hashlib.sha256(data).hexdigest()
    (folder / digest).write_bytes(data)
    manifest["config"].update(digest=f"sha256:{digest}", size=len(data))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    box.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"dir:{folder}", f"docker://{repo}:{key}")


def test_a_layer_whose_config_lies_about_its_parent_is_refused(
        containers: Containers, registry: Registry, team: KeyPair, fresh: Containers) -> None:
    """The marker layer's tag holds the base and a layer of the pusher's, with a config that
    names the marker's real parent chain (base, motd, jq, greeting): the config check passes,
    the layers containers-storage applied do not."""
    repo = signed_cache(containers, registry, team, "lying-cache")
    keys = layer_keys(containers)
    marker = keys["marker"]
    forge(containers, keys["debootstrap:trixie"], marker, repo)
    greeting = json.loads(containers.buildah("inspect", "--type", "image",
                                             f"localhost/composer-cache:{keys['greeting']}").stdout)
    claimed = json.loads(greeting["Config"])["rootfs"]["diff_ids"]
    lie_about_parent(containers, f"localhost/forged:{marker[:16]}", claimed, repo, marker)
    report, stderr = build(fresh, CORE, "--cache-from", repo, HTTP)
    assert by_module(report)["marker"] == "miss" and not has_forged_file(fresh, report["image"])
    refused = [w for w in registry_warnings(stderr) if "refused" in w]
    assert len(refused) == 1 and f"{marker[:16]}… refused: it is not built on the local parent" in refused[0], stderr
    assert "localhost/composer-pulled:" not in fresh.buildah("images", "--format", "{{.Name}}").stdout
