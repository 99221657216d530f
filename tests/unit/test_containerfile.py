"""`composer containerfile`: the text (golden), its build context, and its errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from composer import commands as cmd
from composer.cli import cli
from composer.emit.containerfile import healthcheck_line, render, write_context
from composer.errors import ComposerError
from composer.model import Healthcheck
from composer.planner import plan_file

ROOT = Path(__file__).resolve().parent.parent.parent
RECIPES = ROOT / "tests" / "recipes"
GOLDEN = ROOT / "tests" / "golden"


def test_matches_golden() -> None:
    # tests/golden/regenerate rewrites it; review its diff.
    text = render(plan_file(RECIPES / "core-test.toml")).text
    assert text == (GOLDEN / "core-test.Containerfile").read_text()


def test_every_build_run_names_the_layer_key() -> None:
    # bud's layer cache keys a RUN by its text only: a changed module file must change it.
    plan = plan_file(RECIPES / "core-test.toml")
    text = render(plan).text
    for step in plan.steps:
        if step.module.scripts or step.module.packages:
            assert f"COMPOSER_LAYER_KEY={step.key}" in text


def test_from_the_base_composer_builds_and_options_as_data() -> None:
    plan = plan_file(RECIPES / "core-test.toml")
    text = render(plan).text
    assert f"ARG BASE={cmd.cache_ref(plan.base.key)}\nFROM $BASE\n" in text
    marker = next(line for line in text.splitlines() if "COMPOSER_OPT_VALUE=" in line)
    # The exec form: the option is one JSON string, never shell text.
    argv = json.loads(marker.strip())
    assert "COMPOSER_OPT_VALUE=it's \"quoted\"; $(not run)" in argv


def test_context_holds_what_composer_mounts_and_copies(tmp_path: Path) -> None:
    plan = plan_file(RECIPES / "core-test.toml")
    write_context(plan, tmp_path / "ctx")
    for step in plan.steps:
        name = step.module.name
        assert (tmp_path / "ctx/options" / f"{name}.json").read_text() == cmd.options_json(step.options)
        assert sorted(p.name for p in (tmp_path / "ctx/modules" / name).rglob("*")) == \
            sorted(p.name for p in step.module.path.rglob("*") if "__pycache__" not in p.parts)
    assert (tmp_path / "ctx/hooks/greeting/50-greet.sh").is_file()
    entry = tmp_path / "ctx/finalize/usr/local/bin/composer-entrypoint"
    assert entry.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "ctx/toolkit/composer-install").is_file()


def test_healthcheck_leaves_zero_durations_out() -> None:
    hc = Healthcheck(("CMD", "curl", "-f", "http://localhost/"), interval="30s", start_period="0s")
    assert healthcheck_line(hc) == ('HEALTHCHECK --interval=30s --timeout=10s --retries=3 '
                                    'CMD ["curl", "-f", "http://localhost/"]')
    shell = Healthcheck(("CMD-SHELL", "test -f /x"))
    assert healthcheck_line(shell).endswith("CMD test -f /x")


def test_cli_writes_file_and_context(tmp_path: Path) -> None:
    target = tmp_path / "out" / "core.Containerfile"
    result = CliRunner().invoke(cli, ["containerfile", str(RECIPES / "core-test.toml"), "-o", str(target),
                                      "--no-host-ca"])
    assert result.exit_code == 0, result.output
    assert target.read_text() == (GOLDEN / "core-test.Containerfile").read_text()
    assert (tmp_path / "out/composer-core-test-test.context/options/jq.json").is_file()
    assert not (tmp_path / "out/composer-core-test-test.context/host-ca.crt").exists()
    assert "buildah bud --layers" in result.output


def test_host_ca_is_mounted_into_steps_and_never_into_the_clean_up(tmp_path: Path) -> None:
    # As `composer build` does by default; a `--volume` on bud's command line instead would
    # be mounted into the clean-up too, whose `rm -rf /run/composer` then fails (busy).
    ca = tmp_path / "bundle.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nmarker\n-----END CERTIFICATE-----\n")
    target = tmp_path / "out" / "core.Containerfile"
    result = CliRunner(env={"SSL_CERT_FILE": str(ca)}).invoke(
        cli, ["containerfile", str(RECIPES / "core-test.toml"), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out/composer-core-test-test.context/host-ca.crt").read_text() == ca.read_text()
    mount = f"--mount=type=bind,source=host-ca.crt,target={cmd.CA_MOUNT}"
    runs = target.read_text().split("\nRUN ")[1:]
    steps = [r for r in runs if "COMPOSER_LAYER_KEY=" in r]
    clean_ups = [r for r in runs if "composer-clean" in r]
    assert steps and clean_ups
    assert all(mount in r for r in steps) and not any("host-ca" in r for r in clean_ups)


def test_bad_recipe_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[base]\nfrom = "debootstrap:trixie"\n[[layers]]\nmodule = "nope"\n')
    result = subprocess.run([sys.executable, "-m", "composer", "containerfile", str(bad), "-o",
                             str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr.splitlines()[0]


def test_a_newline_that_slipped_past_the_schema_never_starts_an_instruction() -> None:
    """The attack of `user = "root\\nRUN echo X"`: the schema refuses it (tests/data/bad:
    image-user-newline); should a value reach the writer anyway, it refuses to write it."""
    plan = plan_file(RECIPES / "core-test.toml")
    for image in (dataclasses.replace(plan.finalize.image, user="root\nRUN echo X"),
                  dataclasses.replace(plan.finalize.image, env=(("A", "x\nRUN echo X"),)),
                  dataclasses.replace(plan.finalize.image, labels=(("a", "b\rRUN"),))):
        bad = dataclasses.replace(plan, finalize=dataclasses.replace(plan.finalize, image=image))
        with pytest.raises(ComposerError, match="control character"):
            render(bad)
