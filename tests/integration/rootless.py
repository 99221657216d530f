"""A non-root user with subuid ranges for the rootless integration tests: made once (as
root), given a folder it can reach, composer in a venv, and commands run as it.

buildah and podman run as this user with their own storage in the test's folder (vfs:
no fuse-overlayfs needed), so a test never touches the user's or root's images."""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

USER = "composer-rootless"
SUBID_START = 300000

# What podman needs here for a rootless container (docs/design.md, docs/kube.md): runc (crun
# refuses the cgroups hybrid), lower rlimits, and no systemd user session to talk to.
ROOTLESS_CONTAINERS_CONF = (
    "[containers]\n"
    'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
    "[engine]\n"
    'runtime = "runc"\n'
    'cgroup_manager = "cgroupfs"\n'
    'events_logger = "file"\n'
)


# podman's --userns=auto (what `hostUsers: false` becomes in `podman kube play`) takes each
# pod's IDs from the ranges of the user "containers"; room for 15 pods of 65536.
AUTO_USERNS = ("containers", 2_000_000, 1_000_000)


def ensure_user() -> pwd.struct_passwd:
    """The test user, with /etc/subuid and /etc/subgid ranges (needs root)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    ensure_subids(USER, SUBID_START, 65536)
    return pwd.getpwnam(USER)


def ensure_subids(name: str, start: int, count: int) -> None:
    """name's ranges in /etc/subuid and /etc/subgid, unless it has some (needs root)."""
    for path in ("/etc/subuid", "/etc/subgid"):
        lines = Path(path).read_text().splitlines() if Path(path).exists() else []
        if not any(line.startswith(f"{name}:") for line in lines):
            with open(path, "a") as f:
                f.write(f"{name}:{start}:{count}\n")


def reachable_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh temp folder the user can reach: right under /tmp, not under pytest's own
    folder, which every pytest session (another one running side by side too) makes 0700
    again. Removed when the session ends."""
    work = Path(tempfile.mkdtemp(prefix=f"composer-{name}-", dir="/tmp"))
    work.chmod(0o755)
    atexit.register(shutil.rmtree, work, True)
    return work


def install_composer(work: Path) -> Path:
    """This checkout in a venv of the system Python under work; returns its `composer`.
    (The test's own interpreter may live where the user cannot read, e.g. under /root.)"""
    shutil.copytree(ROOT, work / "src", ignore=shutil.ignore_patterns(
        "__pycache__", ".venv", ".git", "build", "layers", "tests", ".*_cache"))
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(work / "venv")], check=True)
    subprocess.run([str(work / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check",
                    str(work / "src")], check=True, timeout=600)
    return work / "venv/bin/composer"


@dataclass
class RootlessUser:
    """Runs commands as USER with env, and storage flags for a storage under work."""

    user: pwd.struct_passwd
    work: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_folder(cls, work: Path) -> RootlessUser:
        user = ensure_user()
        env = {
            "PATH": os.environ["PATH"], "HOME": user.pw_dir, "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return cls(user, work, env)

    @property
    def storage(self) -> list[str]:
        """--root/--runroot/--storage-driver for buildah and podman."""
        return ["--root", str(self.work / "storage"), "--runroot", str(self.work / "run"),
                "--storage-driver", "vfs"]

    @property
    def storage_ref(self) -> str:
        """The same storage as a containers-storage transport prefix (skopeo)."""
        return f"containers-storage:[vfs@{self.work / 'storage'}+{self.work / 'run'}]"

    def chown(self, path: Path) -> None:
        subprocess.run(["chown", "-R", f"{self.user.pw_uid}:{self.user.pw_gid}", str(path)], check=True)

    def run(self, *argv: str, check: bool = True, timeout: float = 600,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["runuser", "-u", USER, "--", *argv], env=self.env,
                                cwd=cwd or self.work, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} (as {USER}) exited {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def buildah(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("buildah", *self.storage, *args, **kw)

    def podman(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("podman", *self.storage, *args, **kw)

    def setup_podman(self) -> None:
        """A runtime dir (XDG_RUNTIME_DIR, 0700, the user's) and a containers.conf of the
        test's own, so podman keeps its run state, pause process and config under work."""
        runtime, config = self.work / "xdg-runtime", self.work / "xdg-config"
        for folder in (runtime, config):
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)
        conf = self.work / "containers.conf"
        conf.write_text(ROOTLESS_CONTAINERS_CONF)
        for path in (runtime, config, conf):
            self.chown(path)
        self.env.update({
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(config),
            "CONTAINERS_CONF": str(conf),
        })

    def stop_pause_process(self) -> None:
        """rootless podman leaves a pause process (catatonit) holding its user namespace;
        the one of this runtime dir is ours to stop."""
        runtime = self.env.get("XDG_RUNTIME_DIR")
        pid_file = Path(runtime, "libpod", "tmp", "pause.pid") if runtime else None
        if not pid_file or not pid_file.is_file():
            return
        pid = int(pid_file.read_text().strip() or 0)
        try:
            if pid and "catatonit" in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def remove_storage(self) -> None:
        """The storage's files belong to the user's subuids: remove them in its namespace."""
        self.run("buildah", "unshare", "rm", "-rf", str(self.work / "storage"), str(self.work / "run"),
                 check=False)
