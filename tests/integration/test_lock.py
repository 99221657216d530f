"""composer.lock against real buildah and a local apt repository the test serves itself.

The base comes from the Debian mirror like every other test's; the module `testmod`
installs composer-testpkg from a repository made here with dpkg-deb + dpkg-scanpackages
and served over http on 127.0.0.1: version 1.0 is published, locked, then 2.0 is published.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers, copy_tree, private_storage

pytestmark = pytest.mark.integration

PKG = "composer-testpkg"
WHEEL = "composer-testwheel"
VENV = "/opt/lockvenv"

PIP_MODULE = """name = "pipmod"
version = "1.0.0"
description = "Installs composer-testwheel into a venv from the test's own index"

[packages]
debian = ["python3-venv"]

[options.port]
type = "integer"
default = 0

[[scripts]]
run = "scripts/install.sh"
"""

PIP_SCRIPT = f"""#!/bin/sh
set -eu
python3 -m venv {VENV}
{VENV}/bin/pip install --no-cache-dir --index-url "http://127.0.0.1:${{COMPOSER_OPT_PORT}}/simple" {WHEEL}
"""

MODULE = """name = "testmod"
version = "1.0.0"
description = "Installs composer-testpkg from the test's own apt repository"

[options.port]
type = "integer"
default = 0

[[scripts]]
run = "scripts/install.sh"
"""

# The build's package lists are composer's, read-only: the test's mirror gets lists of its own
# ($work; apt-get "$@" reads them).
OWN_LISTS = """work=$(mktemp -d)
mkdir -p "$work/lists/partial"
echo "deb [trusted=yes] http://127.0.0.1:${COMPOSER_OPT_PORT}/ ./" > "$work/sources.list"
set -- -o "Dir::State::Lists=$work/lists" -o "Dir::Etc::SourceList=$work/sources.list" \\
    -o Dir::Etc::SourceParts=- -o APT::Sandbox::User=root
apt-get "$@" update -q
"""
SCRIPT = ("#!/bin/sh\nset -eu\n" + OWN_LISTS
          + 'apt-get "$@" install -y -q --no-install-recommends composer-testpkg\nrm -rf "$work"\n')


class Mirror:
    """A flat apt repository in folder, served on 127.0.0.1 while the test runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, version: str) -> None:
        root = self.folder.parent / f"build-{version}"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {PKG}\nVersion: {version}\nArchitecture: all\nMaintainer: composer tests <t@example.org>\n"
            "Description: composer's lock test package\n")
        (root / "usr/share" / PKG).mkdir(parents=True)
        (root / "usr/share" / PKG / "version").write_text(version + "\n")
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root),
                        str(self.folder / f"{PKG}_{version}_all.deb")], check=True, capture_output=True)
        shutil.rmtree(root)
        self.index()

    def withdraw(self, version: str) -> None:
        (self.folder / f"{PKG}_{version}_all.deb").unlink()
        self.index()

    def index(self) -> None:
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=self.folder, check=True,
                                  capture_output=True, text=True).stdout
        (self.folder / "Packages").write_text(packages)


