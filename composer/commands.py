"""Pure functions that build the argv lists composer runs. No process is started here."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from composer.model import Base, Family, Healthcheck, ImageConfig

CACHE_REPO = "localhost/composer-cache"
MODULE_MOUNT = "/run/composer/module"
OPTIONS_MOUNT = "/run/composer/options.json"
CA_MOUNT = "/run/composer/host-ca.crt"
STATE_MOUNT = "/run/composer/state"
OPTIONS_DIR = "/etc/composer/options"
BUILD_MOUNT_ROOT = "/run/composer"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed so that the same inputs give the same layer digests (created time and mtimes).
COMMIT_TIMESTAMP = 0


@dataclass(frozen=True)
class Storage:
    """Where buildah keeps images; empty fields leave it to CONTAINERS_STORAGE_CONF."""

    root: str = ""
    runroot: str = ""
    driver: str = ""

    def flags(self) -> list[str]:
        out: list[str] = []
        if self.root:
            out += ["--root", self.root]
        if self.runroot:
            out += ["--runroot", self.runroot]
        if self.driver:
            out += ["--storage-driver", self.driver]
        return out


def cache_ref(key: str) -> str:
    return f"{CACHE_REPO}:{key}"


def storage_ref(storage: Storage, ref: str) -> str:
    """A containers-storage: reference in storage (skopeo has no --root flags)."""
    if not storage.root:
        return f"containers-storage:{ref}"
    driver = f"{storage.driver}@" if storage.driver else ""
    runroot = f"+{storage.runroot}" if storage.runroot else ""
    return f"containers-storage:[{driver}{storage.root}{runroot}]{ref}"


def buildah(storage: Storage, *args: str) -> list[str]:
    return ["buildah", *storage.flags(), *args]


def from_image(storage: Storage, ref: str, name: str, pull: str = "never") -> list[str]:
    return buildah(storage, "from", "--quiet", f"--pull={pull}", "--name", name, ref)


def from_scratch(storage: Storage, name: str) -> list[str]:
    return buildah(storage, "from", "--quiet", "--name", name, "scratch")


def run_in(
    storage: Storage,
    container: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    volumes: Sequence[tuple[str, str, str]] = (),
    workdir: str = "",
) -> list[str]:
    """buildah run with chroot isolation (works as root and rootless on these machines)."""
    args = ["run", "--isolation", "chroot"]
    for host, target, opts in volumes:
        args += ["--volume", f"{host}:{target}:{opts}" if opts else f"{host}:{target}"]
    for k, v in (env or {}).items():
        args += ["--env", f"{k}={v}"]
    if workdir:
        args += ["--workingdir", workdir]
    return buildah(storage, *args, container, "--", *argv)


def copy_in(
    storage: Storage, container: str, src: str, dest: str, mode: str | None, owner: str | None
) -> list[str]:
    args = ["copy", "--quiet"]
    if mode:
        args += ["--chmod", mode]
    if owner:
        args += ["--chown", owner]
    return buildah(storage, *args, container, src, dest)


def config_env(
    storage: Storage, container: str, env: Sequence[tuple[str, str]], created_by: str = ""
) -> list[str]:
    args = ["config"]
    if created_by:
        args += ["--created-by", created_by]
    for k, v in env:
        args += ["--env", f"{k}={v}"]
    return buildah(storage, *args, container)


def healthcheck_flags(hc: Healthcheck) -> list[str]:
    # buildah splits this string on white space into the test list (the schema keeps
    # white space out of the items), so "CMD curl -f URL" becomes ["CMD", "curl", ...].
    return [
        "--healthcheck", " ".join(hc.test),
        "--healthcheck-interval", hc.interval,
        "--healthcheck-timeout", hc.timeout,
        "--healthcheck-retries", str(hc.retries),
        "--healthcheck-start-period", hc.start_period,
    ]


def config_image(
    storage: Storage,
    container: str,
    image: ImageConfig,
    labels: Sequence[tuple[str, str]],
    created_by: str,
) -> list[str]:
    args = ["config", "--created-by", created_by]
    for k, v in image.env:
        args += ["--env", f"{k}={v}"]
    for port in image.ports:
        args += ["--port", port]
    for volume in image.volumes:
        args += ["--volume", volume]
    if image.user:
        args += ["--user", image.user]
    if image.workdir:
        args += ["--workingdir", image.workdir]
    for k, v in (*image.labels, *labels):
        args += ["--label", f"{k}={v}"]
    args += ["--entrypoint", json.dumps(list(image.entrypoint))]
    args += ["--cmd", json.dumps(list(image.cmd)) if image.cmd else ""]
    if image.healthcheck:
        args += healthcheck_flags(image.healthcheck)
    return buildah(storage, *args, container)


def commit(storage: Storage, container: str, ref: str) -> list[str]:
    # docker format: OCI image configs have no HEALTHCHECK and buildah drops it there.
    return buildah(
        storage, "commit", "--quiet", "--rm", "--format", "docker",
        "--timestamp", str(COMMIT_TIMESTAMP), "--identity-label=false", container, ref,
    )


def debootstrap(base: Base, target: str, cache_dir: str = "") -> list[str]:
    args = ["debootstrap", f"--variant={base.variant}", f"--components={','.join(base.components)}"]
    if base.include:
        args.append(f"--include={','.join(base.include)}")
    if cache_dir:
        args.append(f"--cache-dir={cache_dir}")
    return [*args, base.ref, target, base.archive]


def sources_list(base: Base) -> str:
    return f"deb {base.archive} {base.ref} {' '.join(base.components)}\n"


# A snapshot's Release files are past their Valid-Until: apt must take them all the same.
SNAPSHOT_APT_CONF = ("etc/apt/apt.conf.d/10composer-snapshot", 'Acquire::Check-Valid-Until "false";\n')


# --- package families -------------------------------------------------------------

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}

# Lists, caches and logs a package install leaves behind and a layer should not keep.
CLEAN_PATHS = {
    Family.DEBIAN: (
        "/var/lib/apt/lists", "/var/cache/apt/archives", "/var/cache/apt/pkgcache.bin",
        "/var/cache/apt/srcpkgcache.bin", "/var/log/apt", "/var/log/dpkg.log",
        "/var/log/alternatives.log", "/var/cache/debconf/config.dat-old",
        "/var/cache/debconf/templates.dat-old",
        # ldconfig's cache of inode numbers and mtimes: differs on every build, rebuilt on use.
        "/var/cache/ldconfig/aux-cache",
    ),
    Family.ARCH: ("/var/cache/pacman/pkg", "/var/lib/pacman/sync", "/var/log/pacman.log",
                  "/var/cache/ldconfig/aux-cache"),
}

# Host folders mounted over these at build time, so downloads are shared between layers
# and builds without landing in a layer.
PACKAGE_CACHE_MOUNTS = {
    Family.DEBIAN: ("/var/lib/apt/lists", "/var/cache/apt/archives"),
    Family.ARCH: ("/var/lib/pacman/sync", "/var/cache/pacman/pkg"),
}
# The first of each: the package lists, which a module step sees read-only (composer fetches
# them in a step of its own, refresh_lists_argv), so no module can rewrite an index another
# module's install then trusts. apt writes only these folders below them during an install.
PACKAGE_LISTS = {family: mounts[0] for family, mounts in PACKAGE_CACHE_MOUNTS.items()}
LIST_WORK_FOLDERS = {Family.DEBIAN: ("partial", "auxfiles"), Family.ARCH: ()}


def refresh_lists_argv(family: Family) -> list[str]:
    """Fetch the package lists (composer's own step, on the base, before any module step)."""
    return ["apt-get", "update", "-q"] if family is Family.DEBIAN else ["pacman", "-Sy", "--noconfirm"]


def clean_step(family: Family, extra: Sequence[str] = ()) -> list[str]:
    """The argv that ends a step: the family's leftovers, the build mounts' folder and the
    module's own `clean` globs go. A fixed script; the paths reach it as arguments."""
    skip = PACKAGE_CACHE_MOUNTS[family]  # host folders mounted at build time, not ours
    paths = [p for p in CLEAN_PATHS[family] if p not in skip]
    script = 'for p in "$@"; do for f in $p; do rm -rf -- "$f"; done; done'
    return ["/bin/sh", "-c", script, "composer-clean", *paths, BUILD_MOUNT_ROOT, *extra]


def options_json(options: Mapping[str, object]) -> str:
    """A module's resolved options as the file its build steps and start-up hooks read."""
    return json.dumps(options, indent=2, sort_keys=True) + "\n"


def options_path(module: str) -> str:
    return f"{OPTIONS_DIR}/{module}.json"


def script_argv(first_line: str, path_in_container: str) -> list[str]:
    """Run a script by its #! line when it has one, else with /bin/sh."""
    if first_line.startswith("#!"):
        interpreter = shlex.split(first_line[2:].strip())
        if interpreter:
            return [*interpreter, path_in_container]
    return ["/bin/sh", path_in_container]


def option_env(options: Mapping[str, object]) -> dict[str, str]:
    """COMPOSER_OPT_<NAME> for each option: strings as is, everything else as JSON."""
    env = {}
    for name, value in options.items():
        key = "COMPOSER_OPT_" + name.upper().replace("-", "_")
        env[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return env
