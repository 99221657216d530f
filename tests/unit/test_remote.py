"""The registry cache's argv lists and decisions, with a runner that answers like skopeo
would: what is pulled, refused, pushed, and how a registry that is down is met. The
integration tests (tests/integration/test_registry.py) do it against a real registry."""

from __future__ import annotations

import base64
import json
import stat
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from composer import commands as cmd
from composer.cache.registry import (
    KEY_LABEL,
    RegistryCache,
    Remote,
    inspect_argv,
    pull_argv,
    push_argv,
    unknown_repository,
)
from composer.errors import CommandError, ComposerError
from composer.refs import check_repo
from composer.runner import Runner

REPO = "registry.example:5000/team-cache"
STORAGE = cmd.Storage("/var/lib/x", "/run/x", "overlay")


class FakeSkopeo(Runner):
    """Answers list-tags, inspect and copy from a dict of tag -> key label; 'down' fails all."""

    def __init__(self, tags: Mapping[str, str], down: bool = False, local_label: str | None = None) -> None:
        super().__init__()
        self.tags = dict(tags)
        self.down = down
        self.local_label = local_label
        self.calls: list[list[str]] = []

    def _answer(self, argv: list[str]) -> str:
        self.calls.append(argv)
        if argv[0] == "buildah":  # the local image's ID and key label
            label = argv[-1].rsplit(":", 1)[1] if self.local_label is None else self.local_label
            return f"{'c' * 64} {label}\n"
        if self.down:
            raise CommandError(argv, 1, "pinging container registry: connection refused")
        if "list-tags" in argv:
            return json.dumps({"Repository": REPO, "Tags": sorted(self.tags)})
        if "inspect" in argv:
            tag = argv[-1].rsplit(":", 1)[1]
            return json.dumps({"Digest": f"sha256:{'d' * 64}", "Labels": {KEY_LABEL: self.tags[tag]}})
        return ""

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, stream: bool = False) -> str:
        return self._answer([str(a) for a in argv])

    def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        return self._answer([str(a) for a in argv])


def remote(runner: Runner, tmp_path: Path, warnings: list[str], **config: str) -> Remote:
    return Remote(RegistryCache(**config), STORAGE, runner, warnings.append, tmp_path)  # type: ignore[arg-type]


def copies(runner: FakeSkopeo) -> list[list[str]]:
    return [a for a in runner.calls if "copy" in a]


def test_argv_lists_pin_the_digest_and_pass_tls_only_when_asked() -> None:
    assert inspect_argv(REPO, "k1", None, "")[-1] == f"docker://{REPO}:k1"
    assert not any("tls-verify" in a for a in inspect_argv(REPO, "k1", None, ""))
    pull = pull_argv(STORAGE, REPO, "k1", "sha256:abc", False, "/a.json")
    assert pull[-2:] == [f"docker://{REPO}@sha256:abc",
                         "containers-storage:[overlay@/var/lib/x+/run/x]localhost/composer-pulled:k1"]
    assert "--src-tls-verify=false" in pull and pull[pull.index("--src-authfile") + 1] == "/a.json"
    push = push_argv(STORAGE, REPO, "k1", True, "")
    assert push[-1] == f"docker://{REPO}:k1" and "--dest-tls-verify=true" in push
    assert "--command-timeout" in push and "--retry-times" in push


def test_a_matching_label_is_pulled_by_digest(tmp_path: Path) -> None:
    runner, warnings = FakeSkopeo({"k1": "k1"}), []
    assert remote(runner, tmp_path, warnings, cache_from=REPO).fetch("k1", None)
    assert copies(runner)[0][-2] == f"docker://{REPO}@sha256:{'d' * 64}"
    assert len(warnings) == 1 and "not verified (no --verify-key)" in warnings[0]  # said once, at the start


def test_a_key_the_registry_lacks_is_not_asked_for(tmp_path: Path) -> None:
    runner, warnings = FakeSkopeo({"k1": "k1"}), []
    r = remote(runner, tmp_path, warnings, cache_from=REPO)
    assert not r.fetch("k2", None) and not r.fetch("k3", None)
    assert [a for a in runner.calls if "inspect" in a] == []
    assert len([a for a in runner.calls if "list-tags" in a]) == 1  # asked once per build


def test_an_image_under_another_key_is_refused(tmp_path: Path) -> None:
    runner, warnings = FakeSkopeo({"k2": "k1"}), []
    assert not remote(runner, tmp_path, warnings, cache_from=REPO).fetch("k2", None)
    assert copies(runner) == []
    assert len(warnings) == 2 and "refused" in warnings[1]


