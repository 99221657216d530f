"""composer volumes: the argv lists, the recipe's volumes and the checks on a backup's
index (no podman here: the round trip is tests/integration/test_volumes.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from composer.commands import Storage
from composer.errors import ComposerError
from composer.planner import plan_file
from composer.volumes import (
    INDEX,
    Volume,
    export_argv,
    first_mount_argv,
    import_argv,
    read_index,
    recipe_volumes,
    users_argv,
)

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "tests" / "recipes" / "kube-pod" / "volumes.toml"
STORAGE = Storage(root="/r", runroot="/rr", driver="vfs")


def test_recipe_volumes_are_the_claims_of_the_pod() -> None:
    assert recipe_volumes(plan_file(RECIPE)) == (
        Volume("data", "composer-volumes-test-data", "/data"),
        Volume("work", "composer-volumes-test-work", "/work"),
    )


def test_a_recipe_without_volumes_is_an_error() -> None:
    plan = plan_file(ROOT / "tests" / "recipes" / "core-test.toml")
    with pytest.raises(ComposerError, match=r"core-test.toml: pod.volumes: the recipe names no volumes"):
        recipe_volumes(plan)


def test_argv_lists() -> None:
    flags = ["--root", "/r", "--runroot", "/rr", "--storage-driver", "vfs"]
    assert export_argv(STORAGE, "v", Path("/b/v.tar.part")) == [
        "podman", *flags, "volume", "export", "--output", "/b/v.tar.part", "v"]
    assert import_argv(STORAGE, "v", Path("/b/v.tar")) == ["podman", *flags, "volume", "import", "v", "/b/v.tar"]
    assert first_mount_argv(Storage(), "localhost/x:t", "v", "/data") == [
        "podman", "run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "true",
        "--volume", "v:/data", "localhost/x:t"]
    assert users_argv(Storage(), "v") == [
        "podman", "ps", "--all", "--filter", "volume=v", "--format", "{{.Names}}"]


def entry(claim: str, **changes: Any) -> dict[str, Any]:
    base = {"name": claim.rsplit("-", 1)[1], "claim": claim, "path": "/x", "file": f"{claim}.tar",
            "bytes": 10, "sha256": "0" * 64, "uid": 0, "gid": 0, "mode": "755"}
    return {**base, **changes}


def write_backup(folder: Path, volumes: list[dict[str, Any]], **top: Any) -> Path:
    folder.mkdir(exist_ok=True)
    for v in volumes:
        (folder / str(v.get("file", "none")).replace("/", "_")).write_bytes(b"tar")
    document = {"format": 1, "recipe": "composer-volumes-test", "created": "x", "volumes": volumes, **top}
    (folder / INDEX).write_text(json.dumps(document))
    return folder


GOOD = [entry("composer-volumes-test-data"), entry("composer-volumes-test-work")]


def test_read_index(tmp_path: Path) -> None:
    saved = read_index(write_backup(tmp_path, GOOD), plan_file(RECIPE))
    assert [s.claim for s in saved] == ["composer-volumes-test-data", "composer-volumes-test-work"]
    assert saved[1].mode == "755"


@pytest.mark.parametrize(("volumes", "top", "message"), [
    (GOOD, {"format": 2}, r"index.json: format: expected 1"),
    (GOOD, {"recipe": "other"}, r"index.json: recipe: 'other' is not 'composer-volumes-test'"),
    (GOOD[:1], {}, r"index.json: volumes: no backup of composer-volumes-test-work"),
    ([*GOOD, entry("x-y")], {}, r"index.json: volumes\[2\].claim: x-y is not a volume of the recipe"),
    ([GOOD[0], entry("composer-volumes-test-work", file="../etc/passwd")], {},
     r"index.json: volumes\[1\].file: ../etc/passwd is not in"),
    ([GOOD[0], entry("composer-volumes-test-work", mode="u+rwx")], {},
     r"index.json: volumes\[1\].mode: 'u\+rwx' is not an octal mode"),
    ([GOOD[0], entry("composer-volumes-test-work", uid="0")], {},
     r"index.json: volumes\[1\]: bytes, uid and gid must be integers"),
    ([GOOD[0], {"claim": "composer-volumes-test-work"}], {}, r"index.json: volumes\[1\]: not a volume entry"),
])
def test_read_index_refuses(tmp_path: Path, volumes: list[dict[str, Any]], top: dict[str, Any],
                            message: str) -> None:
    with pytest.raises(ComposerError, match=message):
        read_index(write_backup(tmp_path, volumes, **top), plan_file(RECIPE))


def test_no_index_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ComposerError, match="index.json: no backup index here"):
        read_index(tmp_path, plan_file(RECIPE))
    (tmp_path / INDEX).write_text("{")
    with pytest.raises(ComposerError, match=r"index.json: not JSON"):
        read_index(tmp_path, plan_file(RECIPE))


def test_cli_restore_of_a_bad_backup_is_one_line(tmp_path: Path) -> None:
    write_backup(tmp_path, GOOD[:1])
    result = subprocess.run(
        [sys.executable, "-m", "composer", "volumes", "restore", str(RECIPE), str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"composer: error: {tmp_path / INDEX}: volumes: no backup of ")
    assert "Traceback" not in result.stderr
