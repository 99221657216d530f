"""Shared fixtures. Integration tests get one private containers-storage for the whole
session (never the developer's images) and one composer cache, so each base and layer is
built once per session however many tests use it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "tests" / "recipes"
INTEGRATION_TOOLS = ("buildah", "podman", "skopeo", "debootstrap", "runc")

# Python tools that tests run from module folders must not leave byte code there:
# it would change the modules' cache keys.
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
sys.dont_write_bytecode = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests need the real tools: collecting one without them is an error with
    the command that installs them, never a skip (a skipped test proves nothing). Unit
    tests alone (`pytest tests/unit`) need none of them."""
    missing = [t for t in INTEGRATION_TOOLS if shutil.which(t) is None]
    if missing and any("integration" in item.keywords for item in items):
        raise pytest.UsageError(f"the integration tests need {', '.join(missing)}: run scripts/setup-host --test")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """@pytest.mark.needs("tmux", "jq", root=True): a test that needs a tool or root fails
    naming what is missing and how to get it — never a silent skip (README, "Tests")."""
    for mark in item.iter_markers("needs"):
        missing = [t for t in mark.args if shutil.which(t) is None]
        if missing:
            tool_missing(", ".join(missing))
        if mark.kwargs.get("root") and os.geteuid() != 0:
            pytest.fail(f"needs root ({mark.kwargs.get('why', 'it changes owners or makes device nodes')}): "
                        "run the unit tests as root, as CI does", pytrace=False)


def tool_missing(tool: str) -> NoReturn:
    """A tool a test needs is absent: the test fails with the command that installs it."""
    pytest.fail(f"needs {tool}: scripts/setup-host --test installs it", pytrace=False)


SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every tool the tests need is installed there."""
    if os.environ.get("CI") and SKIPPED and exitstatus == 0:
        print(f"\nCI: {len(SKIPPED)} test(s) skipped, which CI does not allow: {', '.join(SKIPPED[:5])}")
        session.exitstatus = 1


@dataclass
class Containers:
    """A private containers-storage + config, and runners for composer and podman in it."""

    root: Path
    env: dict[str, str]
    cache_dir: Path
    built: dict[str, dict[str, Any]] = field(default_factory=dict)

    def composer_argv(self, *args: str) -> list[str]:
        """composer with args, on this cache folder (run it with env=self.env)."""
        return [sys.executable, "-m", "composer", "--cache-dir", str(self.cache_dir), *args]

    def composer(self, *args: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.composer_argv(*args), env=self.env, cwd=cwd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(
                f"composer {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def build(self, recipe: Path, *extra: str) -> dict[str, Any]:
        """Build recipe; returns the JSON report (with 'image' the tagged name, and 'image_id'
        the ID that name had right after this build: later tests may tag it anew)."""
        out = self.root / "out" / recipe.stem
        report = out / "report.json"
        self.composer("build", str(recipe), "-o", str(out), "--report", str(report), *extra)
        document: dict[str, Any] = json.loads(report.read_text())
        document["output"] = str(out)
        document["image_id"] = self.images()[document["image"]]
        return document

    def build_once(self, recipe: Path) -> dict[str, Any]:
        """Build recipe once per session (tests share the image)."""
        key = str(recipe.resolve())
        if key not in self.built:
            self.built[key] = self.build(recipe)
        return self.built[key]

    def run(self, tool: str, *args: str, check: bool = True, timeout: float = 600,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([tool, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def podman(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("podman", *args, **kw)

    def buildah(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("buildah", *args, **kw)

    def restart(self, name: str) -> None:
        """`podman restart --time 5 name`, as a person would. podman 4.3 fails when the
        container ends just as the timeout's SIGKILL goes out ("container state improper:
        stopped", seen in CI): the container is stopped then, and starting it is the rest of
        the restart. Any other failure is the test's."""
        result = self.podman("restart", "--time", "5", name, timeout=120, check=False)
        if result.returncode == 0:
            return
        state = self.podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if "container state improper" not in result.stderr or state not in ("exited", "stopped"):
            raise AssertionError(f"podman restart {name} exited {result.returncode} ({state})\n{result.stderr}")
        self.podman("start", name, timeout=120)

    def destroy(self) -> None:
        """Remove every container and image of this storage, then its folder."""
        self.podman("rm", "--all", "--force", "--time", "0", check=False)
        self.buildah("rm", "--all", check=False)
        self.podman("system", "reset", "--force", check=False, timeout=300)
        shutil.rmtree(self.root, ignore_errors=True)

    def images(self) -> dict[str, str]:
        """name -> image ID for every tagged image in the storage."""
        listing = json.loads(self.buildah("images", "--json").stdout or "[]")
        return {name: image["id"] for image in listing for name in image.get("names") or ()}


def write_container_config(folder: Path) -> dict[str, str]:
    storage = folder / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{folder / "root"}"\n'
        f'runroot = "{folder / "run"}"\n'
    )
    # runc and lower rlimits: what podman needs on these machines (docs/design.md).
    containers = folder / "containers.conf"
    containers.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'events_logger = "file"\n'
        'cgroup_manager = "cgroupfs"\n'
        # Keep podman's run state, locks and networks in the test folder too: the host's
        # /run/libpod and /etc/containers/networks are not ours to share or to reset.
        f'tmp_dir = "{folder / "tmp"}"\n'
        'lock_type = "file"\n'
        "[network]\n"
        f'network_config_dir = "{folder / "networks"}"\n'
    )
    return {"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(containers)}


@pytest.fixture(scope="session")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    # COMPOSER_TEST_STORAGE keeps one storage across sessions (a developer's fast loop);
    # CI leaves it unset and starts from nothing.
    keep = os.environ.get("COMPOSER_TEST_STORAGE")
    folder = Path(keep) if keep else tmp_path_factory.mktemp("containers")
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(write_container_config(folder))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    box = Containers(folder, env, folder / "cache")
    yield box
    if not keep:
        box.destroy()


@contextlib.contextmanager
def private_storage(session: Containers, folder: Path) -> Iterator[Containers]:
    """A containers-storage of its own in folder, sharing the session's composer cache
    (key documents, downloads): for tests that kill buildah or run another builder in it,
    so that whatever they leave never reaches the session's storage."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(session.env)
    env.update(write_container_config(folder))
    box = Containers(folder, env, session.cache_dir)
    try:
        yield box
    finally:
        box.destroy()


def copy_tree(src: Path, dest: Path, names: Sequence[str] = ()) -> Path:
    """Copy a recipe folder (recipes, layers, hooks) so a test can change it."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", *names))
    return dest


@dataclass
class Registry:
    """A local OCI registry (Debian's docker-registry) with a config and storage of its own."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.folder / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        log = (self.folder / "registry.log").open("ab")
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as res:
                    if res.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry did not start: {(self.folder / 'registry.log').read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@contextlib.contextmanager
def started_registry(folder: Path) -> Iterator[Registry]:
    """A registry on 127.0.0.1:<free port> with its storage in folder, stopped and removed after."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("docker-registry") is None:
        tool_missing("docker-registry")
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    box = Registry(folder, port)
    box.start()
    try:
        yield box
    finally:
        box.stop()
        shutil.rmtree(box.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the session; tests may stop and restart it."""
    with started_registry(tmp_path_factory.mktemp("registry")) as box:
        yield box