def test_a_registry_that_is_down_warns_once(tmp_path: Path) -> None:
    runner, warnings = FakeSkopeo({}, down=True), []
    r = remote(runner, tmp_path, warnings, cache_from=REPO, cache_to=REPO)
    assert not r.fetch("k1", None) and not r.offer("k1") and not r.fetch("k2", None) and not r.offer("k2")
    assert len(warnings) == 2 and "not verified" in warnings[0] and "building locally" in warnings[1]
    assert len(runner.calls) == 1  # nothing more asked of it


def test_push_only_what_the_registry_lacks_and_only_labelled_images(tmp_path: Path) -> None:
    runner, warnings = FakeSkopeo({"k1": "k1"}), []
    r = remote(runner, tmp_path, warnings, cache_to=REPO)
    assert not r.offer("k1")
    assert r.offer("k2")
    assert copies(runner)[-1][-1] == f"docker://{REPO}:k2"
    assert not r.offer("k2")  # known pushed now
    old = FakeSkopeo({}, local_label="")  # committed before key labels
    assert not remote(old, tmp_path, warnings, cache_to=REPO).offer("k3")
    assert copies(old) == []


def test_creds_go_to_a_private_auth_file_never_argv(tmp_path: Path) -> None:
    runner, warnings = FakeSkopeo({"k1": "k1"}), []
    r = remote(runner, tmp_path, warnings, cache_from=REPO, creds="ci:s3cret")
    r.fetch("k1", None)
    assert not any("s3cret" in a for argv in runner.calls for a in argv)
    auth = Path(r.authfile)
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    token = json.loads(auth.read_text())["auths"]["registry.example:5000"]["auth"]
    assert base64.b64decode(token) == b"ci:s3cret"


@pytest.mark.parametrize("bad", ["registry:5000/x:tag", "registry/x@sha256:abc", "justaname"])
def test_a_repo_with_tag_digest_or_no_host_is_an_error(bad: str) -> None:
    with pytest.raises(ComposerError, match="--cache-from"):
        check_repo(bad, "--cache-from")
    assert check_repo("docker://localhost:5000/a/b", "x") == "localhost:5000/a/b"


def test_recipe_cache_table_is_read_and_checked(tmp_path: Path) -> None:
    import subprocess
    import sys

    from composer.recipe import load_recipe

    root = Path(__file__).resolve().parent.parent.parent
    recipe = tmp_path / "r.toml"
    text = f'extends = "{root}/tests/recipes/core-test.toml"\nname = "team"\n'
    recipe.write_text(text + f'\n[cache]\nfrom = "{REPO}"\n')
    loaded = load_recipe(recipe)
    assert (loaded.cache_from, loaded.cache_to) == (REPO, "")
    recipe.write_text(text + '\n[cache]\nto = "registry.example/x:latest"\n')
    result = subprocess.run([sys.executable, "-m", "composer", "check", str(recipe)],
                            capture_output=True, text=True, cwd=root)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "r.toml: cache.to: 'registry.example/x:latest' is not a registry repository" in result.stderr


def test_push_ref_checks_and_argv() -> None:
    from composer.cache.registry import copy_out_argv
    from composer.refs import check_image_ref

    assert check_image_ref("docker://127.0.0.1:5000/team/app:1", "--push") == "127.0.0.1:5000/team/app:1"
    with pytest.raises(ComposerError, match="--push"):
        check_image_ref("app:1", "--push")
    argv = copy_out_argv(STORAGE, "localhost/app:1", "r.example/team/app:1", None, "")
    assert argv[-2:] == ["containers-storage:[overlay@/var/lib/x+/run/x]localhost/app:1",
                         "docker://r.example/team/app:1"]


