"""Layers shared through an OCI registry: a cache image is pushed tagged by its key, and a
layer missing locally is pulled from there before it is built (docs/cache.md).

The registry is a cache, never a dependency: a registry that is down, slow or full costs
one warning line and the build goes on locally. What is pulled is checked before it is
used (docs/cache.md, "What is trusted"): its key label must match the tag it was found
under; it must sit exactly on the local parent (the parent's diff IDs and one more); with
--verify-key, its manifest digest must carry a sigstore signature by that key for
REPO:KEY (composer/cache/signing.py). A refused entry costs one warning and a local build.
skopeo checks every blob against its digest."""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from composer import commands as cmd
from composer.cache.signing import (
    Signer,
    Signing,
    Verifier,
    attachment_tag,
    payload_document,
    payload_problem,
    read_attachment_dir,
    write_attachment_layout,
)
from composer.emit.attach import Kind, artifact, write_artifact_layout
from composer.emit.oci import MANIFEST_TYPE, Descriptor
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
    signing: Signing = field(default_factory=Signing)  # --sign-key, --verify-key

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


def access_flags(tls_verify: bool | None, authfile: str, side: str = "") -> list[str]:
    """skopeo's TLS and auth-file flags, for a copy's `src` or `dest` side or (side "") a query."""
    prefix = f"{side}-" if side else ""
    return [*tls_flag(f"{prefix}tls-verify", tls_verify), *([f"--{prefix}authfile", authfile] if authfile else [])]


def list_tags_argv(repo: str, tls_verify: bool | None, authfile: str) -> list[str]:
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "list-tags",
            *access_flags(tls_verify, authfile),
            f"docker://{repo}"]


def inspect_argv(repo: str, key: str, tls_verify: bool | None, authfile: str, raw: bool = False,
                 digest: str = "") -> list[str]:
    """skopeo inspect of a tag (or of a digest): labels, digest and layers; with raw the
    manifest itself."""
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "inspect", *(["--raw"] if raw else []), "--retry-times", "1",
            *access_flags(tls_verify, authfile),
            f"docker://{repo}@{digest}" if digest else f"docker://{repo}:{key}"]


def delete_argv(repo: str, digest: str, tls_verify: bool | None, authfile: str) -> list[str]:
    """Delete the manifest by its digest: the one inspected, whatever the tag says now."""
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "delete", "--retry-times", "1",
            *access_flags(tls_verify, authfile),
            f"docker://{repo}@{digest}"]


def inspect_config_argv(repo: str, digest: str, tls_verify: bool | None, authfile: str) -> list[str]:
    """The config of the manifest with this digest (skopeo checks it against the manifest)."""
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "inspect", "--config", "--retry-times", "1",
            *access_flags(tls_verify, authfile),
            f"docker://{repo}@{digest}"]


def attachment_pull_argv(repo: str, tag: str, folder: str, tls_verify: bool | None, authfile: str) -> list[str]:
    """Copy a signature attachment (a small OCI artifact) to a dir: folder."""
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "copy", "--quiet", "--retry-times", "1",
            *access_flags(tls_verify, authfile, "src"),
            f"docker://{repo}:{tag}", f"dir:{folder}"]


def attachment_push_argv(folder: str, repo: str, tag: str, tls_verify: bool | None, authfile: str) -> list[str]:
    """Copy a signature attachment from an OCI layout, byte for byte (its digests are what
    c/image and cosign read)."""
    return ["skopeo", "--command-timeout", QUERY_TIMEOUT, "copy", "--quiet", "--retry-times", "2",
            "--preserve-digests", *access_flags(tls_verify, authfile, "dest"), f"oci:{folder}", f"docker://{repo}:{tag}"]


# A pulled image waits under this name until its layers are checked; only then is it
# tagged as the cache tag (a build killed in between leaves no unchecked cache tag).
PULLED_REPO = "localhost/composer-pulled"


def pulled_ref(key: str) -> str:
    return f"{PULLED_REPO}:{key}"


