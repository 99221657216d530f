"""The frozen data composer works on: recipe, layer module, step and plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Family(StrEnum):
    DEBIAN = "debian"
    ARCH = "arch"


class BaseKind(StrEnum):
    DEBOOTSTRAP = "debootstrap"
    IMAGE = "image"
    OCI_ARCHIVE = "oci-archive"
    SCRATCH = "scratch"


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


@dataclass(frozen=True)
class LayerRef:
    """One `[[layers]]` entry of a recipe: a module name and its raw options."""

    module: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    index: int = 0  # position in the resolved recipe
    file: str = ""  # the recipe file that declared it, for error messages
    field: str = ""  # "layers[3]" in that file

    @property
    def where(self) -> str:
        return f"{self.file}: {self.field}"


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    tag: str
    base: Base
    layers: tuple[LayerRef, ...]
    image: ImageConfig
    secrets: tuple[Secret, ...] = ()
    pod: dict[str, Any] = field(default_factory=dict, hash=False)
    hook_dirs: tuple[Path, ...] = ()  # hooks/ next to the recipe (and its parents)
    module_dirs: tuple[Path, ...] = ()  # layers/ next to the recipe (and its parents)


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


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    version: str
    description: str
    options_schema: dict[str, Any] = field(hash=False, compare=False)
    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    packages: tuple[tuple[Family, tuple[str, ...]], ...] = ()
    recommends: bool = False
    files: tuple[FileSpec, ...] = ()
    scripts: tuple[ScriptSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    services: tuple[Service, ...] = ()
    hooks: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None

    def families(self) -> tuple[Family, ...] | None:
        """Families this module supports, or None when it is family-neutral."""
        return tuple(f for f, _ in self.packages) if self.packages else None

    def packages_for(self, family: Family) -> tuple[str, ...]:
        return dict(self.packages).get(family, ())

    def scripts_for(self, family: Family) -> tuple[ScriptSpec, ...]:
        return tuple(s for s in self.scripts if not s.families or family in s.families)


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
    key_document: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    base: BaseStep
    steps: tuple[Step, ...]
    finalize: FinalizeStep

    @property
    def image_ref(self) -> str:
        return f"localhost/{self.recipe.name}:{self.recipe.tag}"

    def all_keys(self) -> list[str]:
        return [self.base.key, *(s.key for s in self.steps), self.finalize.key]
