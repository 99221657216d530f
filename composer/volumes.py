"""Backup and restore of a Pod's named volumes (the recipe's [pod.volumes]).

One tar per volume, written by `podman volume export` and read back by `podman volume
import`, plus index.json with each tar's size and sha256 and the owner and mode of the
volume's top folder (the tar holds only what is inside it). docs/operations.md shows the
commands; the argv lists are built by pure functions here and run by the Runner.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from composer.commands import Storage
from composer.errors import CommandError, ComposerError
from composer.keys import file_digest
from composer.model import Plan
from composer.runner import Runner
from composer.schema import display

INDEX = "index.json"
FORMAT = 1


@dataclass(frozen=True)
class Volume:
    """A named volume of the recipe: its key in [pod.volumes], podman's name, the mount path."""

    name: str
    claim: str
    path: str


@dataclass(frozen=True)
class Saved:
    """One volume in index.json."""

    name: str
    claim: str
    path: str
    file: str
    bytes: int
    sha256: str
    uid: int
    gid: int
    mode: str  # of the volume's top folder, octal text ("755")


def recipe_volumes(plan: Plan) -> tuple[Volume, ...]:
    """The named volumes the recipe's Pod claims (not /dev/shm, the secrets or devices)."""
    from composer.emit.kube import pod_config

    found = tuple(Volume(*entry) for entry in pod_config(plan).volumes)
    if not found:
        raise ComposerError(f"{display(plan.recipe.path)}: pod.volumes: the recipe names no volumes",
                            hint="add [pod.volumes] to the recipe; see docs/kube.md")
    return found


# ---- argv lists (pure) -------------------------------------------------------------------


def podman(storage: Storage, *args: str) -> list[str]:
    return ["podman", *storage.flags(), *args]


def mountpoint_argv(storage: Storage, claim: str) -> list[str]:
    return podman(storage, "volume", "inspect", "--format", "{{.Mountpoint}}", claim)


def users_argv(storage: Storage, claim: str) -> list[str]:
    """Containers (running or not) that mount the volume: podman cannot remove it then."""
    return podman(storage, "ps", "--all", "--filter", f"volume={claim}", "--format", "{{.Names}}")


def export_argv(storage: Storage, claim: str, tar: Path) -> list[str]:
    return podman(storage, "volume", "export", "--output", str(tar), claim)


def import_argv(storage: Storage, claim: str, tar: Path) -> list[str]:
    return podman(storage, "volume", "import", claim, str(tar))


def in_namespace(storage: Storage, argv: list[str]) -> list[str]:
    """A rootless podman's volume files are owned by ids of its user namespace."""
    return argv if os.geteuid() == 0 else podman(storage, "unshare", *argv)


# ---- backup --------------------------------------------------------------------------------


def backup(runner: Runner, storage: Storage, plan: Plan, dest: Path, force: bool,
           say: Callable[[str], None]) -> list[Saved]:
    """Export every volume of the recipe into dest and write dest/index.json."""
    volumes = recipe_volumes(plan)
    index = dest / INDEX
    if index.exists() and not force:
        raise ComposerError(f"{index}: a backup is already there",
                            hint="choose another folder, or --force to replace it")
    mounts = {v.claim: mountpoint(runner, storage, v, plan) for v in volumes}
    for v in volumes:
        if users := live_users(runner, storage, v.claim):
            say(f"warning: {v.claim} is in use by {', '.join(users)}: files written during the "
                "backup may be caught half-way (podman kube down first for a consistent copy)")
    # Volumes hold credentials (~/.claude, the agents' configs): the backup is the owner's alone.
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    index.unlink(missing_ok=True)  # a half-replaced backup must not look complete
    saved: list[Saved] = []
    for v in volumes:
        tar = dest / f"{v.claim}.tar"
        part = tar.with_name(tar.name + ".part")
        part.touch(mode=0o600)
        part.chmod(0o600)
        runner.run(export_argv(storage, v.claim, part))
        part.replace(tar)
        uid, gid, mode = top_folder(runner, storage, mounts[v.claim])
        entry = Saved(v.name, v.claim, v.path, tar.name, tar.stat().st_size, file_digest(tar),
                      uid, gid, mode)
        saved.append(entry)
        say(f"{v.claim}: {tar} ({entry.bytes} bytes)")
    document = {
        "format": FORMAT,
        "recipe": plan.recipe.name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "volumes": [asdict(s) for s in saved],
    }
    index.write_text(json.dumps(document, indent=2) + "\n")
    say(f"index {index}")
    return saved


def mountpoint(runner: Runner, storage: Storage, volume: Volume, plan: Plan) -> str:
    try:
        return runner.output(mountpoint_argv(storage, volume.claim)).strip()
    except CommandError:
        raise ComposerError(
            f"{display(plan.recipe.path)}: pod.volumes.{volume.name}: podman has no volume {volume.claim}",
            hint="play the Pod once (podman kube play) or check `podman volume ls`",
        ) from None


def live_users(runner: Runner, storage: Storage, claim: str) -> list[str]:
    return runner.output(users_argv(storage, claim)).split()