def pull_argv(storage: cmd.Storage, repo: str, key: str, digest: str, tls_verify: bool | None,
              authfile: str) -> list[str]:
    """Copy the manifest with this digest (the one whose label was checked) into storage,
    under the holding name."""
    return ["skopeo", "--command-timeout", COPY_TIMEOUT, "copy", "--quiet", "--retry-times", "2",
            *access_flags(tls_verify, authfile, "src"),
            f"docker://{repo}@{digest}", cmd.storage_ref(storage, pulled_ref(key))]


def push_argv(storage: cmd.Storage, repo: str, key: str, tls_verify: bool | None, authfile: str,
              digestfile: str = "") -> list[str]:
    return copy_out_argv(storage, cmd.cache_ref(key), f"{repo}:{key}", tls_verify, authfile, COPY_TIMEOUT,
                         digestfile)


def copy_out_argv(storage: cmd.Storage, ref: str, dest: str, tls_verify: bool | None, authfile: str,
                  timeout: str = "", digestfile: str = "") -> list[str]:
    """Copy an image of containers-storage to dest (registry/repo:tag); with digestfile,
    skopeo writes the pushed manifest's digest there (what a signature signs)."""
    return ["skopeo", *(["--command-timeout", timeout] if timeout else []), "copy", "--quiet",
            "--retry-times", "2", *(["--digestfile", digestfile] if digestfile else []),
            *access_flags(tls_verify, authfile, "dest"), cmd.storage_ref(storage, ref), f"docker://{dest}"]


def repository_of(ref: str) -> str:
    """host[:port]/path of host[:port]/path[:tag]."""
    head, _, last = ref.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}"


def pushed_as_another(runner: Runner, repo: str, digest: str, built: str, tls_verify: bool | None,
                      authfile: str) -> str:
    """Why the manifest pushed to repo as digest is not the image built (ID built), "" when it
    is or cannot be told. skopeo (c/image 5.23) keeps a per-machine record of the blobs it
    pushed to each registry and reuses any copy of a layer it finds there: a zstd copy turns
    a Docker manifest into an OCI one, so another config (image ID) without HEALTHCHECK."""
    if not digest or not built:
        return ""
    try:
        manifest = json.loads(runner.output(inspect_argv(repo, "", tls_verify, authfile, raw=True, digest=digest)))
        config = str(manifest["config"]["digest"])
        layers = manifest.get("layers") or ()
    except (CommandError, ValueError, KeyError, TypeError):
        return ""  # not readable back: a pull checks the entry as it checks any (chain_problem)
    if config == f"sha256:{built}":
        return ""
    compressions = "/".join(sorted({str(layer.get("mediaType", "")).rpartition("+")[2] for layer in layers}))
    return (f"the registry got another image (config {config[7:19]}, built {built[:12]}; layers {compressions}): "
            "skopeo reused a layer this machine pushed there compressed otherwise")


def delete_manifest(runner: Runner, repo: str, digest: str, tls_verify: bool | None, authfile: str) -> bool:
    """Delete the manifest pushed as digest; False when the registry refuses (or cannot)."""
    try:
        runner.output(delete_argv(repo, digest, tls_verify, authfile))
    except CommandError:
        return False
    return True


def sign_pushed(runner: Runner, signer: Signer, reference: str, digest: str, tls_verify: bool | None,
                authfile: str, folder: Path) -> None:
    """Sign digest as reference (REPO:TAG) and push the signature beside it, as a sigstore
    attachment of REPO. Raises CommandError when the registry refuses it."""
    layout = folder / f"sig-{digest.split(':', 1)[1][:16]}"
    payload = payload_document(digest, reference, int(time.time()))
    write_attachment_layout(layout, payload, signer.sign(payload))
    runner.run(attachment_push_argv(str(layout), repository_of(reference), attachment_tag(digest), tls_verify,
                                    authfile))


def read_digest(path: Path) -> str:
    digest = path.read_text().strip() if path.is_file() else ""
    return digest if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else ""