class WheelIndex:
    """A PEP 503 simple index of composer-testwheel's versions, served on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "simple" / WHEEL).mkdir(parents=True)
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, version: str) -> None:
        """A pure-Python wheel, written as pip writes one (no build backend needed)."""
        dist = f"{WHEEL.replace('-', '_')}-{version}"
        files = {
            "composer_testwheel/__init__.py": f"VERSION = {version!r}\n",
            f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {WHEEL}\nVersion: {version}\n",
            f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: composer-tests\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n",
        }
        record = "".join(f"{name},,\n" for name in files) + f"{dist}.dist-info/RECORD,,\n"
        with zipfile.ZipFile(self.folder / "simple" / WHEEL / f"{dist}-py3-none-any.whl", "w") as whl:
            for name, text in {**files, f"{dist}.dist-info/RECORD": record}.items():
                whl.writestr(name, text)
        links = "".join(f'<a href="{w.name}">{w.name}</a>\n'
                        for w in sorted((self.folder / "simple" / WHEEL).glob("*.whl")))
        (self.folder / "simple" / WHEEL / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    m = Mirror(tmp_path / "mirror" / "repo")
    yield m
    m.server.shutdown()


def drift_recipe(folder: Path, port: int) -> Path:
    layers = folder / "layers"
    copy_tree(RECIPES / "layers" / "motd", layers / "motd")
    (layers / "testmod" / "scripts").mkdir(parents=True)
    (layers / "testmod" / "module.toml").write_text(MODULE)
    (layers / "testmod" / "scripts" / "install.sh").write_text(SCRIPT)
    recipe = folder / "drift.toml"
    recipe.write_text(f'name = "composer-lock-test"\ntag = "test"\n[base]\nfrom = "debootstrap:trixie"\n'
                      f'[[layers]]\nmodule = "motd"\n[[layers]]\nmodule = "testmod"\n'
                      f'[layers.options]\nport = {port}\n')
    return recipe


def keys(containers: Containers, recipe: Path) -> dict[str, dict[str, str]]:
    plan = json.loads(containers.composer("plan", "--json", str(recipe)).stdout)
    return {**{layer["module"]: layer for layer in plan["layers"]}, "finalize": plan["finalize"]}


def forget(containers: Containers, layers: dict[str, dict[str, str]], *names: str) -> None:
    """Remove those layers from the storage, as on a machine that never built them."""
    for name in names:
        containers.buildah("rmi", f"localhost/composer-cache:{layers[name]['key']}")


def installed(containers: Containers, image: str, package: str) -> str:
    return containers.podman("run", "--rm", image, "dpkg-query", "-W", "-f", "${Version}", package).stdout


def locked(recipe: Path, module: str) -> dict[str, str]:
    table = tomllib.loads(recipe.with_suffix(".lock").read_text())["modules"][module]
    return {line.split()[0]: line.split()[1] for kind in ("deb", "pip", "npm", "cargo") for line in table.get(kind, [])}


@pytest.mark.needs("dpkg-deb", "dpkg-scanpackages")
def test_lock_pins_refuses_drift_and_updates_one_module(containers: Containers, mirror: Mirror,
                                                         tmp_path: Path) -> None:
    recipe = drift_recipe(tmp_path / "recipe", mirror.port)
    image = "localhost/composer-lock-test:test"
    out = ("--no-archive", "-o", str(tmp_path / "out"))
    mirror.publish("1.0")
    plain = keys(containers, recipe)  # no lock yet: the keys without one
    wrote = containers.composer("lock", str(recipe))
    assert locked(recipe, "testmod") == {f"{PKG}:all": "1.0"}, wrote.stdout
    containers.composer("lock", "--check", str(recipe))
    lock_text = recipe.with_suffix(".lock").read_text()
    assert "release_sha256" in lock_text and f'"{PKG}:all 1.0 sha256:' in lock_text
    first = keys(containers, recipe)

    mirror.publish("2.0")  # the mirror moves on
    # Unlocked, the key is the one `lock` built (with 1.0): on a machine without that layer,
    # as here once it is gone, the unlocked build takes what the mirror serves today.
    forget(containers, plain, "finalize", "testmod")
    unlocked = containers.composer("build", "--no-lock", *out, str(recipe))
    assert "warning:" in unlocked.stdout + unlocked.stderr and "--no-lock" in unlocked.stdout + unlocked.stderr
    assert installed(containers, image, PKG) == "2.0", unlocked.stdout + unlocked.stderr

    containers.composer("build", *out, str(recipe))  # a lock exists: locked by default
    assert installed(containers, image, PKG) == "1.0"
    assert keys(containers, recipe)["testmod"]["status"] == "cached"

    # The layer is built again from a mirror without 1.0: one line, nothing tagged.
    forget(containers, first, "finalize", "testmod")
    mirror.withdraw("1.0")
    failed = containers.composer("build", *out, str(recipe), check=False)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("composer: error:")]
    assert len(errors) == 1, failed.stderr
    assert f"module testmod: deb package {PKG}:all: locked 1.0, the build installed 2.0" in errors[0]
    assert "composer lock --update testmod" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert keys(containers, recipe)["testmod"]["status"] == "missing"
    working = containers.buildah("containers", "--format", "{{.ContainerName}}").stdout
    assert "composer-work-" not in working

    # Stale for the recipe: an option changed.
    recipe.write_text(recipe.read_text().replace(f"port = {mirror.port}", f"port = {mirror.port + 1}"))
    stale = containers.composer("lock", "--check", str(recipe), check=False)
    assert stale.returncode != 0 and "modules.testmod.inputs" in stale.stderr
    recipe.write_text(recipe.read_text().replace(f"port = {mirror.port + 1}", f"port = {mirror.port}"))

    update = containers.composer("lock", "--update", "testmod", str(recipe))
    assert f"testmod: lock {PKG}:all 1.0 -> 2.0" in update.stdout
    assert locked(recipe, "testmod") == {f"{PKG}:all": "2.0"}
    after = keys(containers, recipe)
    assert after["motd"]["key"] == first["motd"]["key"]  # only testmod's key moved
    assert after["testmod"]["key"] != first["testmod"]["key"]
    containers.composer("build", *out, str(recipe))
    assert installed(containers, image, PKG) == "2.0"


def sometimes(then: str) -> str:
    """A module script that writes a file, and does `then` only once composer-testpkg is on
    the test's mirror: what the lock recorded then is not what the module does today."""
    return ("#!/bin/sh\nset -eu\necho on > /etc/testmod.conf\n" + OWN_LISTS
            + f'if apt-cache "$@" show composer-testpkg > /dev/null 2>&1; then {then}; fi\nrm -rf "$work"\n')


