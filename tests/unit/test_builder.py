"""The builder's decisions, with a runner that records argv instead of starting buildah:
what is built and what is reused, the order of the buildah calls of one module layer,
the build-step contract it hands to scripts, clean-up on failure, and the key documents
kept for `plan --why`. The integration tests build the same things with real buildah."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from composer import commands as cmd
from composer import toolkit
from composer.builder import BuildContext, BuildSettings, EarlyExport, build
from composer.errors import CommandError, ComposerError
from composer.lockfile import Entry, Lock, Package
from composer.model import Plan
from composer.planner import plan_file, relock
from composer.progress import Progress
from composer.runner import Runner

# What `buildah commit --format docker` stores: the config names the container that
# committed it and the image below it.
COMMITTED_CONFIG = {"created": "1970-01-01T00:00:00Z", "container": "c" * 64, "parent": "sha256:" + "a" * 64,
                    "config": {}, "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "b" * 64]}, "history": []}
COMMITTED_MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                      "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                                 "digest": "sha256:" + "c" * 64},
                      "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
                                  "digest": "sha256:" + "d" * 64}]}


class RecordingRunner(Runner):
    """Records every argv; answers `buildah images --json` with the keys it is told are
    cached; fails the first command that contains `fail_on`."""

    def __init__(self, cached: Sequence[str] = (), fail_on: str = "", containers: Sequence[str] = ()) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.cached = list(cached)
        self.fail_on = fail_on
        self.containers = list(containers)

    @staticmethod
    def plain(argv: Sequence[str]) -> list[str]:
        """argv without the storage flags every buildah call carries."""
        out = [str(a) for a in argv]
        while len(out) > 2 and out[1] == "--root":
            del out[1:3]
        return out

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, stream: bool = False) -> str:
        argv = self.plain(argv)
        self.calls.append(argv)
        if self.fail_on and any(self.fail_on in a for a in argv):
            raise CommandError(argv, 7, "E: it broke\n")
        return ""

    def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        argv = self.plain(argv)
        self.calls.append(argv)
        if argv[1:3] == ["images", "--json"]:
            return json.dumps([{"names": [cmd.cache_ref(k)]} for k in self.cached])
        if argv[1:3] == ["containers", "--json"]:
            return json.dumps([{"containername": n} for n in self.containers])
        if argv[1:4] == ["inspect", "--type", "image"]:
            return json.dumps({"Manifest": json.dumps(COMMITTED_MANIFEST), "Config": json.dumps(COMMITTED_CONFIG)})
        return ""

    def verbs(self) -> list[str]:
        """buildah's subcommand (or the program) of each call, in order."""
        return [a[1] if a[0] == "buildah" else a[0] for a in self.calls]


def write_recipe(root: Path) -> Path:
    tool = root / "layers" / "tool"
    (tool / "scripts").mkdir(parents=True)
    (tool / "files").mkdir()
    (tool / "files" / "motd").write_text("hello\n")
    (tool / "scripts" / "setup.sh").write_text("#!/bin/sh\nset -eu\necho set up\n")
    (tool / "module.toml").write_text(
        'name = "tool"\nversion = "1"\n'
        '[options.flavour]\ntype = "string"\nenum = ["plain", "fancy"]\ndefault = "plain"\n'
        '[packages]\ndebian = ["jq"]\n'
        '[option_packages.flavour.fancy]\ndebian = ["figlet"]\n'
        '[[files]]\nsrc = "files/motd"\ndest = "/etc/motd"\nmode = "0644"\n'
        '[[scripts]]\nrun = "scripts/setup.sh"\n'
        '[env]\nPATH = "/opt/tool/bin:$PATH"\n'
    )
    note = root / "layers" / "note"
    note.mkdir(parents=True)
    (note / "module.toml").write_text('name = "note"\nversion = "1"\nclean = ["/var/cache/note*"]\n')
    recipe = root / "r.toml"
    recipe.write_text(
        'name = "demo"\n[base]\nfrom = "scratch"\nfamily = "debian"\n'
        '[[layers]]\nmodule = "tool"\n[layers.options]\nflavour = "fancy"\n'
        '[[layers]]\nmodule = "note"\n'
    )
    return recipe