def push_image(runner: Runner, storage: cmd.Storage, ref: str, dest: str, tls_verify: bool | None,
               authfile: str, creds: str, scratch: Path, signing: Signing | None = None,
               documents: Sequence[tuple[Kind, Path]] = ()) -> list[str]:
    """Push an image (the build's result) to a registry, signed with signing's key when it
    has one, and each of documents (its SBOMs, its provenance) as an OCI 1.1 artifact whose
    subject is the pushed manifest (composer/emit/attach.py): asked for, so a failure is an
    error. The tags the documents were pushed to."""
    signer = Signer(signing.sign_key, signing.passphrase_file) if signing and signing.sign_key else None
    with owned_tempdir(scratch, "push") as folder:
        if creds:
            authfile = write_auth_file([dest], creds, Path(folder))
        digestfile = Path(folder, "digest")
        hint = "check the registry, --tls-verify and the credentials (docs/cache.md)"
        try:
            runner.run(copy_out_argv(storage, ref, dest, tls_verify, authfile, digestfile=str(digestfile)))
        except CommandError as e:
            raise ComposerError(f"push {dest}: {e.tail(1).strip() or f'skopeo exit {e.code}'}", hint=hint) from None
        digest = read_digest(digestfile)
        built, _ = local_image(runner, storage, ref)
        altered = pushed_as_another(runner, repository_of(dest), digest, built, tls_verify, authfile)
        if altered:
            deleted = delete_manifest(runner, repository_of(dest), digest, tls_verify, authfile)
            done = "deleted it again" if deleted else f"delete {repository_of(dest)}@{digest} by hand"
            raise ComposerError(f"push {dest}: {altered}; {done}",
                                hint="docs/cache.md, 'When the registry misbehaves'")
        if signer is None and not documents:
            return []
        if not digest:
            raise ComposerError(f"push {dest}: skopeo wrote no manifest digest")
        if signer is not None:
            try:
                sign_pushed(runner, signer, dest, digest, tls_verify, authfile, Path(folder))
            except CommandError as e:
                raise ComposerError(f"push {dest}: the image is pushed but its signature was not "
                                    f"({skopeo_message(e.tail(1)) or f'skopeo exit {e.code}'})", hint=hint) from None
        try:
            return push_documents(runner, repository_of(dest), digest, documents, tls_verify, authfile, Path(folder),
                                  signer)
        except CommandError as e:
            raise ComposerError(f"push {dest}: the image is pushed but its SBOMs and provenance are not "
                                f"({skopeo_message(e.tail(1)) or f'skopeo exit {e.code}'})", hint=hint) from None


