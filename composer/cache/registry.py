"""Layers shared through an OCI registry: a cache image is pushed tagged by its key, and a
layer missing locally is pulled from there before it is built (docs/cache.md).

The registry is a cache, never a dependency: a registry that is down, slow or full costs
one warning line and the build goes on locally. An image whose key label does not match
the tag it was found under is refused; skopeo checks every blob against its digest."""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from composer import commands as cmd
from composer.errors import CommandError, ComposerError
from composer.runner import Runner
from composer.scratch import owned_tempdir

# Every cache image carries its key in this label (set when it is committed), so a pulled
# image can be checked against the tag it was found under.
KEY_LABEL = "io.composer.key"
# A registry that does not answer a question in this time counts as down.
QUERY_TIMEOUT = "20s"
# A layer copy that takes longer counts as stalled (large layers on a slow link: raise it).
COPY_TIMEOUT = os.environ.get("COMPOSER_REGISTRY_COPY_TIMEOUT", "30m")


@dataclass(frozen=True)
class RegistryCache:
    """Where layers come from and go to, and how to talk to the registry."""

    cache_from: str = ""  # REPO, e.g. registry.example:5000/turboflow-cache
    cache_to: str = ""
    tls_verify: bool | None = None  # None: registries.conf decides
    authfile: str = ""  # default: skopeo's (REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json)
    creds: str = ""  # USER[:PASSWORD]; written to a private auth file, never argv

    def __bool__(self) -> bool:
        return bool(self.cache_from or self.cache_to)


def registry_host(repo: str) -> str:
    return repo.split("/", 1)[0]


def auth_document(repos: Sequence[str], creds: str) -> str:
    """auth.json text for creds (USER[:PASSWORD]) on the registries of repos."""
    token = base64.b64encode(creds.encode()).decode()
    return json.dumps({"auths": {registry_host(repo): {"auth": token} for repo in repos if repo}})


def write_auth_file(repos: Sequence[str], creds: str, folder: Path) -> str:
    """A private (0600) auth file for creds: the password never goes on a command line."""
    fd, path = tempfile.mkstemp(prefix="auth-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(auth_document(repos, creds))
    return path


# --- argv lists (pure) --------------------------------------------------------------------


def tls_flag(name: str, tls_verify: bool | None) -> list[str]:
    return [] if tls_verify is None else [f"--{name}={'true' if tls_verify else 'false'}"]


def list_tags_argv(repo: str, tls_verify: bool | None, authfile: str) -> list[str]:
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "list-tags",
            *tls_flag("tls-verify", tls_verify), *(["--authfile", authfile] if authfile else []),
            f"docker://{repo}"]


def inspect_argv(repo: str, key: str, tls_verify: bool | None, authfile: str, raw: bool = False) -> list[str]:
    """skopeo inspect of a tag: labels, digest and layers; with raw the manifest itself."""
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "inspect", *(["--raw"] if raw else []), "--retry-times", "1",
            *tls_flag("tls-verify", tls_verify), *(["--authfile", authfile] if authfile else []),
            f"docker://{repo}:{key}"]


def pull_argv(storage: cmd.Storage, repo: str, key: str, digest: str, tls_verify: bool | None,
              authfile: str) -> list[str]:
    """Copy the manifest with this digest (the one whose label was checked) to the cache tag."""
    return ["skopeo", "--command-timeout", COPY_TIMEOUT, "copy", "--quiet", "--retry-times", "2",
            *tls_flag("src-tls-verify", tls_verify), *(["--src-authfile", authfile] if authfile else []),
            f"docker://{repo}@{digest}", cmd.storage_ref(storage, cmd.cache_ref(key))]


def push_argv(storage: cmd.Storage, repo: str, key: str, tls_verify: bool | None, authfile: str) -> list[str]:
    return copy_out_argv(storage, cmd.cache_ref(key), f"{repo}:{key}", tls_verify, authfile, COPY_TIMEOUT)


def copy_out_argv(storage: cmd.Storage, ref: str, dest: str, tls_verify: bool | None, authfile: str,
                  timeout: str = "") -> list[str]:
    """Copy an image of containers-storage to dest (registry/repo:tag)."""
    return ["skopeo", *(["--command-timeout", timeout] if timeout else []), "copy", "--quiet",
            "--retry-times", "2", *tls_flag("dest-tls-verify", tls_verify),
            *(["--dest-authfile", authfile] if authfile else []), cmd.storage_ref(storage, ref), f"docker://{dest}"]


def push_image(runner: Runner, storage: cmd.Storage, ref: str, dest: str, tls_verify: bool | None,
               authfile: str, creds: str, scratch: Path) -> None:
    """Push an image (the build's result) to a registry: asked for, so a failure is an error."""
    with owned_tempdir(scratch, "push") as folder:
        if creds:
            authfile = write_auth_file([dest], creds, Path(folder))
        try:
            runner.run(copy_out_argv(storage, ref, dest, tls_verify, authfile))
        except CommandError as e:
            raise ComposerError(f"push {dest}: {e.tail(1).strip() or f'skopeo exit {e.code}'}",
                                hint="check the registry, --tls-verify and the credentials (docs/cache.md)") from None