@pytest.fixture()
def plan(tmp_path: Path) -> Plan:
    return plan_file(write_recipe(tmp_path))


def settings(tmp_path: Path, archive: bool = False) -> BuildSettings:
    return BuildSettings(storage=cmd.Storage(root=str(tmp_path / "storage")), cache_dir=tmp_path / "cache",
                         output_dir=tmp_path / "out", archive=archive)


def lists_step(runner: RecordingRunner) -> set[str]:
    """The working containers of composer's own package-lists step."""
    return {a[a.index("--") - 1] for a in runner.calls if a[1] == "run" and a[-3:] == ["apt-get", "update", "-q"]}


def module_froms(runner: RecordingRunner) -> list[list[str]]:
    """The `buildah from` calls of layers (the package-lists step's left out)."""
    skip = lists_step(runner)
    return [a for a in runner.calls if a[1] == "from" and working_name(a) not in skip]


def working_name(argv: list[str]) -> str:
    """The container name of a `buildah from --name NAME ...` call."""
    return argv[argv.index("--name") + 1]


def quiet() -> Progress:
    return Progress(stream=io.StringIO())


def test_first_build_builds_every_layer_in_order(plan: Plan, tmp_path: Path) -> None:
    runner = RecordingRunner()
    ctx = build(plan, settings(tmp_path), runner, quiet())
    assert [r.cache for r in ctx.results] == ["miss"] * 4
    commits = [a[-1] for a in runner.calls if a[1] == "commit"]
    assert commits == [cmd.cache_ref(k) for k in plan.all_keys()]
    assert runner.calls[-1] == ["buildah", "tag", cmd.cache_ref(plan.finalize.key), "localhost/demo:latest"]
    # Finalize's image is re-tagged without the committing container's and parent's IDs,
    # and the image the commit made is removed.
    final = cmd.cache_ref(plan.finalize.key)
    inspect, copy, rmi = runner.calls[[a[-1] for a in runner.calls].index(final) + 1:][:3]
    assert inspect[1:] == ["inspect", "--type", "image", final]
    assert copy[:3] == ["skopeo", "copy", "--quiet"] and copy[-1].endswith(final)
    assert rmi == ["buildah", "rmi", hashlib.sha256(json.dumps(COMMITTED_CONFIG).encode()).hexdigest()]
    # Every key document is kept for `plan --why`.
    assert sorted(p.stem for p in (tmp_path / "cache" / "keys").iterdir()) == sorted(plan.all_keys())


def test_module_layer_calls_and_contract(plan: Plan, tmp_path: Path) -> None:
    runner = RecordingRunner(cached=[plan.base.key])
    build(plan, settings(tmp_path), runner, quiet())
    step = plan.steps[0]
    start = next(i for i, a in enumerate(runner.calls) if a[1] == "from" and a[-1] == cmd.cache_ref(step.parent_key)
                 and runner.calls[i + 1][1] == "config")  # not composer's package-lists step
    end = next(i for i, a in enumerate(runner.calls) if a[1] == "commit")
    verbs = [a[1] for a in runner.calls[start:end + 1]]
    # from, config (history + env), install, file, options file, script, clean-up,
    # key label, commit
    assert verbs == ["from", "config", "run", "copy", "copy", "run", "run", "config", "commit"]
    assert runner.calls[end - 1][-3:-1] == ["--label", f"io.composer.key={step.key}"]
    install = runner.calls[start + 2]
    assert install[install.index("--") + 1:] == [f"{toolkit.MOUNT}/composer-install", "jq", "figlet"]
    env = dict(a.split("=", 1) for a in (install[i + 1] for i, x in enumerate(install) if x == "--env"))
    assert env["COMPOSER_OPTIONS"] == cmd.OPTIONS_MOUNT and env["COMPOSER_MODULE"] == "tool"
    assert env["COMPOSER_FAMILY"] == "debian" and env["COMPOSER_LIB"] == toolkit.LIB
    assert env["COMPOSER_OPT_FLAVOUR"] == "fancy"
    # The module's own PATH counts from its own step on; the toolkit comes first.
    assert env["PATH"] == f"{toolkit.MOUNT}:/opt/tool/bin:{cmd.DEFAULT_PATH}"
    mounts = [install[i + 1] for i, x in enumerate(install) if x == "--volume"]
    assert f"{toolkit.toolkit_dir()}:{toolkit.MOUNT}:ro" in mounts
    assert any(m.endswith(f":{cmd.STATE_MOUNT}") for m in mounts)
    options_copy = runner.calls[start + 4]
    assert options_copy[-1] == "/etc/composer/options/tool.json" and "0644" in options_copy
    clean = runner.calls[end - 2]
    assert cmd.BUILD_MOUNT_ROOT in clean and "--volume" not in clean  # nothing mounted while cleaning
    # The package lists: read-only, with apt's work folders the step's own and empty.
    lists = [m for m in mounts if ":/var/lib/apt/lists" in m]
    assert [m.split(":", 1)[1] for m in lists] == [
        "/var/lib/apt/lists:ro", "/var/lib/apt/lists/partial", "/var/lib/apt/lists/auxfiles"]
    assert env["COMPOSER_LISTS_FETCHED"] == "1"


