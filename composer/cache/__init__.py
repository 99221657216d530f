"""Where built layers are kept and found again.

- local.py: the layers in containers-storage, tagged by key (`composer cache ls|prune`);
- registry.py: the same tags in a registry repository (`--cache-from/--cache-to`);
- prune.py: pruning that repository.

The builder sees a shared cache only through SharedCache, made by open_shared_cache:
a new backend implements the two calls and is chosen there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # importing composer.cache.local or .refs must not load the registry client
    from composer import commands as cmd
    from composer.cache.registry import RegistryCache
    from composer.runner import Runner


class SharedCache(Protocol):
    """A cache of layers shared between machines, asked by key. Both calls are thread-safe
    and never raise for an unreachable cache: they warn once and answer False."""

    def fetch(self, key: str, below: Sequence[str] | None) -> bool:
        """Put key's layer into the local storage when the cache has a trusted one that sits
        exactly on its local parent: below are that parent's diff IDs (the pulled image has
        them and one more), None for a layer with no local parent to check (an image base)."""
        ...

    def offer(self, key: str) -> bool:
        """Hand the local layer of key to the cache; True when it was stored."""
        ...


def open_shared_cache(config: RegistryCache, storage: cmd.Storage, runner: Runner,
                      warn: Callable[[str], None], scratch: Path) -> SharedCache | None:
    """The build's shared cache, or None when the build has none."""
    from composer.cache.registry import Remote

    if not config:
        return None
    return Remote(config, storage, runner, warn, scratch)