# --- talking to the registry ---------------------------------------------------------------


class Remote:
    """One build's link to the registry cache. Thread-safe: restacked layers are pulled and
    pushed from several threads. After the first failure to reach a registry it is left
    alone for the rest of the build (one warning, not one per layer)."""

    def __init__(self, config: RegistryCache, storage: cmd.Storage, runner: Runner,
                 warn: Callable[[str], None], scratch: Path) -> None:
        self.config = config
        self.storage = storage
        self.runner = runner
        self.warn = warn
        self.lock = threading.Lock()
        self.down: set[str] = set()  # repositories that failed once
        self.tags: dict[str, set[str]] = {}  # repository -> keys it holds (asked once)
        self.authfile = config.authfile
        if config.creds:
            self.authfile = write_auth_file([config.cache_from, config.cache_to], config.creds, scratch)
        self.pushed: list[str] = []
        self.pulled: list[str] = []

    def _fail(self, repo: str, what: str, error: CommandError) -> None:
        with self.lock:
            if repo in self.down:
                return
            self.down.add(repo)
        reason = skopeo_message(error.tail(1)) or f"exit {error.code}"
        self.warn(f"warning: registry cache {repo}: {what} failed ({reason}); building locally, "
                  "without the registry for the rest of this build")

    def _keys(self, repo: str) -> set[str] | None:
        """The keys repo holds (one list-tags call per build), None when it cannot be asked."""
        with self.lock:
            if repo in self.down:
                return None
            if repo in self.tags:
                return self.tags[repo]
        try:
            text = self.runner.output(list_tags_argv(repo, self.config.tls_verify, self.authfile))
            keys = set(json.loads(text).get("Tags") or ())
        except CommandError as e:
            if unknown_repository(e.output):
                keys = set()  # a repository nothing was pushed to yet
            else:
                self._fail(repo, "listing its tags", e)
                return None
        except ValueError:
            keys = set()
        with self.lock:
            self.tags[repo] = keys
        return keys

    def fetch(self, key: str) -> bool:
        """Pull key's cache image when the registry has it and its key label matches."""
        repo = self.config.cache_from
        if not repo:
            return False
        keys = self._keys(repo)
        if keys is None or key not in keys:
            return False
        try:
            info = json.loads(self.runner.output(inspect_argv(repo, key, self.config.tls_verify, self.authfile)))
        except CommandError as e:
            self._fail(repo, f"inspecting {key[:16]}", e)
            return False
        except ValueError:
            info = {}
        labelled = (info.get("Labels") or {}).get(KEY_LABEL)
        if labelled != key or not str(info.get("Digest", "")).startswith("sha256:"):
            self.warn(f"warning: registry cache {repo}:{key[:16]}… refused: its {KEY_LABEL} label is "
                      f"{labelled!r}, not the key it is tagged with; building it locally")
            return False
        try:
            self.runner.run(pull_argv(self.storage, repo, key, info["Digest"], self.config.tls_verify,
                                      self.authfile))
        except CommandError as e:
            self._fail(repo, f"pulling {key[:16]}", e)
            return False
        with self.lock:
            self.pulled.append(key)
        return True

    def offer(self, key: str) -> bool:
        """Push key's cache image unless the registry has it already; True when pushed."""
        repo = self.config.cache_to
        if not repo:
            return False
        keys = self._keys(repo)
        if keys is None or key in keys:
            return False
        if local_key_label(self.runner, self.storage, key) != key:
            return False  # committed by a composer before key labels: a pull would refuse it
        try:
            self.runner.run(push_argv(self.storage, repo, key, self.config.tls_verify, self.authfile))
        except CommandError as e:
            # The manifest (and so the tag) is written last: a push that failed tags nothing.
            self._fail(repo, f"pushing {key[:16]}", e)
            return False
        with self.lock:
            self.tags[repo].add(key)
            self.pushed.append(key)
        return True


def unknown_repository(output: str) -> bool:
    """skopeo's words for a repository nothing was pushed to yet (NAME_UNKNOWN): older
    versions give the code or the status, newer ones the registry's message."""
    return any(words in output for words in ("name unknown", "404 (Not Found)",
                                              "repository name not known to registry"))


def skopeo_message(line: str) -> str:
    """The message of a skopeo log line (time="..." level=fatal msg="..."), or the line."""
    match = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    return match.group(1).replace('\\"', '"') if match else line.strip()


def local_key_label(runner: Runner, storage: cmd.Storage, key: str) -> str | None:
    argv = cmd.buildah(storage, "inspect", "--type", "image", "--format",
                       f'{{{{index .OCIv1.Config.Labels "{KEY_LABEL}"}}}}', cmd.cache_ref(key))
    try:
        return runner.output(argv).strip() or None
    except CommandError:
        return None