def push_documents(runner: Runner, repo: str, digest: str, documents: Sequence[tuple[Kind, Path]],
                   tls_verify: bool | None, authfile: str, folder: Path, signer: Signer | None = None) -> list[str]:
    """Each document as an artifact of the manifest pushed as digest, under the tag
    sha256-<hex>.<kind>: byte for byte (--preserve-digests), so its subject is that manifest;
    with a signer, each signed as the image is (its .sig beside it)."""
    if not documents:
        return []
    raw = runner.output(inspect_argv(repo, "", tls_verify, authfile, raw=True, digest=digest)).encode()
    media_type = json.loads(raw).get("mediaType") or MANIFEST_TYPE
    subject = Descriptor(media_type, digest, len(raw))
    if Descriptor.for_bytes(media_type, raw).digest != digest:
        raise ComposerError(f"push {repo}@{digest}: the registry serves another manifest for this digest")
    tags = []
    for kind, path in documents:
        item = artifact(kind, path.read_bytes(), path.name, subject)
        layout = folder / f"artifact-{kind.name}"
        write_artifact_layout(layout, item)
        runner.run(attachment_push_argv(str(layout), repo, item.tag(subject), tls_verify, authfile))
        if signer is not None:
            sign_pushed(runner, signer, f"{repo}:{item.tag(subject)}", item.descriptor.digest, tls_verify, authfile,
                        folder)
        tags.append(f"{repo}:{item.tag(subject)}")
    return tags


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
        self.scratch = scratch
        self.lock = threading.Lock()
        self.down: set[str] = set()  # repositories that failed once
        self.tags: dict[str, set[str]] = {}  # repository -> keys it holds (asked once)
        self.authfile = config.authfile
        if config.creds:
            self.authfile = write_auth_file([config.cache_from, config.cache_to], config.creds, scratch)
        signing = config.signing
        # Loaded before the first layer: a wrong passphrase fails the build at once.
        self.signer = Signer(signing.sign_key, signing.passphrase_file) if signing.sign_key and config.cache_to \
            else None
        self.verifier = Verifier(signing.verify_key) if signing.verify_key and config.cache_from else None
        self.pushed: list[str] = []
        self.pulled: list[str] = []
        self.graph: tuple[str, str] = ("", "")  # containers-storage's graph root and driver
        if config.cache_from and self.verifier is None:
            warn(f"warning: registry cache {config.cache_from}: entries are not verified (no --verify-key): "
                 "whoever can push there decides what a pulled layer holds (docs/cache.md)")

    def _fail(self, repo: str, what: str, error: CommandError) -> None:
        with self.lock:
            if repo in self.down:
                return
            self.down.add(repo)
        reason = skopeo_message(error.tail(1)) or f"exit {error.code}"
        self.warn(f"warning: registry cache {repo}: {what} failed ({reason}); building locally, "
                  "without the registry for the rest of this build")

    def _refuse(self, repo: str, key: str, why: str) -> bool:
        self.warn(f"warning: registry cache {repo}:{key[:16]}… refused: {why}; building it locally")
        return False

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

    def fetch(self, key: str, below: Sequence[str] | None) -> bool:
        """Pull key's cache image when the registry has it and every check passes: its key
        label, its signature (with a verify key), its parent chain (below: the diff IDs of
        the local parent it must sit on, None when it has no local parent to check)."""
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
        digest = str(info.get("Digest", ""))
        if labelled != key or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return self._refuse(repo, key, f"its {KEY_LABEL} label is {labelled!r}, not the key it is tagged with")
        if self.verifier is not None and not self._signed(repo, key, digest):
            return False
        if below is not None and not self._on_parent(repo, key, digest, below):
            return False
        try:
            self.runner.run(pull_argv(self.storage, repo, key, digest, self.config.tls_verify, self.authfile))
        except CommandError as e:
            self._fail(repo, f"pulling {key[:16]}", e)
            return False
        if below is not None and not self._really_on_parent(repo, key, below):
            return False
        self.runner.run(cmd.buildah(self.storage, "tag", pulled_ref(key), cmd.cache_ref(key)))
        self.runner.run(cmd.buildah(self.storage, "rmi", pulled_ref(key)))  # the holding name only
        with self.lock:
            self.pulled.append(key)
        return True

    def _really_on_parent(self, repo: str, key: str, below: Sequence[str]) -> bool:
        """The image's config was checked before the pull; its layers are checked now, as
        containers-storage applied them (each one's digest computed from its content):
        skopeo 1.9 does not hold a config's diff IDs against the layers it copies."""
        with self.lock:  # asked once per build
            if not self.graph[0]:
                self.graph = graph_root(self.runner, self.storage)
        real = stored_diff_ids(*self.graph, pulled_ref(key))
        config = image_diff_ids(self.runner, self.storage, pulled_ref(key))
        problem = chain_problem(real, below) if real is not None else "its layers were not found in storage"
        if not problem and real != config:
            problem = "its layers are not the ones its config names"
        if problem:
            self.runner.run(cmd.buildah(self.storage, "rmi", "--force", pulled_ref(key)))
            return self._refuse(repo, key, problem)
        return True

    def _signed(self, repo: str, key: str, digest: str) -> bool:
        """Whether digest carries a signature by the verify key for REPO:KEY (warns when not)."""
        assert self.verifier is not None
        with owned_tempdir(self.scratch, "sig") as folder:
            copied = Path(folder, "attachment")
            try:
                self.runner.run(attachment_pull_argv(repo, attachment_tag(digest), str(copied),
                                                     self.config.tls_verify, self.authfile))
            except CommandError as e:
                if not missing_manifest(e.output):
                    self._fail(repo, f"reading the signature of {key[:16]}", e)
                    return False
                return self._refuse(repo, key, "it is not signed (no sigstore signature beside it)")
            signatures = read_attachment_dir(copied)
        by_key = [payload for payload, signature in signatures if self.verifier.verifies(payload, signature)]
        if not by_key:
            return self._refuse(repo, key, f"none of its {len(signatures)} signature(s) is by --verify-key "
                                           f"{self.config.signing.verify_key}")
        problems = [payload_problem(payload, digest, f"{repo}:{key}") for payload in by_key]
        if "" not in problems:
            return self._refuse(repo, key, f"its signature by --verify-key does not sign this image: {problems[0]}")
        return True

    def _on_parent(self, repo: str, key: str, digest: str, below: Sequence[str]) -> bool:
        """Whether the image's diff IDs are exactly below and one more (warns when not)."""
        try:
            config = json.loads(self.runner.output(inspect_config_argv(repo, digest, self.config.tls_verify,
                                                                       self.authfile)))
            diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or ()]
        except CommandError as e:
            self._fail(repo, f"reading the config of {key[:16]}", e)
            return False
        except (ValueError, AttributeError):
            diff_ids = []
        problem = chain_problem(diff_ids, below)
        return self._refuse(repo, key, problem) if problem else True

    def offer(self, key: str) -> bool:
        """Push key's cache image unless the registry has it already, and sign it with the
        sign key; True when pushed (and signed)."""
        repo = self.config.cache_to
        if not repo:
            return False
        keys = self._keys(repo)
        if keys is None or key in keys:
            return False
        built, label = local_image(self.runner, self.storage, cmd.cache_ref(key))
        if label != key:
            return False  # committed by a composer before key labels: a pull would refuse it
        with owned_tempdir(self.scratch, "push") as folder:
            digestfile = Path(folder, "digest")
            try:
                self.runner.run(push_argv(self.storage, repo, key, self.config.tls_verify, self.authfile,
                                          str(digestfile)))
            except CommandError as e:
                # The manifest (and so the tag) is written last: a push that failed tags nothing.
                self._fail(repo, f"pushing {key[:16]}", e)
                return False
            with self.lock:
                self.tags[repo].add(key)
            digest = read_digest(digestfile)
            altered = self._altered(repo, key, digest, built)
            if altered:
                self.warn(f"warning: registry cache {repo}:{key[:16]}… not shared: {altered}")
                return False
            if self.signer is not None and not self._sign(repo, key, digest, Path(folder)):
                return False
        with self.lock:
            self.pushed.append(key)
        return True

    def _altered(self, repo: str, key: str, digest: str, built: str) -> str:
        """Why the entry just pushed is not the image built here (ID built), "" when it is;
        such an entry is deleted again, so no machine pulls it (pushed_as_another)."""
        why = pushed_as_another(self.runner, repo, digest, built, self.config.tls_verify, self.authfile)
        if not why:
            return ""
        if not delete_manifest(self.runner, repo, digest, self.config.tls_verify, self.authfile):
            return f"{why}; delete {repo}@{digest} by hand (docs/cache.md)"
        with self.lock:
            self.tags[repo].discard(key)
        return f"{why}, so it was deleted again (docs/cache.md)"

    def _sign(self, repo: str, key: str, digest: str, folder: Path) -> bool:
        assert self.signer is not None
        try:
            if not digest:
                raise CommandError(["skopeo"], 0, "skopeo wrote no manifest digest to sign")
            sign_pushed(self.runner, self.signer, f"{repo}:{key}", digest, self.config.tls_verify, self.authfile,
                        folder)
        except CommandError as e:
            # The tag is there unsigned: a build with --verify-key refuses it; a later build
            # sees the tag and does not push it again, so say so.
            self._fail(repo, f"signing {key[:16]} (pushed unsigned)", e)
            return False
        return True