def test_package_lists_are_fetched_once_in_a_step_of_composers_own(plan: Plan, tmp_path: Path) -> None:
    """Module steps see the lists read-only (no module rewrites an index another trusts):
    composer fetches them once per build, on the base, before the first module step."""
    runner = RecordingRunner(cached=[plan.base.key])
    build(plan, settings(tmp_path), runner, quiet())
    updates = [i for i, a in enumerate(runner.calls) if a[-3:] == ["apt-get", "update", "-q"]]
    assert len(updates) == 1
    update = runner.calls[updates[0]]
    assert any(m.endswith(":/var/lib/apt/lists") for m in update)  # writable here only
    first_module = next(i for i, a in enumerate(runner.calls) if a[1] == "config" and "--env" in a)
    assert updates[0] < first_module
    assert runner.calls[updates[0] + 1][1] == "rm"  # its container goes at once


def test_state_folder_is_shared_by_the_steps_of_one_build(plan: Plan, tmp_path: Path) -> None:
    # composer-install's "lists fetched" stamp lives there: lists are fetched once per build.
    runner = RecordingRunner()
    build(plan, settings(tmp_path), runner, quiet())
    states = {m for a in runner.calls for m in a if m.endswith(f":{cmd.STATE_MOUNT}")}
    assert len(states) == 1
    assert not Path(states.pop().split(":")[0]).exists()  # removed when the build ends


def test_cached_layers_are_not_rebuilt(plan: Plan, tmp_path: Path) -> None:
    runner = RecordingRunner(cached=plan.all_keys())
    ctx = build(plan, settings(tmp_path), runner, quiet())
    assert [r.cache for r in ctx.results] == ["hit"] * 4
    assert runner.verbs() == ["images", "tag"]  # no lock, no sweep: nothing to build
    assert not (tmp_path / "storage" / "composer.lock").exists()


def test_stale_working_containers_are_swept_under_the_lock(plan: Plan, tmp_path: Path) -> None:
    runner = RecordingRunner(containers=["composer-work-0123456789ab-deadbeef", "someone-elses", "composer-x"])
    build(plan, settings(tmp_path), runner, quiet())
    assert runner.calls[1:3] == [["buildah", "images", "--json"], ["buildah", "containers", "--json"]]
    first_from = next(i for i, a in enumerate(runner.calls) if a[1] == "from")
    removed = [a[2] for a in runner.calls[:first_from] if a[1] == "rm"]
    assert removed == ["composer-work-0123456789ab-deadbeef"]  # only composer's own working containers
    names = [working_name(a) for a in runner.calls if a[1] == "from"]
    # a name of its own for every working container: base, package lists, two modules, finalize
    assert len(set(names)) == len(names) == 5
    assert (tmp_path / "storage" / "composer.lock").exists() and (tmp_path / "cache" / "build.lock").exists()