def locked_to_nothing(containers: Containers, mirror: Mirror, folder: Path, then: str) -> Path:
    """The drift recipe with testmod's script sometimes(then), locked while the test's mirror
    is an empty repository: testmod's lock entry records nothing."""
    recipe = drift_recipe(folder / "recipe", mirror.port)
    (recipe.parent / "layers" / "testmod" / "scripts" / "install.sh").write_text(sometimes(then))
    mirror.index()
    containers.composer("lock", str(recipe))
    assert locked(recipe, "testmod") == {}
    return recipe


@pytest.mark.needs("dpkg-deb", "dpkg-scanpackages")
def test_a_step_locked_to_no_deb_skips_the_lists_and_still_cannot_install_one(
        containers: Containers, mirror: Mirror, tmp_path: Path) -> None:
    # A module whose lock entry records no deb does not wait for the build's refresh of the
    # package lists (the lists an earlier build fetched serve it): the attack is a module
    # that installs a deb anyway, from those lists. The lock check must still refuse it.
    recipe = locked_to_nothing(containers, mirror, tmp_path, "composer-install jq")
    out = ("--no-archive", "-o", str(tmp_path / "out"))
    built = containers.composer("--verbose", "build", *out, str(recipe))
    fetches = [line for line in built.stderr.splitlines() if line.startswith("+ ") and "apt-get update -q" in line
               and "Dir::State::Lists" not in line]
    assert fetches == [], "testmod waited for the package lists"
    assert "jq" not in containers.podman("run", "--rm", "localhost/composer-lock-test:test", "dpkg-query", "-W",
                                         "-f", "${Package}\\n").stdout.split()

    mirror.publish("1.0")  # now testmod installs jq: what its lock entry does not record
    forget(containers, keys(containers, recipe), "finalize", "testmod")
    failed = containers.composer("build", *out, str(recipe), check=False)
    assert failed.returncode != 0
    assert "module testmod: deb package jq:amd64" in failed.stderr and "is not in the lock" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert keys(containers, recipe)["testmod"]["status"] == "missing"
    assert "composer-work-" not in containers.buildah("containers", "--format", "{{.ContainerName}}").stdout


@pytest.mark.needs("dpkg-deb", "dpkg-scanpackages")
def test_a_layer_that_installs_nothing_is_not_walked_and_one_that_does_is_refused(
        containers: Containers, mirror: Mirror, tmp_path: Path) -> None:
    # The lock check reads what a locked layer installed; a layer whose own changes cannot
    # change the inventory (inventory.unchanged_by: here a file in /etc) holds its parent's,
    # without the inventory script's walk of the image. The attack: a layer that installs a
    # Python distribution by hand (no pip, no deb) must still be read and refused.
    evil = "mkdir -p /usr/local/lib/python3/dist-packages/evil-1.0.dist-info"
    recipe = locked_to_nothing(containers, mirror, tmp_path, evil)
    out = ("--no-archive", "-o", str(tmp_path / "out"))
    layers = keys(containers, recipe)
    built = containers.composer("--verbose", "build", *out, str(recipe))
    walk = re.compile(rf"composer-work-{layers['testmod']['key'][:12]}-[0-9a-f]+ -- /bin/sh -c '\s*NPM_WALK")
    assert not walk.search(built.stderr), [line for line in built.stderr.splitlines() if "lock check" in line]
    kept = {m: json.loads((containers.cache_dir / "inventory" / f"{layers[m]['key']}.json").read_text())
            for m in ("motd", "testmod")}
    assert kept["testmod"] == kept["motd"] and kept["testmod"]
    (containers.cache_dir / "inventory" / f"{layers['testmod']['key']}.json").unlink()
    containers.composer("sbom", str(recipe), "-o", str(tmp_path / "sbom.json"))  # reads the layer anew
    assert json.loads((containers.cache_dir / "inventory" / f"{layers['testmod']['key']}.json").read_text()) \
        == kept["testmod"]

    mirror.publish("1.0")  # now testmod leaves a *.dist-info: what its lock entry does not record
    forget(containers, layers, "finalize", "testmod")
    failed = containers.composer("--verbose", "build", *out, str(recipe), check=False)
    assert failed.returncode != 0 and walk.search(failed.stderr)
    errors = [line for line in failed.stderr.splitlines() if line.startswith("composer: error:")]
    assert len(errors) == 1 and "module testmod: pip package evil@" in errors[0] \
        and "is not in the lock" in errors[0], failed.stderr[-2000:]
    assert keys(containers, recipe)["testmod"]["status"] == "missing"