def chain_problem(diff_ids: Sequence[str], below: Sequence[str]) -> str:
    """Why an image with diff_ids does not sit exactly on a parent with below; "" when it does."""
    if list(diff_ids[:-1]) == list(below) and len(diff_ids) == len(below) + 1:
        return ""
    if len(diff_ids) <= len(below) or list(diff_ids[:len(below)]) != list(below):
        shared = next((i for i, (a, b) in enumerate(zip(diff_ids, below, strict=False)) if a != b),
                      min(len(diff_ids), len(below)))
        return (f"it is not built on the local parent (its {len(diff_ids)} layers share the first {shared} "
                f"of the parent's {len(below)})")
    return f"it has {len(diff_ids) - len(below)} layers of its own over the local parent, not 1"


def graph_root(runner: Runner, storage: cmd.Storage) -> tuple[str, str]:
    """(graph root, driver) of the storage, as buildah resolves them."""
    text = runner.output(cmd.buildah(storage, "info", "--format", "{{.store.GraphRoot}} {{.store.GraphDriverName}}"))
    root, _, driver = text.strip().rpartition(" ")
    return root, driver


def stored_diff_ids(root: str, driver: str, ref: str) -> list[str] | None:
    """The diff IDs of ref's layers as containers-storage recorded them when it applied
    each one (its own digest of the content), bottom first: the image's top layer and its
    parents, from the storage's records (no tool prints a layer's parent in full)."""
    images = read_records(Path(root, f"{driver}-images", "images.json"))
    layers = {str(r.get("id")): r for name in ("layers.json", "volatile-layers.json")
              for r in read_records(Path(root, f"{driver}-layers", name))}
    name = ref if "/" in ref.split(":", 1)[0] else f"localhost/{ref}"
    top = next((str(i.get("layer") or "") for i in images if name in (i.get("names") or ())), None)
    if top is None:
        return None
    chain: list[str] = []
    while top:
        record = layers.get(top)
        if record is None or not record.get("diff-digest") or len(chain) > 500:
            return None
        chain.append(str(record["diff-digest"]))
        top = str(record.get("parent") or "")
    return chain[::-1]


