"""The frozen data composer works on: recipe, layer module, step and plan."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Family(StrEnum):
    DEBIAN = "debian"
    ARCH = "arch"


class BaseKind(StrEnum):
    DEBOOTSTRAP = "debootstrap"
    IMAGE = "image"
    OCI_ARCHIVE = "oci-archive"
    SCRATCH = "scratch"


class Layering(StrEnum):
    LINEAR = "linear"
    RESTACK = "restack"


class CacheStatus(StrEnum):
    CACHED = "cached"
    MISSING = "missing"


@dataclass(frozen=True)
class Base:
    kind: BaseKind
    ref: str  # suite for debootstrap, image reference, archive path; "" for scratch
    family: Family
    mirror: str = "http://deb.debian.org/debian"
    components: tuple[str, ...] = ("main",)
    variant: str = "minbase"
    include: tuple[str, ...] = ()
    # composer.lock (docs/lock.md): the archive as it was then, from snapshot.debian.org
    # (or a mirror of it); mkosi's Snapshot= form.
    snapshot: str = ""  # YYYYMMDDTHHMMSSZ
    snapshot_mirror: str = "https://snapshot.debian.org/archive/debian"

    @property
    def archive(self) -> str:
        """The Debian archive the base and every apt install of its layers use."""
        return f"{self.snapshot_mirror.rstrip('/')}/{self.snapshot}/" if self.snapshot else self.mirror

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.ref}" if self.ref else str(self.kind)


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    interval: str = "30s"
    timeout: str = "10s"
    retries: int = 3
    start_period: str = "0s"


@dataclass(frozen=True)
class ImageConfig:
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None


@dataclass(frozen=True)
class Secret:
    name: str
    description: str = ""


DEFAULT_SECRETS_PATH = "/run/secrets"


class PodSecurity(StrEnum):
    SEED = "seed"  # the capabilities the recipe lists, as the seed asks
    HARDENED = "hardened"  # without SYS_ADMIN, NET_ADMIN and SYS_PTRACE (docs/kube.md)


@dataclass(frozen=True)
class PodPort:
    container: int
    host: int | None = None
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class PodVolume:
    """A named volume: `name = "/path"` (the shorthand) or `name = { path, claim }`."""

    path: str
    claim: str = ""  # "": <recipe name>-<volume name>


@dataclass(frozen=True)
class Resources:
    limits: tuple[tuple[str, str], ...] = ()
    requests: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LivenessProbe:
    """An httpGet probe as the recipe gives it; unset timing comes from the image's health
    check when the manifest is rendered (emit/kube.py)."""

    path: str = "/health"
    port: int = 9090
    interval: str = ""
    timeout: str = ""
    retries: int | None = None
    start_period: str = ""


@dataclass(frozen=True)
class PodBasics:
    """What [pod] says that the manifest uses as it is (emit/kube.py's PodConfig shares it)."""

    hostname: str = ""
    network: str = ""
    aliases: tuple[str, ...] = ()
    shm_size: str = ""
    capabilities: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    gpus: int = 0
    ports: tuple[PodPort, ...] = ()
    secrets_path: str = DEFAULT_SECRETS_PATH


@dataclass(frozen=True)
class Pod(PodBasics):
    """The recipe's [pod]: the Pod of the kube manifest (docs/kube.md)."""

    volumes: tuple[tuple[str, PodVolume], ...] = ()
    resources: Resources = Resources()
    liveness: bool | LivenessProbe = False
    security: PodSecurity = PodSecurity.SEED

    @property
    def probe(self) -> LivenessProbe | None:
        """The liveness probe (`liveness = true`: the defaults), None without one."""
        if self.liveness is False:
            return None
        return self.liveness if isinstance(self.liveness, LivenessProbe) else LivenessProbe()


@dataclass(frozen=True)
class LayerRef:
    """One `[[layers]]` entry of a recipe: a module name and its raw options."""

    module: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    index: int = 0  # position in the resolved recipe
    file: str = ""  # the recipe file that declared it, for error messages
    field: str = ""  # "layers[3]" in that file
    replaced: str = ""  # the parent's module a child's `replace` swapped for this one
    carried: tuple[str, ...] = ()  # options set for the replaced module, carried over to this one

    @property
    def where(self) -> str:
        return f"{self.file}: {self.field}"

    @property
    def module_where(self) -> str:
        """Where the module's name was given: layers[3].module, or a child's replace.<old>."""
        return self.where if self.field.startswith("replace.") else f"{self.where}.module"


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    base: Base
    layers: tuple[LayerRef, ...]
    tag: str = "latest"
    description: str = ""
    image: ImageConfig = ImageConfig()
    secrets: tuple[Secret, ...] = ()
    pod: Pod = Pod()
    layering: Layering = Layering.LINEAR
    foundation: tuple[str, ...] = ()  # restack: modules in the common parent as declared
    stack_order: tuple[str, ...] = ()  # restack: these restacked modules first, bottom first
    module_dirs: tuple[Path, ...] = ()  # layers/ folders searched, first match wins (recipe.module_dirs)
    cache_from: str = ""  # [cache] from: registry repository (docs/cache.md)
    cache_to: str = ""  # [cache] to
    parent_file: Path | None = None  # the recipe it extends, resolved (None: it extends none)
    # Modules a child recipe dropped from its parent: (module, file, field), for messages.
    removed: tuple[tuple[str, str, str], ...] = ()
    # Values a child's [unset] dropped whole: (path such as "pod.network", file).
    unset: tuple[tuple[str, str], ...] = ()
    # The merged recipe as TOML data and, per value path ("pod.volumes.logs"), the file
    # that set it: what `composer plan --effective` prints.
    effective: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    origins: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def removed_by(self, module: str) -> str:
        """'child.toml: remove[0]' when a child recipe dropped module, else ''."""
        return next((f"{f}: {fld}" for name, f, fld in self.removed if name == module), "")

    def origin(self, *path: str) -> str:
        """The file that set the value at path (or the nearest enclosing one)."""
        parts = list(path)
        while parts:
            found = self.origins.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return display_name(self.path)


@dataclass(frozen=True)
class FileSpec:
    src: str  # relative to the module folder
    dest: str
    mode: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class ScriptSpec:
    run: str  # relative to the module folder
    families: tuple[Family, ...] = ()


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    user: str = "root"
    priority: int = 500
    autostart: bool = True
    autorestart: bool = True
    startsecs: int = 1
    delay: int = 0
    directory: str = ""
    environment: tuple[tuple[str, str], ...] = ()
    module: str = ""


class CredentialFormat(StrEnum):
    JSON = "json"  # {field: secret value, ...}
    RAW = "raw"  # the one secret's value as it is


@dataclass(frozen=True)
class Credential:
    """A secret (or several) a start-up hook writes into a file only its user can read."""

    user: str
    file: str  # relative to the user's home, or absolute under /run/composer/
    format: CredentialFormat = CredentialFormat.JSON
    secrets: tuple[tuple[str, str], ...] = ()  # json: field -> secret name
    optional: tuple[str, ...] = ()  # json: fields whose secret may be absent (the rest must be set)
    secret: str = ""  # raw: the secret's name
    generate: bool = False  # raw: a random value at first start when the secret is absent
    module: str = ""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    version: str
    description: str = ""
    options_schema: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    packages: tuple[tuple[Family, tuple[str, ...]], ...] = ()
    # option -> value -> family -> packages: installed when the option has (or lists) that value
    option_packages: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    recommends: bool = False
    files: tuple[FileSpec, ...] = ()
    scripts: tuple[ScriptSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    services: tuple[Service, ...] = ()
    hooks: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None
    credentials: tuple[Credential, ...] = ()
    clean: tuple[str, ...] = ()  # paths (globs) removed at the end of the step

    def families(self) -> tuple[Family, ...] | None:
        """Families this module supports, or None when it is family-neutral."""
        return tuple(f for f, _ in self.packages) if self.packages else None

    def packages_for(self, family: Family, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The family's packages, and those the options select through option_packages."""
        out = list(dict(self.packages).get(family, ()))
        for option, by_value in self.option_packages.items():
            value = (options or {}).get(option)
            chosen = value if isinstance(value, list) else [] if value is None else [value]
            for item in chosen:
                out += by_value.get(option_value_text(item), {}).get(str(family), [])
        return tuple(dict.fromkeys(out))

    def scripts_for(self, family: Family) -> tuple[ScriptSpec, ...]:
        return tuple(s for s in self.scripts if not s.families or family in s.families)


def option_value_text(value: Any) -> str:
    """How an option value is named as a key: TOML keys are strings, booleans lower case."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class LayerKind(StrEnum):
    BASE = "base"
    MODULE = "module"
    RECONCILE = "reconcile"
    FINALIZE = "finalize"


@dataclass(frozen=True)
class Layer:
    """One layer of a plan, whatever its kind: what build, explain and the CLI walk."""

    index: int
    kind: LayerKind
    name: str  # the module, the base's source, or "finalize"
    key: str
    parent_key: str
    key_document: dict[str, Any] = field(hash=False, compare=False)
    step: Step | None = field(default=None, compare=False)  # a module layer's step

    @property
    def label(self) -> str:
        """How the layer is named to a person and matched across plans: a module by its
        name, the base by its source (a module may be called "base" too)."""
        return f"base {self.name}" if self.kind is LayerKind.BASE else self.name

    @property
    def restacked(self) -> bool:
        return self.step is not None and self.step.restacked


@dataclass(frozen=True)
class Step:
    """One layer to build: a module with resolved options, keyed on its parent."""

    index: int  # 1-based among the layers
    module: Module
    options: dict[str, Any] = field(hash=False)
    hooks: tuple[tuple[str, Path], ...]  # (name, file) pulled in from hook folders
    parent_key: str
    key: str
    key_document: dict[str, Any] = field(hash=False, compare=False)
    restacked: bool = False  # built on the common parent and stacked (restack layering)
    why: str = ""  # restack layering: why it is or is not restacked


@dataclass(frozen=True)
class ReconcileStep:
    """Restack layering: the module layers stacked on their common parent, and one
    generated layer on top that merges the state they each changed (package database,
    users, alternatives, caches). Keyed by the parent and the ordered member keys."""

    parent_key: str  # the common parent
    members: tuple[str, ...]  # keys of the restacked module layers, in stack order
    key: str
    key_document: dict[str, Any] = field(hash=False, compare=False)

    @property
    def stack_key(self) -> str:
        """The key of the plain stack (no reconcile layer yet) the reconcile layer is built on."""
        return self.key_document["stack"]


@dataclass(frozen=True)
class BaseStep:
    base: Base
    key: str
    key_document: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class FinalizeStep:
    parent_key: str
    key: str
    services: tuple[Service, ...]
    image: ImageConfig  # the merged config: modules' then the recipe's
    labels: tuple[tuple[str, str], ...]
    env_names: tuple[str, ...]  # every variable of the image config, for login shells
    credentials: tuple[dict[str, Any], ...] = field(hash=False, compare=False)
    key_document: dict[str, Any] = field(hash=False, compare=False)
    secret_names: tuple[str, ...] = ()  # unset before the process manager starts (entrypoint)


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    base: BaseStep
    steps: tuple[Step, ...]
    finalize: FinalizeStep
    reconcile: ReconcileStep | None = None
    lock: Any = field(default=None, compare=False)  # composer.lockfile.Lock the keys follow, if any
    notes: tuple[str, ...] = field(default=(), compare=False)  # warnings about the recipe, one line each

    @property
    def image_ref(self) -> str:
        return f"localhost/{self.recipe.name}:{self.recipe.tag}"

    def layers(self) -> list[Layer]:
        """Base, modules, the reconcile layer (restack) and finalize, in build order, as
        one kind of thing. The reconcile layer comes right after the last restacked module."""
        out = [Layer(0, LayerKind.BASE, self.base.base.source, self.base.key, "", self.base.key_document)]
        last_restacked = max((i for i, s in enumerate(self.steps) if s.restacked), default=None)
        for i, s in enumerate(self.steps):
            out.append(Layer(len(out), LayerKind.MODULE, s.module.name, s.key, s.parent_key, s.key_document, s))
            if i == last_restacked and self.reconcile is not None:
                r = self.reconcile
                out.append(Layer(len(out), LayerKind.RECONCILE, "reconcile", r.key, r.parent_key, r.key_document))
        final = self.finalize
        out.append(Layer(len(out), LayerKind.FINALIZE, "finalize", final.key, final.parent_key,
                         final.key_document))
        return out

    def all_keys(self) -> list[str]:
        return [layer.key for layer in self.layers()]


# --- one loader for every dataclass above -----------------------------------------


def from_raw(cls: type[T], raw: Mapping[str, Any], **extra: Any) -> T:
    """Build a dataclass from its validated TOML table: the dataclass's defaults fill what
    the table leaves out (the schema holds no defaults of its own), lists become tuples,
    tables of strings become (key, value) pairs, nested tables nested dataclasses."""
    values = {name: _convert(raw[name], hint) for name, hint in _field_hints(cls) if name in raw}
    return cls(**values, **extra)


_FIELD_HINTS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _field_hints(cls: type) -> tuple[tuple[str, Any], ...]:
    """Each field's evaluated type, once per class: get_type_hints evaluates every
    annotation string again on each call (half of loading a module without this)."""
    if cls not in _FIELD_HINTS:
        hints = typing.get_type_hints(cls)
        _FIELD_HINTS[cls] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
    return _FIELD_HINTS[cls]


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        # `bool | Table`: a table is the dataclass, anything else the plain type
        tables = [a for a in inner if isinstance(a, type) and dataclasses.is_dataclass(a)]
        return _convert(value, tables[0] if tables and isinstance(value, Mapping) else inner[0])
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0]
        if isinstance(value, Mapping):
            return tuple((_convert(k, typing.get_args(item)[0]), _convert(v, typing.get_args(item)[1]))
                         for k, v in value.items())
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, item) for v in value)
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        # A table given as one value is its first field (`logs = "/var/log"` is { path = ... }).
        return from_raw(hint, value if isinstance(value, Mapping) else {dataclasses.fields(hint)[0].name: value})
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(value)
    return value


def display_name(path: Path) -> str:
    """A path relative to the working folder when inside it (as schema.display)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
