"""The build-step toolkit (composer-install, composer-remove, composer-lib.sh), run for
real with /bin/sh. The package managers are stand-ins that log their argv: what is under
test is the scripts' own logic (lists fetched once per build, flags, skipping what is not
installed); the integration tests install real packages with them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from composer.toolkit import toolkit_digest, toolkit_dir

LOGGER = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "$TOOL_LOG"\n'


@pytest.fixture()
def sandbox(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "pacman"):
        (bin_dir / tool).write_text(LOGGER)
        (bin_dir / tool).chmod(0o755)
    # dpkg-query: "jq" and "nano" are installed, nothing else.
    (bin_dir / "dpkg-query").write_text(
        '#!/bin/sh\nfor a; do last=$a; done\ncase $last in jq|nano) printf "install ok installed";; '
        '*) exit 1;; esac\n')
    (bin_dir / "dpkg-query").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"user": "root", "apps": ["a b", "c"], "n": 3, "t": {"x": 1, "y": 2}}))
    return {
        "PATH": f"{toolkit_dir()}:{bin_dir}:{os.environ['PATH']}",
        "TOOL_LOG": str(tmp_path / "log"),
        "COMPOSER_STATE": str(state),
        "COMPOSER_OPTIONS": str(options),
        "COMPOSER_MODULE": "demo",
        "COMPOSER_LIB": str(toolkit_dir() / "composer-lib.sh"),
    }


def run(env: dict[str, str], *argv: str, family: str = "debian") -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env={**env, "COMPOSER_FAMILY": family},
                          capture_output=True, text=True, check=False)


def log(env: dict[str, str]) -> list[str]:
    path = Path(env["TOOL_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def test_install_fetches_lists_once_per_build(sandbox: dict[str, str]) -> None:
    assert run(sandbox, "composer-install", "jq", "curl").returncode == 0
    assert run(sandbox, "composer-install", "tmux").returncode == 0
    assert log(sandbox) == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends jq curl",
        "apt-get install -y -q --no-install-recommends tmux",
    ]


def test_install_with_recommends_and_on_arch(sandbox: dict[str, str]) -> None:
    assert run({**sandbox, "COMPOSER_RECOMMENDS": "true"}, "composer-install", "jq").returncode == 0
    assert log(sandbox)[-1] == "apt-get install -y -q jq"
    Path(sandbox["COMPOSER_STATE"], "lists-fresh").unlink()
    assert run(sandbox, "composer-install", "jq", family="arch").returncode == 0
    assert log(sandbox)[-2:] == ["pacman -Sy --noconfirm", "pacman -S --noconfirm --needed jq"]


def test_install_nothing_and_unknown_family(sandbox: dict[str, str]) -> None:
    assert run(sandbox, "composer-install").returncode == 0
    assert log(sandbox) == []
    failed = run(sandbox, "composer-install", "jq", family="gentoo")
    assert failed.returncode == 2 and "unknown package family 'gentoo'" in failed.stderr


def test_remove_only_what_is_installed(sandbox: dict[str, str]) -> None:
    assert run(sandbox, "composer-remove", "xscreensaver", "jq", "light-locker", "nano").returncode == 0
    assert log(sandbox) == ["apt-get purge -y -q jq nano"]
    Path(sandbox["TOOL_LOG"]).unlink()
    assert run(sandbox, "composer-remove", "xscreensaver").returncode == 0
    assert log(sandbox) == []


def test_lib_reads_options_as_data(sandbox: dict[str, str]) -> None:
    script = ('. "$COMPOSER_LIB"; composer_opt user; composer_opt n; composer_opt_lines apps; '
              'composer_opt_lines t; composer_home root; composer_owner root')
    out = run(sandbox, "/bin/sh", "-c", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["root", "3", "a b", "c", "x", "y", "/root", "root:root"]


def test_lib_home_of_a_missing_user_names_the_module(sandbox: dict[str, str]) -> None:
    out = run(sandbox, "/bin/sh", "-c", '. "$COMPOSER_LIB"; composer_home no-such-user')
    assert out.returncode == 1
    assert "demo: user 'no-such-user' does not exist" in out.stderr


def test_digest_covers_every_helper() -> None:
    names = sorted(p.name for p in toolkit_dir().iterdir())
    assert names == ["composer-install", "composer-lib.sh", "composer-remove"]
    assert len(toolkit_digest()) == 64