def read_records(path: Path) -> list[dict]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def image_diff_ids(runner: Runner, storage: cmd.Storage, ref: str) -> list[str]:
    """The diff IDs an image's config names."""
    info = json.loads(runner.output(cmd.buildah(storage, "inspect", "--type", "image", ref)))
    return [str(d) for d in (json.loads(info["Config"]).get("rootfs") or {}).get("diff_ids") or ()]


def missing_manifest(output: str) -> bool:
    """skopeo's words for a tag the repository does not have."""
    return any(words in output for words in ("manifest unknown", "404 (Not Found)", "not found"))


def unknown_repository(output: str) -> bool:
    """skopeo's words for a repository nothing was pushed to yet (NAME_UNKNOWN): older
    versions give the code or the status, newer ones the registry's message."""
    return any(words in output for words in ("name unknown", "404 (Not Found)",
                                              "repository name not known to registry"))


def skopeo_message(line: str) -> str:
    """The message of a skopeo log line (time="..." level=fatal msg="..."), or the line."""
    match = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    return match.group(1).replace('\\"', '"') if match else line.strip()


def local_image(runner: Runner, storage: cmd.Storage, ref: str) -> tuple[str, str]:
    """The ID (config digest, hex) and the key label of the image ref here, in one inspect;
    ("", "") when it cannot be read."""
    argv = cmd.buildah(storage, "inspect", "--type", "image", "--format",
                       f'{{{{.FromImageID}}}} {{{{index .OCIv1.Config.Labels "{KEY_LABEL}"}}}}', ref)
    try:
        image_id, _, label = runner.output(argv).strip().partition(" ")
    except CommandError:
        return "", ""
    return image_id, label.strip()
