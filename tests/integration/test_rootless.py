"""composer as a non-root user with subuid ranges: buildah (chroot isolation, vfs storage)
builds a recipe on an oci-archive: base that the root build wrote."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RECIPES, ROOT, Containers

pytestmark = pytest.mark.integration

USER = "composer-rootless"
SUBID_START = 300000


def ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    for path in ("/etc/subuid", "/etc/subgid"):
        lines = Path(path).read_text().splitlines() if Path(path).exists() else []
        if not any(line.startswith(f"{USER}:") for line in lines):
            with open(path, "a") as f:
                f.write(f"{USER}:{SUBID_START}:65536\n")
    return pwd.getpwnam(USER)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a test user needs root")
def test_non_root_user_builds_on_an_oci_archive_base(containers: Containers, tmp_path_factory) -> None:
    archive = containers.build_once(RECIPES / "core-test.toml")["archive"]
    user = ensure_user()
    work = tmp_path_factory.mktemp("rootless")
    work.chmod(0o755)
    for parent in work.parents:  # the user must reach its folder
        if parent != Path("/"):
            parent.chmod(parent.stat().st_mode | 0o011)
    shutil.copy(archive, work / "base.oci.tar")
    shutil.copytree(RECIPES / "layers", work / "layers")
    (work / "recipe.toml").write_text(
        'name = "rootless-test"\ntag = "test"\n'
        f'[base]\nfrom = "oci-archive:{work / "base.oci.tar"}"\nfamily = "debian"\n'
        '[[layers]]\nmodule = "motd"\n[[layers]]\nmodule = "jq"\n'
    )
    # composer for the user: this checkout in a venv of the system Python (the test's own
    # interpreter may live where the user cannot read, e.g. under /root).
    shutil.copytree(ROOT, work / "src", ignore=shutil.ignore_patterns(
        "__pycache__", ".venv", ".git", "build", "layers", "tests", ".*_cache"))
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(work / "venv")], check=True)
    subprocess.run([str(work / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check",
                    str(work / "src")], check=True, timeout=600)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(work)], check=True)
    env = {
        "PATH": os.environ["PATH"], "HOME": user.pw_dir, "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    storage = ["--root", str(work / "storage"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    argv = ["runuser", "-u", USER, "--", str(work / "venv/bin/composer"), *storage,
            "--cache-dir", str(work / "cache"), "build", str(work / "recipe.toml"),
            "-o", str(work / "out"), "--report", str(work / "report.json")]
    result = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=900)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((work / "report.json").read_text())
        assert [layer["cache"] for layer in report["layers"]] == ["miss"] * 4
        as_user = ["runuser", "-u", USER, "--", "buildah", *storage]
        subprocess.run([*as_user, "from", "--name", "check", "localhost/rootless-test:test"], env=env,
                       capture_output=True, check=True)
        script = "cat /etc/motd-composer; jq --version; stat -c %u /etc/motd-composer"
        run = [*as_user, "run", "--isolation", "chroot", "check", "--", "/bin/sh", "-c", script]
        out = subprocess.run(run, env=env, cwd=work, capture_output=True, text=True, check=True).stdout
        lines = out.splitlines()
        assert lines[0] == "Welcome to a composer-built image." and lines[1].startswith("jq-")
        assert lines[2] == "0"  # root inside the image, not the user's host uid
    finally:
        cleanup = ["runuser", "-u", USER, "--", "buildah", *storage, "rm", "--all"]
        subprocess.run(cleanup, env=env, capture_output=True)
        subprocess.run(["runuser", "-u", USER, "--", "buildah", "unshare", "rm", "-rf", str(work / "storage")],
                       env=env, capture_output=True)
