"""Stack module images built on one common parent into one image, without rebuilding.

Each module image is its parent P plus exactly one layer of its own. The stacked image
is P's layers followed by each module's top layer in recipe order, with P's config, each
module's config changes on top (later wins) and one history entry per module.

It is written as a `dir:` image holding only the manifest and the config, then copied
into the same containers-storage with skopeo. c/image's storage destination finds every
layer by its uncompressed digest (TryReusingBlob), so no layer blob is read, written or
compressed; c/storage re-applies a module layer only when it sits on a different parent
than the one it was built on (docs/restack.md, "Stacking").
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from composer import commands
from composer.errors import CommandError, ComposerError
from composer.runner import Runner

EPOCH = "1970-01-01T00:00:00Z"
DIR_VERSION = "Directory Transport Version: 1.1\n"
# Config fields that are maps: a module's additions and removals merge key by key.
MAP_FIELDS = ("Labels", "ExposedPorts", "Volumes")
# Fields of the old docker "container" that ran the commit: they name a container that
# does not exist for a stacked image.
DROPPED_TOP_FIELDS = ("container", "parent")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque")


@dataclass(frozen=True)
class ImageDocs:
    """An image's raw manifest and config, as stored in containers-storage."""

    ref: str
    manifest: Mapping[str, Any]
    config: Mapping[str, Any]
    image_id: str = ""  # its config's digest (hex), as stored

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])

    @property
    def layers(self) -> list[Mapping[str, Any]]:
        return list(self.manifest.get("layers") or [])

    @property
    def history(self) -> list[Mapping[str, Any]]:
        return list(self.config.get("history") or [])


@dataclass(frozen=True)
class Stacked:
    """The documents of a stacked image; image_id is its config digest's hex."""

    manifest: bytes
    config: bytes
    # (variable, module ref whose value lost, module ref whose value won), for a
    # reconcile step that wants to join PATH-like variables instead.
    env_overridden: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def image_id(self) -> str:
        return hashlib.sha256(self.config).hexdigest()


# --- pure part: documents in, documents out -------------------------------------------


def own_layer(parent: ImageDocs, module: ImageDocs) -> tuple[Mapping[str, Any], str]:
    """The module's one layer over parent (manifest descriptor, diff ID), or an error."""
    base, mine = parent.diff_ids, module.diff_ids
    if mine[: len(base)] != base:
        raise ComposerError(
            f"{module.ref}: not built on {parent.ref} (its first {len(base)} layers differ)",
            hint=f"build the module on {parent.ref} to stack it",
        )
    extra = len(mine) - len(base)
    if extra != 1:
        raise ComposerError(
            f"{module.ref}: has {extra} layers of its own over {parent.ref}; stacking needs exactly 1",
            hint="commit the module in one step on the common parent",
        )
    if module.manifest.get("mediaType") != parent.manifest.get("mediaType"):
        raise ComposerError(
            f"{module.ref}: manifest type {module.manifest.get('mediaType')} differs from "
            f"{parent.ref}'s {parent.manifest.get('mediaType')}",
            hint="commit parent and modules in one format (composer uses docker)",
        )
    if len(module.layers) != len(mine):
        raise ComposerError(f"{module.ref}: manifest lists {len(module.layers)} layers, config {len(mine)}")
    return module.layers[-1], mine[-1]