def test_the_lock_is_what_the_image_holds(containers: Containers, tmp_path: Path) -> None:
    recipe = copy_tree(RECIPES, tmp_path / "recipes", ("kube-pod",)) / "core-test.toml"
    containers.composer("lock", str(recipe))
    data = tomllib.loads(recipe.with_suffix(".lock").read_text())
    expected: dict[str, str] = {}
    for table in [data["base"], *(data["modules"][m] for m in data["modules"])]:  # in build order
        expected.update(dict(line.split()[:2] for line in table.get("deb", [])))
    assert data["modules"]["jq"]["deb"], "jq's layer installs jq and its libraries"
    report = containers.build(recipe, "--no-sbom")  # locked: the lock exists; no SBOM reads the layers
    listing = containers.podman("run", "--rm", report["image"], "dpkg-query", "-W", "-f",
                                "${Package}:${Architecture} ${Version}\\n").stdout
    present = dict(line.split() for line in listing.splitlines())
    missing = sorted(set(present) - set(expected))
    differing = sorted(n for n in present if n in expected and expected[n] != present[n])
    absent = sorted(set(expected) - set(present))
    assert (missing, differing, absent) == ([], [], [])
    # What the lock check read of each module layer built is kept for the SBOM: the same
    # as an inventory of the committed image (the file removed, `composer sbom` reads it again).
    built = [layer["key"] for layer in report["layers"] if layer["kind"] == "module" and layer["cache"] == "miss"]
    assert built
    kept = {key: containers.cache_dir / "inventory" / f"{key}.json" for key in built}
    remembered = {key: json.loads(path.read_text()) for key, path in kept.items()}
    for path in kept.values():
        path.unlink()
    containers.composer("sbom", str(recipe), "-o", str(tmp_path / "sbom.json"))
    assert {key: json.loads(path.read_text()) for key, path in kept.items()} == remembered


@pytest.fixture
def wheels(tmp_path: Path) -> Iterator[WheelIndex]:
    index = WheelIndex(tmp_path / "wheels")
    yield index
    index.server.shutdown()


def test_pip_distributions_are_locked_and_constrained(containers: Containers, wheels: WheelIndex,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "recipe"
    (folder / "layers" / "pipmod" / "scripts").mkdir(parents=True)
    (folder / "layers" / "pipmod" / "module.toml").write_text(PIP_MODULE)
    (folder / "layers" / "pipmod" / "scripts" / "install.sh").write_text(PIP_SCRIPT)
    recipe = folder / "pip.toml"
    recipe.write_text(f'name = "composer-lock-pip"\ntag = "test"\n[base]\nfrom = "debootstrap:trixie"\n'
                      f'[[layers]]\nmodule = "pipmod"\n[layers.options]\nport = {wheels.port}\n')
    out = ("--no-archive", "--no-sbom", "-o", str(tmp_path / "out"))
    wheels.publish("1.0")
    containers.composer("lock", str(recipe))
    entry = locked(recipe, "pipmod")
    site = next(name for name in entry if name.startswith(f"{WHEEL}@"))
    assert site.startswith(f"{WHEEL}@{VENV}/lib/python3") and entry[site] == "1.0"
    assert any(name.startswith("python3-venv:") for name in entry)  # its Debian part too

    wheels.publish("2.0")
    containers.composer("build", *out, str(recipe))  # locked: PIP_CONSTRAINT holds it at 1.0
    shown = containers.podman("run", "--rm", "localhost/composer-lock-pip:test", f"{VENV}/bin/pip", "list",
                              "--format", "json").stdout
    assert {d["name"]: d["version"] for d in json.loads(shown)}[WHEEL] == "1.0"


@pytest.mark.needs("dpkg-deb", "dpkg-scanpackages")
def test_two_cold_builds_from_one_lock_have_the_same_module_layers(containers: Containers, mirror: Mirror,
                                                            tmp_path: Path) -> None:
    recipe = drift_recipe(tmp_path / "recipe", mirror.port)
    mirror.publish("1.0")
    containers.composer("lock", str(recipe))
    diff_ids = []
    for n in (1, 2):
        if n == 2:
            mirror.publish("2.0")  # between the two builds, the mirror moves on
        with private_storage(containers, tmp_path / f"storage-{n}") as box:
            box.composer("build", "--no-archive", "--no-sbom", "-o", str(tmp_path / f"out-{n}"), str(recipe))
            diff_ids.append(json.loads(box.podman("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                                  "localhost/composer-lock-test:test").stdout))
    assert len(diff_ids[0]) == 4  # base, motd, testmod, finalize
    # Every module layer is the same bytes. The debootstrap base layer is not (yet): two
    # debootstraps of the same packages differ in files of their own (docs/lock.md, "Not yet").
    assert diff_ids[0][1:] == diff_ids[1][1:]
