"""Layers shared through a real registry (docker-registry on 127.0.0.1): one storage pushes,
a fresh one pulls instead of building; a tampered tag or a registry that is down never
fails a build."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers, Registry, copy_tree, started_registry, write_container_config

pytestmark = pytest.mark.integration

CORE = RECIPES / "core-test.toml"
HTTP = "--no-tls-verify"  # the test registry speaks plain HTTP


def by_module(report: dict) -> dict[str, str]:
    return {layer["module"]: layer["cache"] for layer in report["layers"]}


def build(box: Containers, recipe: Path, *extra: str) -> tuple[dict, str]:
    """Build without export; the JSON report and what composer printed."""
    report = box.root / "out" / "report.json"
    result = box.composer("build", str(recipe), "--no-archive", "-o", str(box.root / "out"),
                          "--report", str(report), *extra)
    return json.loads(report.read_text()), result.stderr


def failures(stderr: str) -> list[str]:
    """The registry cache's warnings but the one every unverified --cache-from build gives
    (its count is tested in tests/integration/test_signing.py)."""
    lines = [line for line in stderr.splitlines() if line.startswith("warning: registry cache")]
    unverified = [line for line in lines if "entries are not verified" in line]
    assert len(unverified) <= 1, stderr
    return [line for line in lines if line not in unverified]


def greeting_count(box: Containers, image: str) -> str:
    argv = ("run", "--rm", "--network", "none", "--entrypoint", "cat", image, "/etc/greeting/count")
    return box.podman(*argv).stdout.strip()


def changed_recipe(tmp_path: Path, old: str, new: str) -> Path:
    copy = copy_tree(RECIPES, tmp_path / "recipes")
    recipe = copy / "core-test.toml"
    assert old in recipe.read_text()
    recipe.write_text(recipe.read_text().replace(old, new))
    return recipe


@pytest.fixture(scope="module")
def repo(containers: Containers, registry: Registry) -> str:
    """Storage A (the session's) builds the core recipe and pushes every layer."""
    repo = f"{registry.host}/core-cache"
    containers.build_once(CORE)
    report, _ = build(containers, CORE, "--cache-to", repo, HTTP)
    assert set(by_module(report).values()) == {"hit"}
    assert all(layer["pushed"] for layer in report["layers"])
    return repo


@contextlib.contextmanager
def other_machine(containers: Containers, folder: Path) -> Iterator[Containers]:
    """Another machine as far as storage goes: its own containers-storage and cache."""
    folder.mkdir(parents=True, exist_ok=True)
    box = Containers(folder, {**containers.env, **write_container_config(folder)}, folder / "cache")
    try:
        yield box
    finally:
        box.buildah("rm", "--all", check=False)
        box.podman("system", "reset", "--force", check=False, timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def machine_b(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    with other_machine(containers, tmp_path_factory.mktemp("machine-b")) as box:
        yield box


@pytest.fixture(scope="module")
def pulled(repo: str, machine_b: Containers) -> dict:
    report, _ = build(machine_b, CORE, "--cache-from", repo, HTTP)
    return report


def test_fresh_storage_pulls_every_layer_and_builds_none(containers: Containers, machine_b: Containers,
                                                         pulled: dict) -> None:
    assert [layer["cache"] for layer in pulled["layers"]] == ["pulled"] * 6
    assert pulled["totals"]["misses"] == 0 and pulled["totals"]["pulled"] == 6
    image = pulled["image"]
    assert machine_b.images()[image] == containers.images()[image]  # the same image ID
    # The pulled layers' key documents are kept, as if built here (plan --why, cache ls).
    assert all((machine_b.cache_dir / "keys" / f"{layer['key']}.json").is_file() for layer in pulled["layers"])


def test_changed_module_builds_from_there_and_pushes(repo: str, machine_b: Containers, pulled: dict,
                                                     tmp_path: Path) -> None:
    recipe = changed_recipe(tmp_path, "count = 3", "count = 4")
    report, _ = build(machine_b, recipe, "--cache-from", repo, "--cache-to", repo, HTTP)
    assert by_module(report) == {"debootstrap:trixie": "hit", "motd": "hit", "jq": "hit",
                                 "greeting": "miss", "marker": "miss", "finalize": "miss"}
    assert [layer["pushed"] for layer in report["layers"]] == [False] * 3 + [True] * 3
    assert greeting_count(machine_b, report["image"]) == "4"


def test_a_layer_once_pushed_as_zstd_does_not_turn_an_entry_into_another_image(containers: Containers,
                                                                              tmp_path: Path) -> None:
    # c/image records which blobs it pushed where (the machine's blob-info cache, outside any
    # storage root). With a zstd copy of core-test's layers in a registry, skopeo reuses them
    # for cache pushes to that registry and rewrites a Docker manifest as OCI: another config,
    # so another image ID on every machine that pulls it, and no HEALTHCHECK.
    containers.build_once(CORE)
    image = "localhost/composer-core-test:test"
    with started_registry(tmp_path / "registry") as own:
        repo = f"{own.host}/core-cache"
        containers.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-compress-format", "zstd",
                       f"containers-storage:{image}", f"docker://{own.host}/zstd-copy:test")
        report, stderr = build(containers, CORE, "--cache-to", repo, HTTP)
        refused = [line for line in stderr.splitlines() if "not shared: the registry got another image" in line]
        finalize = report["layers"][-1]
        assert finalize["module"] == "finalize" and not finalize["pushed"]
        assert any(finalize["key"][:16] in line and "deleted again" in line for line in refused), stderr
        # What the registry keeps is what was built: each tag's config is the local image's.
        tags = json.loads(containers.run("skopeo", "list-tags", "--tls-verify=false", f"docker://{repo}").stdout)
        for key in tags["Tags"]:
            raw = json.loads(containers.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                                            f"docker://{repo}:{key}").stdout)
            local = containers.buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}",
                                       f"localhost/composer-cache:{key}").stdout.strip()
            assert raw["config"]["digest"] == f"sha256:{local}", key
        assert finalize["key"] not in tags["Tags"]
        assert len(refused) + len(tags["Tags"]) == len(report["layers"])
        # The image itself pushed there: the same check, an error, and no tag left.
        failed = containers.composer("build", str(CORE), "--no-archive", "-o", str(tmp_path / "out"),
                                     "--push", f"{own.host}/core-test:pushed", HTTP, check=False)
        errors = [line for line in failed.stderr.splitlines() if line.startswith("composer: error:")]
        assert failed.returncode != 0 and len(errors) == 1, failed.stderr
        assert "the registry got another image" in errors[0] and "deleted it again" in errors[0]
        assert "Traceback" not in failed.stderr
        left = containers.run("skopeo", "list-tags", "--tls-verify=false", f"docker://{own.host}/core-test",
                              check=False)
        assert "pushed" not in left.stdout


