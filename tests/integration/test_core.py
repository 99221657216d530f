"""The core against real buildah/podman/skopeo: build, reuse, rebuild from a change, run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers, copy_tree, write_container_config

pytestmark = pytest.mark.integration

CORE = RECIPES / "core-test.toml"


def by_module(report: dict) -> dict[str, str]:
    return {layer["module"]: layer["cache"] for layer in report["layers"]}


@pytest.fixture(scope="module")
def first_build(containers: Containers) -> dict:
    return containers.build_once(CORE)


def test_first_build_builds_every_module(first_build: dict) -> None:
    cache = by_module(first_build)
    assert [layer["module"] for layer in first_build["layers"]] == [
        "debootstrap:trixie", "motd", "jq", "greeting", "marker", "finalize"]
    assert [layer["kind"] for layer in first_build["layers"]] == ["base"] + ["module"] * 4 + ["finalize"]
    assert all(cache[m] == "miss" for m in ("motd", "jq", "greeting", "marker", "finalize"))
    assert all(layer["size"] is not None for layer in first_build["layers"])
    assert first_build["totals"]["misses"] >= 5


def test_rebuild_reuses_every_layer_and_commits_nothing(containers: Containers, first_build: dict) -> None:
    before = containers.images()
    report = containers.build(CORE)
    assert set(by_module(report).values()) == {"hit"}
    assert containers.images() == before  # no new image, no re-tag to another ID
    assert containers.buildah("containers", "--quiet").stdout.strip() == ""


def test_image_runs_and_shows_each_module(containers: Containers, first_build: dict) -> None:
    script = (
        "cat /etc/motd-composer /etc/greeting/text /etc/greeting/count /opt/marker/value /run/greeted;"
        ' echo "$MOTD_FILE|$COMPOSER_TEST|$PATH"; jq --version'
    )
    out = containers.podman("run", "--rm", first_build["image"], "/bin/sh", "-c", script).stdout
    # jq runs and is the jq dpkg installed: what it prints is the start of the packaged
    # version (trixie's 1.7.1-3 prints jq-1.7).
    packaged = containers.podman("run", "--rm", "--entrypoint", "dpkg-query", first_build["image"],
                                 "-W", "-f", "${Version}", "jq").stdout
    *lines, printed = out.splitlines()
    assert printed.startswith("jq-1.") and packaged.startswith(printed.removeprefix("jq-")), (printed, packaged)
    assert lines == [
        "Welcome to a composer-built image.",
        "hello devpod",
        "3",
        "it's \"quoted\"; $(not run)",  # an option with shell syntax stays data
        "hello devpod",  # written by the start-up hook before the command ran
        "/etc/motd-composer|1|/opt/motd/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]


def test_nothing_of_the_build_leaks_into_layers(containers: Containers, first_build: dict) -> None:
    listing = containers.podman(
        "run", "--rm", "--entrypoint", "/bin/sh", first_build["image"], "-c",
        "ls -A /run/composer /var/lib/apt/lists /var/cache/apt/archives 2>&1; ls /var/log;"
        " cat /etc/resolv.conf /etc/hostname",
    ).stdout
    # The host CA bundle and the proxies: tests/integration/test_leaks.py searches every layer.
    assert "options.json" not in listing
    assert "No such file" in listing  # /run/composer is gone
    assert ".deb" not in listing and "_Packages" not in listing
    assert "apt" not in listing.split() and "dpkg.log" not in listing


def test_image_config(containers: Containers, first_build: dict) -> None:
    config = json.loads(containers.buildah("inspect", "--type", "image", first_build["image"]).stdout)
    docker = config["Docker"]["config"]
    assert docker["Healthcheck"]["Test"] == ["CMD", "test", "-f", "/etc/motd-composer"]
    assert docker["Labels"]["io.composer.modules"] == "motd,jq,greeting,marker"
    assert docker["Entrypoint"] == ["/usr/local/bin/composer-entrypoint"]
    assert docker["WorkingDir"] == "/root"
    history = [h.get("created_by", "") for h in config["Docker"]["history"]]
    assert any("composer layer 3 greeting" in h for h in history)
    # Build-time-only settings (host CA bundle, proxies): searched for in tests/integration/test_leaks.py.


def test_oci_archive_is_valid(containers: Containers, first_build: dict, tmp_path: Path) -> None:
    archive = first_build["archive"]
    assert archive and Path(archive).is_file()
    inspect = json.loads(containers.run("skopeo", "inspect", f"oci-archive:{archive}").stdout)
    assert len(inspect["Layers"]) == 6  # base + 4 modules + finalize
    # oci-image-tool 1.0.0-rc1 cannot walk a tar file; it validates the unpacked layout.
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", archive], check=True)
    result = subprocess.run(["oci-image-tool", "validate", "--type", "image", str(layout)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_changed_second_module_rebuilds_from_there(containers: Containers, first_build: dict,
                                                   tmp_path: Path) -> None:
    copy = copy_tree(RECIPES, tmp_path / "recipes")
    (copy / "layers/jq/module.toml").write_text(
        (copy / "layers/jq/module.toml").read_text() + "# a changed byte changes the key\n")
    report = containers.build(copy / "core-test.toml", "--no-archive")
    assert by_module(report) == {"debootstrap:trixie": "hit", "motd": "hit", "jq": "miss", "greeting": "miss",
                                 "marker": "miss", "finalize": "miss"}


def test_failing_step_names_layer_cleans_up_and_resumes(containers: Containers, first_build: dict,
                                                        tmp_path: Path) -> None:
    copy = copy_tree(RECIPES, tmp_path / "recipes")
    script = copy / "layers/marker/scripts/mark.sh"
    script.write_text(script.read_text() + "echo 'about to fail' >&2\nexit 7\n")
    result = containers.composer("build", str(copy / "core-test.toml"), "--no-archive", check=False)
    assert result.returncode == 1
    assert "layer 4 marker: command failed (exit 7)" in result.stderr
    assert "mark.sh" in result.stderr and "about to fail" in result.stderr
    assert "Traceback" not in result.stderr
    assert containers.buildah("containers", "--quiet").stdout.strip() == ""
    # The layers before the failure stay cached: the next build resumes at marker.
    script.write_text(script.read_text().replace("exit 7\n", ""))
    report = containers.build(copy / "core-test.toml", "--no-archive")
    assert by_module(report)["greeting"] == "hit" and by_module(report)["marker"] == "miss"


def test_plan_reports_cached_and_missing(containers: Containers, first_build: dict, tmp_path: Path) -> None:
    plan = json.loads(containers.composer("plan", "--json", str(CORE)).stdout)
    assert {layer["status"] for layer in plan["layers"]} == {"cached"}
    copy = copy_tree(RECIPES, tmp_path / "recipes")
    (copy / "layers/marker/scripts/mark.sh").write_text("#!/bin/sh\ntrue\n")
    plan = json.loads(containers.composer("plan", "--json", str(copy / "core-test.toml")).stdout)
    assert [layer["status"] for layer in plan["layers"]] == ["cached", "cached", "cached", "missing"]
    assert plan["finalize"]["status"] == "missing"


def diff_ids(box: Containers, image_id: str) -> list[str]:
    config = json.loads(box.buildah("inspect", "--type", "image", image_id).stdout)
    return list(config["OCIv1"]["rootfs"]["diff_ids"])


def test_same_inputs_give_the_same_layer_digests(containers: Containers, first_build: dict,
                                                  tmp_path: Path) -> None:
    # A second machine, as far as storage goes: its own containers-storage and cache,
    # holding only the base layer (a bootstrapped base has random keys and ids by nature).
    other = tmp_path / "other"
    other.mkdir()
    box = Containers(other, {**containers.env, **write_container_config(other)}, other / "cache")
    base_ref = f"localhost/composer-cache:{first_build['layers'][0]['key']}"
    target = f"containers-storage:[overlay@{other / 'root'}+{other / 'run'}]{base_ref}"
    containers.run("skopeo", "copy", "--quiet", f"containers-storage:{base_ref}", target)
    try:
        report = box.build(CORE, "--no-archive")
        assert [layer["cache"] for layer in report["layers"]] == ["hit"] + ["miss"] * 5
        assert [layer["key"] for layer in report["layers"]] == [layer["key"] for layer in first_build["layers"]]
        # The images each build made (their IDs taken right after it), not a tag that other
        # tests re-tag. The IDs themselves differ: buildah's docker-format config records the
        # working container's ID; the layers, which is what is shipped and cached, do not.
        assert diff_ids(box, report["image_id"]) == diff_ids(containers, first_build["image_id"])
    finally:
        box.buildah("rm", "--all", check=False)
        box.podman("system", "reset", "--force", check=False)