def test_restacked_layers_are_pulled_not_built(tmp_path: Path) -> None:
    """The builder's hooks: a layer missing locally comes from the registry when it has it
    (restacked module layers too, from several threads); what it lacks is pushed."""
    from composer.builder import BuildSettings, build
    from composer.planner import plan_file
    from tests.unit.test_builder import RecordingRunner, quiet, write_restack_recipe

    plan = plan_file(write_restack_recipe(tmp_path))
    leaves = [s.key for s in plan.steps if s.restacked]
    assert plan.reconcile is not None and len(leaves) == 3

    # Each image's diff IDs: its parent's and one of its own (the reconcile layer: the
    # common parent's, each member's own layer, its own), as buildah commits them.
    chains: dict[str, list[str]] = {}
    for layer in plan.layers():
        below = list(chains.get(layer.parent_key, []))
        if layer.name == "reconcile":
            below += [chains[k][-1] for k in leaves]
        chains[layer.key] = [*below, f"sha256:{layer.key}"]

    graph = tmp_path / "graph"
    (graph / "overlay-images").mkdir(parents=True)
    (graph / "overlay-layers").mkdir(parents=True)

    records_lock = threading.Lock()  # restacked layers are pulled from several threads

    def store(key: str) -> None:
        """What containers-storage records when skopeo copies key's image into it (under its
        lock, as c/storage writes them)."""
        with records_lock:
            write_records(key)

    def write_records(key: str) -> None:
        images = json.loads((graph / "overlay-images/images.json").read_text() or "[]") \
            if (graph / "overlay-images/images.json").is_file() else []
        layers = json.loads((graph / "overlay-layers/layers.json").read_text()) \
            if (graph / "overlay-layers/layers.json").is_file() else []
        ids = ["L" + "|".join(chains[key][:i + 1]) for i in range(len(chains[key]))]
        layers += [{"id": ids[i], "parent": ids[i - 1] if i else "", "diff-digest": d}
                   for i, d in enumerate(chains[key])]
        images.append({"id": key, "names": [f"localhost/composer-pulled:{key}"], "layer": ids[-1]})
        for path, records in ((graph / "overlay-images/images.json", images),
                              (graph / "overlay-layers/layers.json", layers)):
            path.with_suffix(".tmp").write_text(json.dumps(records))
            path.with_suffix(".tmp").replace(path)  # atomically, as c/storage writes it

    class Registry(RecordingRunner):
        def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, stream: bool = False) -> str:
            if argv[0] == "skopeo" and str(argv[-1]).startswith("containers-storage:"):
                store(str(argv[-1]).rsplit(":", 1)[1])
            return super().run(argv, env, stream)

        def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
            argv = [str(a) for a in argv]
            if argv[0] == "buildah" and "info" in argv:
                return f"{graph} overlay\n"
            if argv[0] == "skopeo" and "list-tags" in argv:
                self.calls.append(argv)
                return json.dumps({"Tags": [*leaves, plan.reconcile.key]})  # type: ignore[union-attr]
            if argv[0] == "skopeo" and "--config" in argv:  # pinned by digest: sha256:<key> here
                self.calls.append(argv)
                return json.dumps({"rootfs": {"type": "layers", "diff_ids": chains[argv[-1].rsplit(":", 1)[1]]}})
            if argv[0] == "skopeo" and "inspect" in argv:
                self.calls.append(argv)
                tag = argv[-1].rsplit(":", 1)[1]
                return json.dumps({"Digest": f"sha256:{tag}", "Labels": {KEY_LABEL: tag}})
            if argv[0] == "buildah" and "inspect" in argv and "--format" not in argv:  # a local image's documents
                key = argv[-1].rsplit(":", 1)[1]
                return json.dumps({"Manifest": "{}", "Config": json.dumps({"rootfs": {"diff_ids": chains[key]}})})
            if argv[0] == "buildah" and "inspect" in argv:  # the ID and key label of a local image
                return f"{'c' * 64} {argv[-1].rsplit(':', 1)[1]}"
            return super().output(argv, env)

    runner = Registry(cached=[plan.base.key, plan.steps[0].key])
    registry = RegistryCache(cache_from=REPO, cache_to=REPO)
    ctx = build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                    archive=False, jobs=3, registry=registry), runner, quiet())
    cache = {r.layer.name: r.cache for r in ctx.results}
    assert cache == {"scratch": "hit", "core": "hit", "left": "pulled", "right": "pulled", "top": "pulled",
                     "reconcile": "pulled", "finalize": "miss"}
    assert [a[-1] for a in runner.calls if a[1] == "from"] == [cmd.cache_ref(plan.reconcile.key)]  # finalize
    pushed = sorted(a[-1].rsplit(":", 1)[1] for a in runner.calls if a[0] == "skopeo" and a[-1].startswith("docker://")
                    and "copy" in a)
    assert pushed == sorted([plan.base.key, plan.steps[0].key, plan.finalize.key])
    assert all((tmp_path / "c" / "keys" / f"{k}.json").is_file() for k in leaves)  # kept for plan --why


def test_the_warning_keeps_skopeos_message_alone() -> None:
    from composer.cache.registry import skopeo_message

    line = 'time="2026-11-27T07:12:28Z" level=fatal msg="writing blob: \\"x\\": Digest did not match"'
    assert skopeo_message(line) == 'writing blob: "x": Digest did not match'
    assert skopeo_message("  plain words\n") == "plain words"


@pytest.mark.parametrize("output", [
    'msg="Error listing repository tags: fetching tags list: invalid status code from registry 404 (Not Found)"',
    'msg="... name unknown: repository name not known to registry"',
    # skopeo 1.18 (the composer image's Debian trixie) gives only the registry's message
    'msg="Error listing repository tags: fetching tags list: repository name not known to registry"',
])
def test_a_repository_nothing_was_pushed_to_is_empty_not_down(output: str) -> None:
    assert unknown_repository(output)
    assert not unknown_repository('msg="pinging container registry: connect: connection refused"')