def test_image_under_another_key_is_refused(containers: Containers, repo: str, machine_b: Containers,
                                            pulled: dict, tmp_path: Path) -> None:
    recipe = changed_recipe(tmp_path, "value = \"it's", "value = \"tampered it's")
    plan = json.loads(machine_b.composer("plan", "--json", "--offline", str(recipe)).stdout)
    marker_key = plan["layers"][-1]["key"]
    motd_key = pulled["layers"][1]["key"]
    # Someone pushes the motd layer's image under the tag of the changed marker layer.
    containers.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                   f"containers-storage:localhost/composer-cache:{motd_key}", f"docker://{repo}:{marker_key}")
    report, stderr = build(machine_b, recipe, "--cache-from", repo, HTTP)
    assert by_module(report)["marker"] == "miss"
    assert f"{marker_key[:16]}… refused" in stderr and motd_key in stderr
    label = machine_b.buildah("inspect", "--type", "image", "--format",
                              '{{index .OCIv1.Config.Labels "io.composer.key"}}',
                              f"localhost/composer-cache:{marker_key}").stdout.strip()
    assert label == marker_key  # built here, not the impostor


def test_registry_down_warns_once_and_builds_locally(registry: Registry, repo: str, machine_b: Containers,
                                                     pulled: dict, tmp_path: Path) -> None:
    recipe = changed_recipe(tmp_path, "count = 3", "count = 5")
    registry.stop()
    try:
        report, stderr = build(machine_b, recipe, "--cache-from", repo, "--cache-to", repo, HTTP)
    finally:
        registry.start()
    assert by_module(report)["greeting"] == "miss" and by_module(report)["finalize"] == "miss"
    warnings = failures(stderr)
    assert len(warnings) == 1, stderr
    assert "building locally" in warnings[0] and "Traceback" not in stderr