def test_files_a_killed_build_left_in_the_cache_are_swept(plan: Plan, tmp_path: Path) -> None:
    left = tmp_path / "cache" / "scratch" / "step-killed"
    left.mkdir(parents=True)
    (left / "options.json").write_text("{}")
    build(plan, settings(tmp_path), RecordingRunner(), quiet())
    scratch = tmp_path / "cache" / "scratch"
    # What is left: the (empty) folder of working-container markers.
    assert [p.name for p in scratch.iterdir()] == ["working-containers"]
    assert list((scratch / "working-containers").iterdir()) == []


def test_the_sweep_keeps_what_a_running_process_owns(plan: Plan, tmp_path: Path) -> None:
    # A fully cached build, `composer push` or `cache prune --registry` take no lock and
    # keep their registry credentials in the scratch folder while they run.
    scratch = tmp_path / "cache" / "scratch"
    alive = subprocess.Popen(["sleep", "60"])
    ended = subprocess.Popen(["true"])
    ended.wait()
    try:
        for name in (f"push-{alive.pid}-abc", f"registry-{ended.pid}-def", "step-killed"):
            (scratch / name).mkdir(parents=True)
            (scratch / name / "auth.json").write_text("{}")
        build(plan, settings(tmp_path), RecordingRunner(), quiet())
        assert sorted(p.name for p in scratch.iterdir()) == [f"push-{alive.pid}-abc", "working-containers"]
    finally:
        alive.kill()
        alive.wait()


def test_a_fully_cached_build_still_sweeps_what_a_killed_build_left(plan: Plan, tmp_path: Path) -> None:
    # A build killed after its last commit but before `buildah rm`: every layer is cached,
    # its working container is not. The marker it wrote first sends the next build to sweep.
    killed = "composer-work-0123456789ab-deadbeef"
    markers = tmp_path / "cache" / "scratch" / "working-containers"
    markers.mkdir(parents=True)
    (markers / killed).touch()
    runner = RecordingRunner(cached=plan.all_keys(), containers=[killed])
    build(plan, settings(tmp_path), runner, quiet())
    assert [a[2] for a in runner.calls if a[1] == "rm"] == [killed]
    assert list(markers.iterdir()) == []
    # Swept once: the build after it takes no lock again.
    runner = RecordingRunner(cached=plan.all_keys())
    build(plan, settings(tmp_path), runner, quiet())
    assert runner.verbs() == ["images", "tag"]


def test_a_cached_build_does_not_wait_to_sweep(plan: Plan, tmp_path: Path) -> None:
    # A marker of a running build (it holds the lock): a build with nothing to build
    # neither waits for it nor touches its container.
    markers = tmp_path / "cache" / "scratch" / "working-containers"
    markers.mkdir(parents=True)
    (markers / "composer-work-0123456789ab-feedface").touch()
    lock = tmp_path / "storage" / "composer.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), "600"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        out = io.StringIO()
        runner = RecordingRunner(cached=plan.all_keys(), containers=["composer-work-0123456789ab-feedface"])
        build(plan, settings(tmp_path), runner, Progress(stream=out))  # would hang if it waited
        assert "waiting" not in out.getvalue()
        assert runner.verbs() == ["images", "tag"]  # neither listed nor removed
    finally:
        holder.kill()
        holder.wait()


def test_a_second_build_waits_for_the_lock_and_says_so(plan: Plan, tmp_path: Path) -> None:
    lock = tmp_path / "storage" / "composer.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    out = io.StringIO()
    build(plan, settings(tmp_path), RecordingRunner(), Progress(stream=out))
    assert holder.wait(timeout=10) == 0
    assert f"waiting for another composer build (pid {holder.pid}) to finish with the storage" in out.getvalue()


