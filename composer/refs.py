"""Registry references a person writes (recipes, --cache-from, --push): checked here, pure,
so loading a recipe needs nothing that talks to a registry."""

from __future__ import annotations

from composer.errors import ComposerError


def check_repo(repo: str, where: str) -> str:
    """A repository without tag or digest: host[:port]/path."""
    if not repo:
        return repo
    name = repo.removeprefix("docker://")
    last = name.rsplit("/", 1)[-1]
    if "/" not in name or "@" in name or ":" in last:
        raise ComposerError(f"{where}: {repo!r} is not a registry repository like "
                            "registry.example:5000/team-cache (no tag, no digest)")
    return name


def check_image_ref(ref: str, where: str) -> str:
    """A registry image reference to push to: host[:port]/path[:tag]."""
    name = ref.removeprefix("docker://")
    if "/" not in name or "@" in name or not name.split("/", 1)[0]:
        raise ComposerError(f"{where}: {ref!r} is not a registry image like registry.example:5000/team/app:1.0")
    return name