def top_folder(runner: Runner, storage: Storage, folder: str) -> tuple[int, int, str]:
    uid, gid, mode = runner.output(in_namespace(storage, ["stat", "-c", "%u %g %a", folder])).split()
    return int(uid), int(gid), mode


# ---- restore -------------------------------------------------------------------------------


def restore(runner: Runner, storage: Storage, plan: Plan, src: Path, force: bool,
            say: Callable[[str], None]) -> list[Saved]:
    """Import the tars of src into the recipe's volumes; non-empty volumes need force.

    Everything is checked (index, digests, volumes free and empty) before anything is
    changed, so a refused restore leaves the volumes as they were."""
    saved = read_index(src, plan)
    for i, s in enumerate(saved):
        if file_digest(src / s.file) != s.sha256:
            raise ComposerError(f"{src / INDEX}: volumes[{i}].sha256: {s.file} does not match it",
                                hint="the backup is damaged or was changed; use another copy")
    existing: dict[str, str] = {}
    for s in saved:
        try:
            existing[s.claim] = runner.output(mountpoint_argv(storage, s.claim)).strip()
        except CommandError:
            continue  # no such volume yet: restore makes it
        if users := runner.output(users_argv(storage, s.claim)).split():
            raise ComposerError(f"volume {s.claim} is used by {', '.join(users)}",
                                hint="podman kube down the Pod first (its volumes are kept)")
        if not force and not is_empty(runner, storage, existing[s.claim]):
            raise ComposerError(f"volume {s.claim} is not empty",
                                hint="--force replaces its content with the backup's")
    has_image = image_exists(runner, storage, plan.image_ref)
    if not has_image:
        say(f"warning: no image {plan.image_ref} here: the volumes' top folders get the owner "
            "and mode of the image's folders when the Pod first mounts them, not the backup's")
    for s in saved:
        if s.claim in existing:
            runner.run(podman(storage, "volume", "rm", s.claim))
        runner.run(podman(storage, "volume", "create", s.claim))
        runner.run(import_argv(storage, s.claim, src / s.file))
        if has_image:
            runner.run(first_mount_argv(storage, plan.image_ref, s.claim, s.path))
            folder = runner.output(mountpoint_argv(storage, s.claim)).strip()
            runner.run(in_namespace(storage, ["chown", f"{s.uid}:{s.gid}", folder]))
            runner.run(in_namespace(storage, ["chmod", s.mode, folder]))
        say(f"{s.claim}: restored from {src / s.file}")
    return saved


def image_exists(runner: Runner, storage: Storage, ref: str) -> bool:
    try:
        runner.output(podman(storage, "image", "exists", ref))
    except CommandError:
        return False
    return True


def first_mount_argv(storage: Storage, image: str, claim: str, path: str) -> list[str]:
    """A container that mounts the new volume once and does nothing: podman gives a new
    volume the owner and mode of the image's folder at its first mount, which would undo
    the backup's; after this run it leaves the volume alone."""
    return podman(storage, "run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "true",
                  "--volume", f"{claim}:{path}", image)


def is_empty(runner: Runner, storage: Storage, folder: str) -> bool:
    listing = runner.output(in_namespace(storage, ["find", folder, "-mindepth", "1", "-maxdepth", "1"]))
    return not listing.strip()


def read_index(src: Path, plan: Plan) -> list[Saved]:
    """index.json, checked field by field against the recipe's volumes."""
    where = src / INDEX
    try:
        document: Any = json.loads(where.read_text())
    except FileNotFoundError:
        raise ComposerError(f"{where}: no backup index here",
                            hint="name the folder `composer volumes backup` wrote") from None
    except json.JSONDecodeError as e:
        raise ComposerError(f"{where}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ComposerError(f"{where}: format: expected {FORMAT}")
    if document.get("recipe") != plan.recipe.name:
        raise ComposerError(f"{where}: recipe: {document.get('recipe')!r} is not {plan.recipe.name!r}",
                            hint="restore with the recipe the backup was made from")
    wanted = {v.claim: v for v in recipe_volumes(plan)}
    saved: list[Saved] = []
    for i, raw in enumerate(document.get("volumes") or []):
        try:
            entry = Saved(**raw)
        except TypeError:
            raise ComposerError(f"{where}: volumes[{i}]: not a volume entry") from None
        if entry.claim not in wanted:
            raise ComposerError(f"{where}: volumes[{i}].claim: {entry.claim} is not a volume of the recipe")
        if Path(entry.file).name != entry.file or not (src / entry.file).is_file():
            raise ComposerError(f"{where}: volumes[{i}].file: {entry.file} is not in {src}")
        if not all(type(n) is int for n in (entry.bytes, entry.uid, entry.gid)):
            raise ComposerError(f"{where}: volumes[{i}]: bytes, uid and gid must be integers")
        if not entry.mode or set(entry.mode) - set("01234567") or len(entry.mode) > 4:
            raise ComposerError(f"{where}: volumes[{i}].mode: {entry.mode!r} is not an octal mode")
        saved.append(entry)
    missing = sorted(set(wanted) - {s.claim for s in saved})
    if missing:
        raise ComposerError(f"{where}: volumes: no backup of {', '.join(missing)}")
    return saved