def stop_when_tagged(registry: Registry, repo_name: str) -> threading.Thread:
    """A thread that stops the registry as soon as the first tag of repo_name is written
    whole: its `current/link` (the folder alone appears first; a registry stopped then
    lists a tag it cannot serve, a crash of the registry's own, not composer's push)."""
    tags = registry.folder / "data/docker/registry/v2/repositories" / repo_name / "_manifests" / "tags"

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if tags.is_dir() and any((tag / "current" / "link").is_file() for tag in tags.iterdir()):
                registry.stop()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_registry_stopped_mid_build_warns_once_and_builds_locally(
        registry: Registry, machine_b: Containers, pulled: dict, tmp_path: Path) -> None:
    """The registry goes away after the first layer is pushed: the rest is built and kept
    locally, one warning, and what the registry got is whole (a tag is a whole image)."""
    recipe = changed_recipe(tmp_path, "count = 3", "count = 11")
    repo = f"{registry.host}/midbuild-cache"
    watcher = stop_when_tagged(registry, "midbuild-cache")
    try:
        report, stderr = build(machine_b, recipe, "--cache-to", repo, HTTP)
        watcher.join(timeout=5)
        assert not watcher.is_alive(), "the registry was never written to"
    finally:
        registry.start()
    pushed = [layer["pushed"] for layer in report["layers"]]
    # Stopped once the first tag was written, before the last push. (That first push may
    # itself count as failed: the registry can die between writing the tag and answering.)
    assert not all(pushed), pushed
    assert by_module(report) == {"debootstrap:trixie": "hit", "motd": "hit", "jq": "hit",
                                 "greeting": "miss", "marker": "miss", "finalize": "miss"}
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: registry cache")]
    assert len(warnings) == 1 and "building locally" in warnings[0], stderr
    assert "Traceback" not in stderr
    assert greeting_count(machine_b, report["image"]) == "11"
    # Every tag the registry holds is a whole image whose label names its tag.
    tags = json.loads(machine_b.run("skopeo", "list-tags", "--tls-verify=false", f"docker://{repo}").stdout)["Tags"]
    confirmed = {layer["key"] for layer, was_pushed in zip(report["layers"], pushed, strict=True) if was_pushed}
    assert tags and confirmed <= set(tags) <= {layer["key"] for layer in report["layers"]}, (tags, pushed)
    for key in tags:
        info = json.loads(machine_b.run("skopeo", "inspect", "--tls-verify=false", f"docker://{repo}:{key}").stdout)
        assert info["Labels"]["io.composer.key"] == key


def registry_tags(box: Containers, repo: str) -> set[str]:
    return set(json.loads(box.run("skopeo", "list-tags", "--tls-verify=false", f"docker://{repo}").stdout)["Tags"])