# Holds the lock as composer does (pid written in the file) for argv[2] seconds (one).
HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1)
"""


def test_module_without_work_is_not_cleaned(plan: Plan, tmp_path: Path) -> None:
    runner = RecordingRunner(cached=plan.all_keys()[:2])
    build(plan, settings(tmp_path), runner, quiet())
    # "note" has no packages or scripts but a clean list: its step still cleans.
    runs = [a for a in runner.calls if a[1] == "run"]
    assert len(runs) == 1 and runs[0][-1] == "/var/cache/note*"


def test_failure_removes_the_working_container_and_commits_nothing(plan: Plan, tmp_path: Path) -> None:
    runner = RecordingRunner(cached=[plan.base.key], fail_on="setup.sh")
    with pytest.raises(ComposerError, match=r"layer 1 tool: command failed \(exit 7\)") as err:
        build(plan, settings(tmp_path), runner, quiet())
    assert "E: it broke" in err.value.message
    made = [working_name(a) for a in module_froms(runner)]
    assert len(made) == 1 and made[0].startswith("composer-work-")
    assert runner.calls[-1] == ["buildah", "rm", made[0]]
    assert not [a for a in runner.calls if a[1] == "commit"]
    assert not (tmp_path / "cache" / "keys" / f"{plan.steps[0].key}.json").exists()


def write_restack_recipe(root: Path) -> Path:
    for name in ("core", "left", "right", "top"):
        folder = root / "layers" / name
        (folder / "scripts").mkdir(parents=True)
        (folder / "scripts" / "go.sh").write_text(f"#!/bin/sh\necho {name}\n")
        after = 'after = ["core"]\n' if name != "core" else ""
        (folder / "module.toml").write_text(
            f'name = "{name}"\nversion = "1"\n{after}[[scripts]]\nrun = "scripts/go.sh"\n')
    recipe = root / "r.toml"
    recipe.write_text('name = "demo"\nlayering = "restack"\n[base]\nfrom = "scratch"\nfamily = "debian"\n'
                      + "".join(f'[[layers]]\nmodule = "{m}"\n' for m in ("core", "left", "right", "top")))
    return recipe


class SlowRunner(RecordingRunner):
    """Scripts take a moment, and each records the thread it ran on."""

    def __init__(self, cached: Sequence[str]) -> None:
        super().__init__(cached=cached)
        self.threads: set[str] = set()

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, stream: bool = False) -> str:
        if any(str(a).endswith("go.sh") for a in argv):
            self.threads.add(threading.current_thread().name)
            time.sleep(0.3)
        return super().run(argv, env, stream)


@pytest.mark.parametrize("jobs", [1, 3])
def test_restacked_modules_build_on_the_common_parent_at_once(tmp_path: Path, jobs: int) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    core = plan.steps[0]
    assert core.module.name == "core" and not core.restacked
    leaves = [s for s in plan.steps if s.restacked]
    assert [s.module.name for s in leaves] == ["left", "right", "top"]
    assert plan.reconcile is not None and plan.reconcile.members == tuple(s.key for s in leaves)
    # Everything but the three leaves is there already (the reconcile layer too).
    runner = SlowRunner(cached=[plan.base.key, core.key, plan.reconcile.key, plan.finalize.key])
    ctx = build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                    archive=False, jobs=jobs), runner, quiet())
    froms = [a[-1] for a in module_froms(runner)]
    assert froms == [cmd.cache_ref(core.key)] * 3  # each on the common parent alone
    assert len(runner.threads) == min(jobs, 3)
    assert [r.layer.name for r in ctx.results] == [
        "scratch", "core", "left", "right", "top", "reconcile", "finalize"]  # in layer order


DAMAGED = "0123456789abcdef" * 4
DAMAGED_STDERR = (f'Error: locating item named "manifest" for image with ID "{DAMAGED}" '
                  "(consider removing the image to resolve the issue): file does not exist\n")


class DamagedStorage(RecordingRunner):
    """`buildah images` fails as c/storage does on a record whose manifest a killed commit
    never wrote, until that image is removed."""

    def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        plain = self.plain(argv)
        removed = any(a[1:] == ["rmi", "--force", DAMAGED] for a in self.calls)
        if plain[1:3] == ["images", "--json"] and not removed:
            self.calls.append(plain)
            raise CommandError(plain, 125, DAMAGED_STDERR)
        return super().output(argv, env)


def test_a_damaged_image_is_removed_under_the_lock_and_the_build_goes_on(plan: Plan, tmp_path: Path) -> None:
    runner = DamagedStorage(cached=plan.all_keys())
    out = io.StringIO()
    ctx = build(plan, settings(tmp_path), runner, Progress(stream=out))
    assert [r.cache for r in ctx.results] == ["hit"] * 4
    assert ["buildah", "rmi", "--force", DAMAGED] in runner.calls
    assert f"removed damaged image {DAMAGED[:12]}" in out.getvalue()
    assert (tmp_path / "storage" / "composer.lock").exists()  # removed under the storage lock


def test_plan_names_a_damaged_image_in_one_line() -> None:
    from composer.builder import DamagedImages, list_cached_keys

    with pytest.raises(DamagedImages, match=f"damaged image.*{DAMAGED[:12]}") as caught:
        list_cached_keys(DamagedStorage(), cmd.Storage())
    assert caught.value.hint is not None and f"buildah rmi --force {DAMAGED}" in caught.value.hint


# --- fan-out: --only MODULE and --from-cache-only (docs/build-job.md) ---------------


def test_only_builds_exactly_that_module_layer_on_its_parent(tmp_path: Path) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    core, right = plan.steps[0], plan.steps[2]
    assert right.module.name == "right" and right.restacked
    runner = RecordingRunner(cached=[plan.base.key, core.key])
    ctx = build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                    archive=False, only="right"), runner, quiet())
    assert [(r.layer.name, r.cache) for r in ctx.results] == [("right", "miss")]
    assert [a[-1] for a in runner.calls if a[1] == "commit"] == [cmd.cache_ref(right.key)]
    assert [a[-1] for a in module_froms(runner)] == [cmd.cache_ref(core.key)]
    assert "tag" not in runner.verbs()  # no image: only a layer


def test_only_without_its_parent_fails_naming_it(tmp_path: Path) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    core = plan.steps[0]
    runner = RecordingRunner(cached=[plan.base.key])
    with pytest.raises(ComposerError) as e:
        build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                  archive=False, only="left"), runner, quiet())
    assert str(e.value).startswith(f"--only left: layer(s) it is built on in neither the local storage nor "
                                   f"the --cache-from registry: core ({core.key})")
    assert "\n" not in str(e.value)
    assert not [a for a in runner.calls if a[1] in ("from", "commit")]


def test_only_names_an_unknown_module(tmp_path: Path) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    with pytest.raises(ComposerError, match=r"^--only nope: the recipe demo has no module layer nope "
                                            r"\(its modules: core, left, right, top\)$"):
        build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                  archive=False, only="nope"), RecordingRunner(), quiet())


def test_from_cache_only_fails_naming_every_missing_module_and_builds_nothing(tmp_path: Path) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    core, left, right, top = plan.steps
    runner = RecordingRunner(cached=[plan.base.key, core.key, right.key])
    with pytest.raises(ComposerError) as e:
        build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                  archive=False, from_cache_only=True), runner, quiet())
    assert str(e.value).startswith(
        f"--from-cache-only: 2 module layer(s) in neither the local storage nor the --cache-from registry: "
        f"left ({left.key}), top ({top.key}) (")
    assert not [a for a in runner.calls if a[1] in ("from", "commit", "run")]


def test_from_cache_only_stacks_and_finalizes_the_module_layers_it_has(tmp_path: Path) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    assert plan.reconcile is not None
    # The reconcile layer is there too: stacking needs real layers (the integration test).
    runner = RecordingRunner(cached=[plan.base.key, *(s.key for s in plan.steps), plan.reconcile.key])
    ctx = build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                    archive=False, from_cache_only=True), runner, quiet())
    assert [(r.layer.name, r.cache) for r in ctx.results] == [
        ("scratch", "hit"), ("core", "hit"), ("left", "hit"), ("right", "hit"), ("top", "hit"),
        ("reconcile", "hit"), ("finalize", "miss")]
    assert [a[-1] for a in runner.calls if a[1] == "commit"] == [cmd.cache_ref(plan.finalize.key)]
    assert runner.calls[-1] == ["buildah", "tag", cmd.cache_ref(plan.finalize.key), "localhost/demo:latest"]


def test_parent_only_builds_up_to_the_common_parent(tmp_path: Path) -> None:
    plan = plan_file(write_restack_recipe(tmp_path))
    core = plan.steps[0]
    runner = RecordingRunner()
    ctx = build(plan, BuildSettings(storage=cmd.Storage(root=str(tmp_path / "s")), cache_dir=tmp_path / "c",
                                    archive=False, parent_only=True), runner, quiet())
    assert [(r.layer.name, r.cache) for r in ctx.results] == [("scratch", "miss"), ("core", "miss")]
    assert [a[-1] for a in runner.calls if a[1] == "commit"] == [cmd.cache_ref(plan.base.key),
                                                                 cmd.cache_ref(core.key)]
    assert "tag" not in runner.verbs()


def test_an_early_export_that_fails_is_said_and_is_not_the_builds_failure(
        plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from composer.emit import oci

    failures = iter([ComposerError("export x: buildah push failed"), RuntimeError("a bug")])

    def failing(*args: object, **kwargs: object) -> oci.EarlyResult:
        raise next(failures)

    monkeypatch.setattr(oci, "export_early", failing)
    out = io.StringIO()
    early = EarlyExport(BuildContext(plan, settings(tmp_path, archive=True), RecordingRunner(), Progress(stream=out)))
    first, second = plan.layers()[1:3]
    early.offer(first)
    early.offer(second)
    early.close(cancel=False)  # raises nothing: the export at the end compresses those layers
    said = [line for line in out.getvalue().splitlines() if line.startswith("early export of")]
    assert said == [f"early export of {first.label}: export x: buildah push failed; the export compresses it",
                    f"early export of {second.label}: RuntimeError: a bug; the export compresses it"]
    assert early.as_dict()["layers_written"] == 0 and len(early.as_dict()["failures"]) == 2


def locked(plan: Plan, tool_debs: Sequence[str]) -> Plan:
    """plan with a lock: tool's entry records tool_debs (name version), note's nothing."""
    debs = tuple(Package("deb", f"{name}:amd64", version) for name, version in (d.split() for d in tool_debs))
    entries = {"tool": Entry("tool", "in", debs), "note": Entry("note", "in")}
    return relock(plan, Lock(plan.recipe.path.with_suffix(".lock"), modules=entries))


def fetched_lists(tmp_path: Path, plan: Plan) -> Path:
    """The host's package lists as an earlier build on plan's base left them."""
    lists = tmp_path / "cache" / "packages" / plan.base.key[:16] / "var_lib_apt_lists"
    lists.mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages").write_text("Package: jq\n")
    return lists


def test_a_step_locked_to_install_no_deb_does_not_wait_for_the_lists(plan: Plan, tmp_path: Path) -> None:
    # Its lock entry records no deb: the lock check refuses any deb it installs, so the lists
    # an earlier build fetched do; the build fetches none, and tool's script still runs.
    plan = locked(plan, [])
    fetched_lists(tmp_path, plan)
    runner = RecordingRunner(cached=[plan.base.key])
    build(plan, settings(tmp_path), runner, quiet())
    assert any(a[1] == "run" and "/run/composer/module/scripts/setup.sh" in a for a in runner.calls)
    assert lists_step(runner) == set()
    assert [a for a in runner.calls if a[-3:] == ["apt-get", "update", "-q"]] == []


@pytest.mark.parametrize("case", ["installs debs", "no lists yet", "unlocked"])
def test_the_lists_are_fetched_when_a_step_may_need_them(plan: Plan, tmp_path: Path, case: str) -> None:
    if case != "unlocked":
        plan = locked(plan, ["jq 1.7", "figlet 2.2"] if case == "installs debs" else [])
    if case != "no lists yet":
        fetched_lists(tmp_path, plan)
    runner = RecordingRunner(cached=[plan.base.key])
    if case == "installs debs":  # this runner installs nothing: the lock check then refuses tool
        with pytest.raises(ComposerError, match="locked 2.2, the build did not install it"):
            build(plan, settings(tmp_path), runner, quiet())
    else:
        build(plan, settings(tmp_path), runner, quiet())
    assert len(lists_step(runner)) == 1
