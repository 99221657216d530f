"""`composer job` (the Kubernetes build Job) and the generated `composer` module."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from composer.cli import cli, main
from composer.emit.job import JobConfig, build_args, job_document, job_name, pod_of_job
from composer.errors import ComposerError
from composer.planner import plan_file
from composer.selfmodule import self_modules_dir, source_digest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden"
REGENERATE = runpy.run_path(str(GOLDEN_DIR / "regenerate"))
JOB_GOLDEN: dict[str, str] = REGENERATE["JOB_GOLDEN"]
K8S_VERSION = kubernetes_validate.latest_version()
IMAGE = "registry.example:5000/composer:latest"
TURBOFLOW = str(ROOT / "recipes" / "turboflow.toml")


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated module goes to a cache of the test's own, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def job(*args: str) -> Any:
    return CliRunner().invoke(cli, ["job", *args], catch_exceptions=False)


def validate(document: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{document['kind']}: {e.message} at {list(e.path)}")


# ---- the manifest ----------------------------------------------------------------------


@pytest.mark.parametrize("golden", sorted(JOB_GOLDEN))
def test_golden(golden: str) -> None:
    path = GOLDEN_DIR / golden
    assert path.exists(), f"missing {path}: run tests/golden/regenerate"
    assert REGENERATE["render_job"](JOB_GOLDEN[golden]) == path.read_text(), (
        f"{golden} differs from `composer job {JOB_GOLDEN[golden]}`: run tests/golden/regenerate and review the diff"
    )


@pytest.mark.parametrize("golden", sorted(JOB_GOLDEN))
def test_the_job_and_its_pod_pass_the_kubernetes_schema(golden: str) -> None:
    for document in yaml.safe_load_all((GOLDEN_DIR / golden).read_text()):  # a fan-out's are three
        assert document["apiVersion"] == "batch/v1" and document["kind"] == "Job"
        validate(document)
        validate(pod_of_job(document))


def test_the_schema_check_catches_a_wrong_field() -> None:
    document = job_document(JobConfig(name="x", recipe="recipes/x.toml", image=IMAGE))
    document["spec"]["backoffLimit"] = "never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_job_runs_composer_build_against_the_registry_cache() -> None:
    result = job(TURBOFLOW, "--image", IMAGE, "--cache", "reg:5000/tf-cache", "--push", "reg:5000/tf:1")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.output)
    spec = document["spec"]["template"]["spec"]
    (ctr,) = spec["containers"]
    assert ctr["image"] == IMAGE and ctr["command"] == ["composer"]
    assert ctr["args"] == ["build", "recipes/turboflow.toml", "--no-archive", "--cache-from", "reg:5000/tf-cache",
                           "--cache-to", "reg:5000/tf-cache", "--push", "reg:5000/tf:1"]
    assert ctr["workingDir"] == "/opt/composer"
    # Unprivileged: a user namespace of its own, CAP_SYS_ADMIN only in it.
    assert spec["hostUsers"] is False
    assert ctr["securityContext"] == {"capabilities": {"add": ["SYS_ADMIN"]},
                                      "seccompProfile": {"type": "RuntimeDefault"},
                                      "appArmorProfile": {"type": "Unconfined"}}
    assert ", unprivileged: a user namespace of its own" in result.output.split("\n", 2)[1]
    assert spec["restartPolicy"] == "Never"
    assert document["metadata"]["name"] == "composer-build-turboflow"
    assert {m["mountPath"] for m in ctr["volumeMounts"]} == {"/var/lib/containers", "/root/.cache/composer"}


def test_privileged_is_the_fallback_asked_for() -> None:
    for args in (("--privileged",), ("--privileged", "--fan-out")):
        recipe = str(ROOT / "tests" / "recipes" / "fanout-ci.toml") if "--fan-out" in args else TURBOFLOW
        result = job(recipe, "--image", IMAGE, "--cache", "reg:5000/c", *args)
        assert result.exit_code == 0, result.output
        for document in yaml.safe_load_all(result.output):
            validate(document)
            spec = document["spec"]["template"]["spec"]
            assert spec["containers"][0]["securityContext"] == {"privileged": True}
            assert "hostUsers" not in spec  # a privileged container shares the node's users
    assert "privileged (--privileged)" in job(TURBOFLOW, "--image", IMAGE, "--privileged").output


def test_cache_from_and_to_apart_and_without_a_cache() -> None:
    config = JobConfig(name="n", recipe="r.toml", image=IMAGE, cache_from="a/c", cache_to=None)
    assert build_args(config) == ["build", "r.toml", "--no-archive", "--cache-from", "a/c"]
    assert build_args(JobConfig(name="n", recipe="r.toml", image=IMAGE)) == ["build", "r.toml", "--no-archive"]
    result = job(TURBOFLOW, "--image", IMAGE, "--cache", "a/c", "--cache-to", "b/c")
    args = yaml.safe_load(result.output)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[3:] == ["--cache-from", "a/c", "--cache-to", "b/c"]


def test_registry_credentials_come_from_a_secret_never_the_manifest() -> None:
    result = job(TURBOFLOW, "--image", IMAGE, "--registry-secret", "regcred")
    document = yaml.safe_load(result.output)
    spec = document["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "registry-auth"]
    assert volume["secret"]["secretName"] == "regcred"
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["REGISTRY_AUTH_FILE"] == "/run/composer-registry/auth.json"
    validate(document)


def test_the_signing_key_comes_from_a_secret_as_files_and_no_token_is_mounted() -> None:
    result = job(TURBOFLOW, "--image", IMAGE, "--cache", "r.example/c", "--signing-secret", "team-signing")
    document = yaml.safe_load(result.output)
    spec = document["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    (volume,) = [v for v in spec["volumes"] if v["name"] == "signing"]
    assert volume["secret"]["secretName"] == "team-signing" and volume["secret"]["defaultMode"] == 0o400
    assert [i["key"] for i in volume["secret"]["items"]] == ["cosign.key", "cosign.password", "cosign.pub"]
    (box,) = spec["containers"]
    (mount,) = [m for m in box["volumeMounts"] if m["name"] == "signing"]
    assert mount == {"name": "signing", "mountPath": "/run/composer-signing", "readOnly": True}
    args = box["args"]
    assert args[args.index("--sign-key") + 1] == "/run/composer-signing/cosign.key"
    assert args[args.index("--sign-passphrase-file") + 1] == "/run/composer-signing/cosign.password"
    assert args[args.index("--verify-key") + 1] == "/run/composer-signing/cosign.pub"
    assert not any(e["name"].startswith(("COMPOSER_SIGN", "COSIGN")) for e in box["env"])  # files, not env
    validate(document)
    # Without a Secret: no signing, and still no token.
    plain = yaml.safe_load(job(TURBOFLOW, "--image", IMAGE).output)["spec"]["template"]["spec"]
    assert plain["automountServiceAccountToken"] is False and "--sign-key" not in plain["containers"][0]["args"]


def test_the_pod_variant_is_the_jobs_template() -> None:
    args = [TURBOFLOW, "--image", IMAGE]
    document = yaml.safe_load(job(*args).output)
    pod = yaml.safe_load(job(*args, "--pod").output)
    assert pod["kind"] == "Pod" and pod["spec"] == document["spec"]["template"]["spec"]
    validate(pod)


def test_a_recipe_outside_the_project_needs_its_path_in_the_container(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "team.toml"
    recipe.write_text('name = "team"\n[base]\nfrom = "scratch"\nfamily = "debian"\n')
    with pytest.raises(SystemExit) as exit:
        main(["job", str(recipe), "--image", IMAGE])
    assert exit.value.code == 1
    error, hint = capsys.readouterr().err.strip().splitlines()
    assert error == f"composer: error: {recipe}: not in this project, so not in the composer image"
    assert "--recipe-path" in hint
    ok = job(str(recipe), "--image", IMAGE, "--recipe-path", "/work/team.toml")
    assert yaml.safe_load(ok.output)["spec"]["template"]["spec"]["containers"][0]["args"][1] == "/work/team.toml"


@pytest.mark.parametrize(("name", "expected"), [
    ("turboflow", "composer-build-turboflow"),
    ("Team_X.2", "composer-build-team-x-2"),
    ("x" * 80, "composer-build-" + "x" * 48),
])
def test_job_names_are_dns_labels(name: str, expected: str) -> None:
    assert job_name(name) == expected


# ---- the generated composer module -------------------------------------------------------


def project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for top in ("composer", "layers", "hooks", "recipes"):
        shutil.copytree(ROOT / top, root / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_module_follows_the_source_and_nothing_else(tmp_path: Path) -> None:
    root = project_copy(tmp_path)
    first = self_modules_dir(root, tmp_path / "cache")
    assert first is not None
    module = first / "composer"
    assert (module / "src" / "composer" / "cli.py").read_bytes() == (ROOT / "composer" / "cli.py").read_bytes()
    assert (module / "src" / "layers" / "composer-tools" / "module.toml").is_file()
    digest = source_digest(root)
    # byte code and mtimes do not count
    (root / "composer" / "__pycache__").mkdir()
    (root / "composer" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"x")
    (root / "composer" / "cli.py").touch()
    assert source_digest(root) == digest
    assert self_modules_dir(root, tmp_path / "cache") == first
    assert not list(module.rglob("*.pyc"))
    # a change of the source is a new module folder
    job = root / "composer" / "emit" / "job.py"
    job.write_text(job.read_text() + "\n# changed\n")
    second = self_modules_dir(root, tmp_path / "cache")
    assert second is not None and second != first
    assert (second / "composer" / "src" / "composer" / "emit" / "job.py").read_text().endswith("# changed\n")


def test_the_composer_recipe_plans_with_the_generated_module() -> None:
    plan = plan_file(ROOT / "recipes" / "composer.toml")
    names = [step.module.name for step in plan.steps]
    assert names == ["composer-tools", "composer"]
    ci = plan_file(ROOT / "tests" / "recipes" / "composer-ci.toml")
    assert [s.key for s in ci.steps] == [s.key for s in plan.steps]
    tools_ci = plan_file(ROOT / "tests" / "recipes" / "tools-ci.toml")
    assert ci.base.key == tools_ci.base.key, "the CI recipes share one base"


def test_recipes_that_do_not_name_composer_do_not_generate_it(tmp_path: Path) -> None:
    plan_file(ROOT / "recipes" / "turboflow.toml")
    assert not (tmp_path / "xdg" / "composer" / "self").exists()


# ---- the fan-out (--fan-out) -------------------------------------------------------------


def fanout_jobs(*extra: str) -> list[dict[str, Any]]:
    result = job(str(ROOT / "tests" / "recipes" / "fanout-ci.toml"), "--fan-out", "--image", IMAGE,
                 "--cache", "registry.example:5000/c", *extra)
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.output))


def test_fan_out_is_a_parent_job_an_indexed_job_and_a_final_job() -> None:
    parent, modules, final = fanout_jobs("--push", "registry.example:5000/fanout:test")
    assert parent["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--parent-only"
    assert "suspend" not in parent["spec"]  # it starts at once; the others when resumed
    spec = modules["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["suspend"]) == (
        "Indexed", 3, 3, True)
    script = spec["template"]["spec"]["containers"][0]["command"][2]
    assert "  0) module=motd ;;\n  1) module=marker ;;\n  2) module=fan-note ;;\n" in script
    assert 'exec composer build tests/recipes/fanout-ci.toml --no-archive --cache-from registry.example:5000/c ' \
           '--cache-to registry.example:5000/c --only "$module"' in script
    args = final["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-3:] == ["--push", "registry.example:5000/fanout:test", "--from-cache-only"]
    assert "--cache-to" not in args and final["spec"]["suspend"] is True
    for document in (parent, modules, final):
        validate(document)


@pytest.mark.parametrize("index,module", [("0", "motd"), ("1", "marker"), ("2", "fan-note"), ("3", None)])
def test_each_index_runs_its_own_module(index: str, module: str | None, tmp_path: Path) -> None:
    """The index script run by sh, with a composer of its own that prints its argv."""
    import os
    import subprocess

    (_, modules, _) = fanout_jobs()
    script = modules["spec"]["template"]["spec"]["containers"][0]["command"][2]
    fake = tmp_path / "composer"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "JOB_COMPLETION_INDEX": index}
    done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    if module is None:
        assert done.returncode == 2 and "no module for index 3" in done.stderr
    else:
        assert done.returncode == 0 and done.stdout.splitlines()[-2:] == ["--only", module]


def test_fan_out_needs_a_cache_and_a_restack_recipe() -> None:
    result = job(str(ROOT / "tests" / "recipes" / "fanout-ci.toml"), "--fan-out", "--image", IMAGE)
    assert result.exit_code != 0 and "--fan-out: the stages share layers through a registry" in result.output
    with pytest.raises(ComposerError, match=r"core-test.toml: --fan-out: no restacked module to fan out"):
        job(str(ROOT / "tests" / "recipes" / "core-test.toml"), "--fan-out", "--image", IMAGE, "--cache", "r/c")


def test_what_the_registry_has_gets_no_job_and_no_index() -> None:
    """fanout_documents with the registry's state (what --check-registry asks it): no parent
    Job when it has the common parent, no index for a layer it has, and with every module
    layer there the final Job alone, started at once."""
    from composer.emit.job import FanOut, fanout_documents, render_fanout

    config = JobConfig(name="composer-build-fan", recipe="tests/recipes/fanout-ci.toml", image=IMAGE,
                       cache_from="r/c", cache_to="r/c")
    modules, final = fanout_documents(FanOut(config, ("fan-note",), parent_cached=True,
                                             cached_modules=("motd", "marker")))
    assert modules["spec"]["completions"] == 1 and "suspend" not in modules["spec"]
    script = modules["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "  0) module=fan-note ;;\n  *)" in script
    assert final["spec"]["suspend"] is True
    text = render_fanout(FanOut(config, ("fan-note",), parent_cached=True, cached_modules=("motd", "marker")))
    assert "# (no index for motd, marker: the registry cache has their layers)" in text
    (alone,) = fanout_documents(FanOut(config, (), parent_cached=True, cached_modules=("motd", "marker", "fan-note")))
    assert alone["metadata"]["name"].endswith("-final") and "suspend" not in alone["spec"]
    for document in (modules, final, alone):
        validate(document)


def test_check_registry_goes_with_fan_out() -> None:
    result = job(str(ROOT / "tests" / "recipes" / "fanout-ci.toml"), "--check-registry", "--image", IMAGE,
                 "--cache", "r/c")
    assert result.exit_code != 0 and "--check-registry goes with --fan-out" in result.output