def env_map(env: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or ():
        name, _, value = item.partition("=")
        out[name] = value
    return out


def merge_env(
    merged: dict[str, str], parent: Mapping[str, str], module: Mapping[str, str]
) -> list[str]:
    """Apply what module changed relative to parent to merged; returns the names set."""
    changed = [name for name, value in module.items() if parent.get(name) != value]
    for name in changed:
        merged[name] = module[name]
    for name in parent:
        if name not in module:
            merged.pop(name, None)
    return changed


def merge_config(
    parent: ImageDocs, modules: Sequence[ImageDocs]
) -> tuple[dict[str, Any], tuple[tuple[str, str, str], ...]]:
    """P's runtime config with each module's changes applied in order (later wins)."""
    base: Mapping[str, Any] = parent.config.get("config") or {}
    merged = copy.deepcopy(dict(base))
    base_env = env_map(base.get("Env"))
    env = dict(base_env)
    setter: dict[str, str] = {}
    overridden: list[tuple[str, str, str]] = []
    for module in modules:
        mine: Mapping[str, Any] = module.config.get("config") or {}
        for name in merge_env(env, base_env, env_map(mine.get("Env"))):
            if name in setter:
                overridden.append((name, setter[name], module.ref))
            setter[name] = module.ref
        # Ordered (not a set): the config's bytes, hence the image ID, must not vary.
        for key in [*base, *(k for k in mine if k not in base)]:
            if key == "Env" or mine.get(key) == base.get(key):
                continue
            if key in MAP_FIELDS:
                merged[key] = merge_map(merged.get(key), base.get(key), mine.get(key))
            else:
                merged[key] = copy.deepcopy(mine.get(key))
    if env or "Env" in merged:
        merged["Env"] = [f"{k}={v}" for k, v in env.items()]
    return merged, tuple(overridden)


def merge_map(merged: Any, parent: Any, module: Any) -> dict[str, Any] | None:
    out = dict(merged or {})
    before, after = dict(parent or {}), dict(module or {})
    for key, value in after.items():
        if before.get(key, object()) != value:
            out[key] = value
    for key in before:
        if key not in after:
            out.pop(key, None)
    return out or None


def stack_documents(parent: ImageDocs, modules: Sequence[ImageDocs],
                    labels: Mapping[str, str] | None = None) -> Stacked:
    """The manifest and config of parent's layers + each module's own layer (labels set
    over the merged ones)."""
    if not modules:
        raise ComposerError(f"stack on {parent.ref}: no module images given")
    layers = [dict(d) for d in parent.layers]
    diff_ids = parent.diff_ids
    history = [dict(h) for h in parent.history]
    for module in modules:
        descriptor, diff_id = own_layer(parent, module)
        layers.append(dict(descriptor))
        diff_ids.append(diff_id)
        # The module's own entries (one per commit step, empty ones included) name it.
        history += [dict(h) for h in module.history[len(parent.history):]]
    runtime, overridden = merge_config(parent, modules)
    if labels:
        runtime["Labels"] = {**(runtime.get("Labels") or {}), **labels}
    return _documents(parent.manifest, layers, _config(parent, runtime, diff_ids, history), overridden)


def _config(parent: ImageDocs, runtime: dict[str, Any], diff_ids: list[str],
            history: list[dict[str, Any]]) -> dict[str, Any]:
    """parent's image config with this runtime config, layers and history (and neither the
    container nor the image it was committed from)."""
    config = {k: copy.deepcopy(v) for k, v in parent.config.items() if k not in DROPPED_TOP_FIELDS}
    config["created"] = EPOCH
    config["config"] = runtime
    if "container_config" in config:
        config["container_config"] = copy.deepcopy(runtime)
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config["history"] = history
    return config


def transplant_documents(parent: ImageDocs, donor: ImageDocs, labels: Mapping[str, str]) -> Stacked:
    """parent's layers and runtime config (labels set), then donor's top layer with its
    history entry: a layer made on another parent whose changes the caller knows to hold
    on this one (a reconcile layer reused, docs/restack.md "Reconcile reuse")."""
    if donor.manifest.get("mediaType") != parent.manifest.get("mediaType"):
        raise ComposerError(f"{donor.ref}: manifest type {donor.manifest.get('mediaType')} differs from "
                            f"{parent.ref}'s {parent.manifest.get('mediaType')}")
    if not donor.diff_ids or len(donor.layers) != len(donor.diff_ids) or not donor.history \
            or donor.history[-1].get("empty_layer"):
        raise ComposerError(f"{donor.ref}: its top layer and history entry do not match")
    runtime = copy.deepcopy(dict(parent.config.get("config") or {}))
    runtime["Labels"] = {**(runtime.get("Labels") or {}), **labels}
    history = [*(dict(h) for h in parent.history), {**donor.history[-1], "comment": f"FROM {parent.ref}"}]
    config = _config(parent, runtime, [*parent.diff_ids, donor.diff_ids[-1]], history)
    return _documents(parent.manifest, [*parent.layers, donor.layers[-1]], config)


def transplant_image(runner: Runner, storage: commands.Storage, parent_ref: str, donor_ref: str, target_ref: str,
                     labels: Mapping[str, str]) -> str:
    """Tag target_ref as parent + donor's top layer (transplant_documents); its image ID."""
    stacked = transplant_documents(inspect_docs(runner, storage, parent_ref),
                                   inspect_docs(runner, storage, donor_ref), labels)
    materialise(runner, storage, stacked, target_ref)
    return stacked.image_id


def without_container(image: ImageDocs) -> Stacked | None:
    """image's documents without the fields that name the container which committed it and
    the image it was committed on (random IDs, different on every machine), so that its ID
    is a function of its layers and config alone; None when it has neither field."""
    if not any(name in image.config for name in DROPPED_TOP_FIELDS):
        return None
    config = {k: copy.deepcopy(v) for k, v in image.config.items() if k not in DROPPED_TOP_FIELDS}
    return _documents(image.manifest, image.layers, config)


def _documents(
    manifest_base: Mapping[str, Any],
    layers: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    overridden: tuple[tuple[str, str, str], ...] = (),
) -> Stacked:
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest = copy.deepcopy(dict(manifest_base))
    manifest["config"] = {
        "mediaType": manifest_base["config"]["mediaType"],
        "size": len(config_bytes),
        "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
    }
    manifest["layers"] = [dict(layer) for layer in layers]
    manifest.pop("annotations", None)
    return Stacked(json.dumps(manifest, separators=(",", ":")).encode(), config_bytes, overridden)


# --- talking to containers-storage ----------------------------------------------------


def inspect_docs(runner: Runner, storage: commands.Storage, ref: str) -> ImageDocs:
    """One buildah call: the image's raw manifest and config as stored."""
    try:
        text = runner.output(commands.buildah(storage, "inspect", "--type", "image", ref))
    except CommandError as e:
        raise ComposerError(f"{ref}: no such image in containers-storage ({e.output.strip()[-200:]})") from None
    info = json.loads(text)
    return ImageDocs(ref, json.loads(info["Manifest"]), json.loads(info["Config"]),
                     hashlib.sha256(info["Config"].encode()).hexdigest())


def stack_image(
    runner: Runner,
    storage: commands.Storage,
    parent_ref: str,
    module_refs: Sequence[str],
    target_ref: str,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Tag target_ref as parent + each module's own layer, in order (labels set); returns
    its image ID."""
    # One buildah call per image, a few at a time: each is mostly the program's start.
    with ThreadPoolExecutor(max_workers=4) as pool:
        parent, *modules = pool.map(lambda ref: inspect_docs(runner, storage, ref), [parent_ref, *module_refs])
    stacked = stack_documents(parent, modules, labels)
    materialise(runner, storage, stacked, target_ref)
    return stacked.image_id


def materialise(runner: Runner, storage: commands.Storage, stacked: Stacked, target_ref: str) -> None:
    """Copy a manifest + config (no layer blobs) into storage: every layer is reused."""
    with tempfile.TemporaryDirectory(prefix="composer-stack-") as tmp:
        folder = Path(tmp)
        (folder / "version").write_text(DIR_VERSION)
        (folder / "manifest.json").write_bytes(stacked.manifest)
        (folder / stacked.image_id).write_bytes(stacked.config)
        argv = ["skopeo", "copy", "--quiet", f"dir:{folder}", commands.storage_ref(storage, target_ref)]
        try:
            runner.run(argv)
        except CommandError as e:
            raise ComposerError(
                f"stack {target_ref}: skopeo copy failed: {e.tail(3)}",
                hint="every layer must already be in this containers-storage (same --root)",
            ) from None


# --- what a module's layer changed ----------------------------------------------------


def layer_folders(runner: Runner, storage: commands.Storage, image_refs: Sequence[str]) -> list[Path]:
    """The folder holding each image's top layer's own files (overlay's diff folder), in
    order, from one podman call.

    Read only: it is the stored layer itself. vfs keeps whole copies, not changes, so
    there it is an error rather than a slow diff.
    """
    argv = ["podman", *storage.flags(), "image", "inspect", "--format",
            "{{.GraphDriver.Name}} {{.GraphDriver.Data.UpperDir}}", *image_refs]
    try:
        lines = runner.output(argv).strip().splitlines()
    except CommandError as e:
        raise ComposerError(f"{', '.join(image_refs)}: not all in containers-storage "
                            f"({e.output.strip()[-200:]})") from None
    folders = []
    for ref, line in zip(image_refs, lines, strict=True):
        driver, _, upper = line.partition(" ")
        if driver != "overlay" or not upper or upper == "<no value>":
            raise ComposerError(
                f"{ref}: storage driver {driver!r} keeps no folder of a layer's own changes",
                hint="use the overlay driver (root builds do); vfs stores every layer as a full copy",
            )
        folders.append(Path(upper))
    return folders


class Change(NamedTuple):
    """One entry of a layer: path in the image, kind, content digest (files, symlinks).

    A tuple so that callers can unpack (path, kind, digest); kind is file, dir, symlink,
    whiteout (the path is deleted), opaque (a dir that hides the lower one's entries)
    or special (fifo, socket, device).
    """

    path: str
    kind: str
    digest: str | None


@dataclass
class DigestCache:
    """File digests by (device, inode, size, mtime, ctime): a stored layer never changes,
    and a hard link or a second listing costs nothing. Saved as JSON when given a path."""

    path: Path | None = None
    entries: dict[str, str] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path) -> DigestCache:
        entries: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            entries = dict(json.loads(path.read_text()))
        return cls(path, entries)

    def digest(self, path: str, st: os.stat_result) -> str:
        key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        found = self.entries.get(key)
        if found is None:
            found = file_digest(path)
            self.entries[key] = found
            self.dirty = True
        return found

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.entries))
        partial.replace(self.path)
        self.dirty = False


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return False


def classify(full: str, st: os.stat_result, cache: DigestCache) -> tuple[str, str | None]:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "file", cache.digest(full, st)
    if stat.S_ISDIR(mode):
        return ("opaque" if is_opaque(full) else "dir"), None
    if stat.S_ISLNK(mode):
        return "symlink", "sha256:" + hashlib.sha256(os.fsencode(os.readlink(full))).hexdigest()
    if stat.S_ISCHR(mode) and st.st_rdev == 0:
        return "whiteout", None
    return "special", None


def list_changes(folder: Path, cache: DigestCache | None = None) -> list[Change]:
    """Every entry of a layer folder, sorted by path ("/etc/x"), the folder itself left out."""
    cache = cache if cache is not None else DigestCache()
    root = os.fspath(folder)
    out: list[Change] = []
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *files]:
            full = os.path.join(current, name)
            kind, digest = classify(full, os.lstat(full), cache)
            out.append(Change("/" + os.path.relpath(full, root), kind, digest))
    cache.save()
    out.sort(key=lambda c: c.path)
    return out