def test_registry_prune_keeps_what_images_use(registry: Registry, machine_b: Containers, pulled: dict,
                                              tmp_path: Path) -> None:
    """Three versions pushed; the first is also pushed as an image (a tag that is not a key),
    the last is the tagged local image: only the middle one's own layers may go."""
    repo = f"{registry.host}/prune-cache"
    first, _ = build(machine_b, CORE, "--cache-to", repo, "--push", f"{repo}:release", HTTP)
    middle, _ = build(machine_b, changed_recipe(tmp_path / "m", "count = 3", "count = 13"), "--cache-to", repo, HTTP)
    last, _ = build(machine_b, changed_recipe(tmp_path / "l", "count = 3", "count = 17"), "--cache-to", repo, HTTP)
    keys = {name: [layer["key"] for layer in report["layers"]]
            for name, report in (("first", first), ("middle", middle), ("last", last))}
    only_middle = set(keys["middle"]) - set(keys["first"]) - set(keys["last"])
    assert len(only_middle) == 3  # greeting, marker, finalize
    release = json.loads(machine_b.run("skopeo", "inspect", "--tls-verify=false", f"docker://{repo}:release").stdout)
    documents = {f"sha256-{release['Digest'][7:]}.{kind}" for kind in ("spdx", "cdx", "att")}  # its SBOMs
    before = registry_tags(machine_b, repo)
    assert before == {"release", *documents, *keys["first"], *keys["middle"], *keys["last"]}

    listing = json.loads(machine_b.composer("cache", "ls", "--registry", repo, "--json", HTTP).stdout)
    by_key = {e["key"]: e for e in listing}
    assert set(by_key) == before - {"release"} - documents  # the SBOMs are neither keys nor images
    assert all(last["image"] in by_key[k]["used_by"] for k in keys["last"])
    assert all(f"{repo}:release" in by_key[k]["used_by"] for k in keys["first"])
    assert {by_key[k]["module"] for k in only_middle} == {"greeting", "marker", "finalize"}
    assert all(by_key[k]["used_by"] == [] and by_key[k]["size"] > 0 for k in only_middle)

    dry = machine_b.composer("cache", "prune", "--registry", repo, "--keep", "1", "--dry-run", HTTP).stdout
    assert {line.split()[2].rsplit(":", 1)[1] for line in dry.splitlines() if line.startswith("would remove")} \
        == {k[:16] for k in only_middle}, dry
    assert registry_tags(machine_b, repo) == before  # --dry-run deletes nothing

    machine_b.composer("cache", "prune", "--registry", repo, "--older-than", "0", HTTP)
    assert registry_tags(machine_b, repo) == before - only_middle
    # What stays is whole: the pushed image and the last version still copy from the registry.
    for ref in (f"{repo}:release", f"{repo}:{keys['last'][-1]}"):
        machine_b.run("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                      f"oci:{tmp_path / 'copy'}:{ref.rsplit(':', 1)[1][:16]}")


def test_prune_keeps_what_the_tagged_image_uses_and_the_registry_refills(
        repo: str, machine_b: Containers, pulled: dict, tmp_path: Path) -> None:
    recipe = changed_recipe(tmp_path, "count = 3", "count = 7")
    newest, _ = build(machine_b, recipe, "--cache-from", repo, HTTP)
    image = newest["image"]
    listing = json.loads(machine_b.composer("cache", "ls", "--json").stdout)
    by_key = {e["key"]: e for e in listing}
    for layer in newest["layers"]:  # every layer of the tagged image says it is in use
        assert by_key[layer["key"]]["used_by"] == [image]
    old_greeting = pulled["layers"][3]
    assert old_greeting["module"] == "greeting" and by_key[old_greeting["key"]]["used_by"] == []
    assert by_key[old_greeting["key"]]["module"] == "greeting" and by_key[old_greeting["key"]]["size"] > 0

    before = machine_b.images()
    dry = machine_b.composer("cache", "prune", "--keep", "1", "--dry-run").stdout
    assert f"would remove {old_greeting['key'][:16]}" in dry
    assert machine_b.images() == before  # --dry-run changes nothing

    machine_b.composer("cache", "prune", "--keep", "1")
    after = {e["key"]: e for e in json.loads(machine_b.composer("cache", "ls", "--json").stdout)}
    assert all(layer["key"] in after for layer in newest["layers"])
    assert old_greeting["key"] not in after
    assert {e["module"] for e in after.values() if not e["used_by"]} <= {"greeting", "marker", "finalize"}
    assert greeting_count(machine_b, image) == "7"
    # What prune removed comes back from the registry, not from a build.
    again, _ = build(machine_b, CORE, "--cache-from", repo, HTTP)
    assert by_module(again)["greeting"] == "pulled" and again["totals"]["misses"] == 0


def test_push_the_image_when_built_or_later(containers: Containers, registry: Registry, repo: str,
                                            tmp_path: Path) -> None:
    built, _ = build(containers, CORE, "--push", f"{registry.host}/core:built", HTTP)
    containers.composer("push", str(CORE), f"{registry.host}/core:later", HTTP)
    image_id = containers.images()[built["image"]]
    for tag in ("built", "later"):
        manifest = json.loads(containers.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                                             f"docker://{registry.host}/core:{tag}").stdout)
        assert manifest["config"]["digest"].startswith(f"sha256:{image_id}")  # the same image
    unbuilt = changed_recipe(tmp_path, "count = 3", "count = 9")
    result = containers.composer("push", str(unbuilt), f"{registry.host}/core:never", HTTP, check=False)
    assert result.returncode == 1 and "not built" in result.stderr and "Traceback" not in result.stderr


def test_a_corrupted_blob_is_never_used(containers: Containers, registry: Registry, repo: str,
                                       tmp_path: Path) -> None:
    """Last in this file: the registry's copy of the final layer is damaged while it runs."""
    final_key = containers.build_once(CORE)["layers"][-1]["key"]
    manifest = json.loads(containers.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                                         f"docker://{repo}:{final_key}").stdout)
    digest = manifest["layers"][-1]["digest"].split(":", 1)[1]
    blob = registry.folder / "data/docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
    original = blob.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF  # same size, one byte changed
    blob.write_bytes(bytes(damaged))
    try:
        with other_machine(containers, tmp_path / "machine-c") as box:
            report, stderr = build(box, CORE, "--cache-from", repo, HTTP)
    finally:
        blob.write_bytes(original)
    assert [layer["cache"] for layer in report["layers"]] == ["pulled"] * 5 + ["miss"]
    warnings = failures(stderr)
    assert len(warnings) == 1 and f"pulling {final_key[:16]}" in warnings[0], stderr
