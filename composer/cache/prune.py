"""Registry-side housekeeping: the layers a registry cache holds (`composer cache ls
--registry REPO`) and deleting old ones (`composer cache prune --registry REPO`), never
one that a tagged image of this machine, or a tag of the repository that is not a key,
is built on (docs/cache.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from composer.cache.local import Entry, last_used, module_of, prune_candidates
from composer.cache.registry import KEY_LABEL, delete_argv, inspect_argv, list_tags_argv, skopeo_message
from composer.errors import CommandError, ComposerError
from composer.runner import Runner

# A cache tag is a key: the sha256 of the layer's key document.
KEY_TAG = re.compile(r"[0-9a-f]{64}")
# What sits beside a manifest under the tag scheme cosign uses: its signatures (.sig), its
# SBOMs and provenance (.spdx, .cdx, .att; composer/emit/attach.py). Not images: never
# inspected as one, never counted as a user of a layer.
ATTACHMENT_TAG = re.compile(r"sha256-[0-9a-f]{64}\.[a-z]+")
UNKNOWN = "?"


def registry_entry(key: str, info: dict, manifest: dict, module: str, used_by: Sequence[str],
                   last: float | None) -> Entry:
    """A registry cache tag as a cache Entry: image_id is the manifest digest, size the
    compressed layers' (skopeo inspect --raw), last_used this cache's record of the key.
    Not the image's creation: composer's images are dated 1970 (reproducible)."""
    size = sum(int(layer.get("size") or 0) for layer in manifest.get("layers") or ())
    return Entry(key, module, str(info.get("Digest", "")), size, last, tuple(sorted(used_by)),
                 len(info.get("Layers") or ()))


class RegistryListing:
    """Ask one registry repository what it holds: one list-tags, one inspect per tag."""

    def __init__(self, runner: Runner, repo: str, tls_verify: bool | None, authfile: str) -> None:
        self.runner = runner
        self.repo = repo
        self.tls_verify = tls_verify
        self.authfile = authfile

    def _ask(self, argv: list[str], what: str) -> dict:
        try:
            return dict(json.loads(self.runner.output(argv) or "{}"))
        except CommandError as e:
            reason = skopeo_message(e.tail(1)) or f"exit {e.code}"
            raise ComposerError(f"registry cache {self.repo}: {what} failed ({reason})",
                                hint="check the registry, --tls-verify and the credentials (docs/cache.md)") from None
        except ValueError:
            raise ComposerError(f"registry cache {self.repo}: {what}: skopeo printed no JSON") from None

    def tags(self) -> list[str]:
        document = self._ask(list_tags_argv(self.repo, self.tls_verify, self.authfile), "listing its tags")
        return sorted(document.get("Tags") or ())

    def inspect(self, tag: str, raw: bool = False) -> dict:
        return self._ask(inspect_argv(self.repo, tag, self.tls_verify, self.authfile, raw),
                         f"inspecting {tag[:16]}")

    def entries(self, cache_dir: Path, local_users: dict[str, Sequence[str]]) -> list[Entry]:
        """Every key tag with its module (from this cache's key documents) and what uses it:
        the local tagged images built on it, and the repository's other tags built on it."""
        tags = [tag for tag in self.tags() if not ATTACHMENT_TAG.fullmatch(tag)]
        infos = {tag: self.inspect(tag) for tag in tags}
        # Tags that are not keys are images pushed here (--push): the layers they are built on stay.
        images = [(f"{self.repo}:{tag}", set(info.get("Layers") or ())) for tag, info in infos.items()
                  if not KEY_TAG.fullmatch(tag)]
        found = []
        for tag, info in infos.items():
            if not KEY_TAG.fullmatch(tag) or (info.get("Labels") or {}).get(KEY_LABEL) != tag:
                continue  # not a composer cache image: not ours to list or delete
            own = set(info.get("Layers") or ())
            users = [*local_users.get(tag, ()), *(name for name, chain in images if own and own <= chain)]
            found.append(registry_entry(tag, info, self.inspect(tag, raw=True), module_of(cache_dir, tag), users,
                                        last_used(cache_dir, tag)))
        return sorted(found, key=lambda e: (e.module, -(e.last_used or 0), e.key))

    def delete(self, entry: Entry) -> None:
        try:
            self.runner.run(delete_argv(self.repo, entry.image_id, self.tls_verify, self.authfile))
        except CommandError as e:
            reason = skopeo_message(e.tail(1)) or f"exit {e.code}"
            hint = ("the registry must allow deletes (docker-registry: storage.delete.enabled: true)"
                    if "unsupported" in reason.lower() or "405" in reason else "")
            raise ComposerError(f"registry cache {self.repo}: deleting {entry.key[:16]} failed ({reason})",
                                hint=hint) from None


def registry_candidates(entries: Sequence[Entry], older_than_days: float | None, keep: int | None,
                        now: float) -> list[Entry]:
    """Tags to delete, by the local rules (composer/cache/local.py), among the layers this cache
    knows (a key document or a use recorded): a registry is shared, and a layer another
    machine built and this one never saw may be what that machine's images use."""
    known = [e for e in entries if e.module != UNKNOWN and e.last_used is not None]
    return prune_candidates(known, older_than_days, keep, now)


def local_users(local: Sequence[Entry]) -> dict[str, Sequence[str]]:
    """key -> the tagged local images built on it (composer cache ls's 'used by')."""
    return {e.key: e.used_by for e in local if e.used_by}

