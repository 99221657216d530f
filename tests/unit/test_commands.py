"""The exact argv lists composer runs (pure functions, no process started)."""

from __future__ import annotations

from composer import commands as cmd
from composer.model import Base, BaseKind, Family, Healthcheck, ImageConfig

STORAGE = cmd.Storage(root="/s/root", runroot="/s/run")


def test_storage_flags_prefix_every_buildah_call() -> None:
    assert cmd.buildah(STORAGE, "images") == ["buildah", "--root", "/s/root", "--runroot", "/s/run", "images"]
    assert cmd.buildah(cmd.Storage(), "images") == ["buildah", "images"]


def test_run_in_mounts_env_and_workdir() -> None:
    argv = cmd.run_in(cmd.Storage(), "ctr", ["/bin/sh", "x.sh"], {"A": "1"},
                      [("/host/mod", "/run/composer/module", "ro"), ("/cache", "/var/lib/apt/lists", "")],
                      "/run/composer/module")
    assert argv == [
        "buildah", "run", "--isolation", "chroot",
        "--volume", "/host/mod:/run/composer/module:ro", "--volume", "/cache:/var/lib/apt/lists",
        "--env", "A=1", "--workingdir", "/run/composer/module", "ctr", "--", "/bin/sh", "x.sh",
    ]


def test_commit_is_docker_format_with_fixed_timestamp() -> None:
    assert cmd.commit(cmd.Storage(), "ctr", "localhost/composer-cache:k") == [
        "buildah", "commit", "--quiet", "--rm", "--format", "docker", "--timestamp", "0",
        "--identity-label=false", "ctr", "localhost/composer-cache:k",
    ]


def test_clean_step_keeps_mounted_caches_alone() -> None:
    argv = cmd.clean_step(Family.DEBIAN, ["/var/lib/texmf/luatex-cache", "/root/.texlive*"])
    assert argv[:2] == ["/bin/sh", "-c"] and "$" in argv[2]  # a fixed script: data are arguments
    paths = argv[4:]
    assert "/var/log/apt" in paths and cmd.BUILD_MOUNT_ROOT in paths
    assert paths[-2:] == ["/var/lib/texmf/luatex-cache", "/root/.texlive*"]
    assert "/var/lib/apt/lists" not in paths and "/var/cache/apt/archives" not in paths
    assert "/var/log/pacman.log" in cmd.clean_step(Family.ARCH)


def test_debootstrap_argv_and_sources() -> None:
    base = Base(BaseKind.DEBOOTSTRAP, "trixie", Family.DEBIAN, components=("main", "non-free"),
                include=("ca-certificates",))
    assert cmd.debootstrap(base, "/mnt", "/debs") == [
        "debootstrap", "--variant=minbase", "--components=main,non-free",
        "--include=ca-certificates", "--cache-dir=/debs", "trixie", "/mnt", "http://deb.debian.org/debian"]
    assert cmd.sources_list(base) == "deb http://deb.debian.org/debian trixie main non-free\n"


def test_script_argv_follows_shebang() -> None:
    assert cmd.script_argv("#!/usr/bin/env bash", "/m/s.sh") == ["/usr/bin/env", "bash", "/m/s.sh"]
    assert cmd.script_argv("set -e", "/m/s.sh") == ["/bin/sh", "/m/s.sh"]


def test_option_env_is_data_not_shell() -> None:
    env = cmd.option_env({"name": "a'b $(x)", "count": 3, "on": True, "users": [{"n": 1}], "my-opt": "v"})
    assert env == {
        "COMPOSER_OPT_NAME": "a'b $(x)", "COMPOSER_OPT_COUNT": "3", "COMPOSER_OPT_ON": "true",
        "COMPOSER_OPT_USERS": '[{"n": 1}]', "COMPOSER_OPT_MY_OPT": "v",
    }


def test_config_image_carries_everything() -> None:
    image = ImageConfig(
        env=(("A", "1"),), ports=("22/tcp",), volumes=("/data",), user="root", workdir="/w",
        labels=(("l", "v"),), entrypoint=("/e",), cmd=("supervisord", "-n"),
        healthcheck=Healthcheck(("CMD", "curl", "-f", "http://x/h"), "30s", "5s", 3, "1s"),
    )
    argv = cmd.config_image(cmd.Storage(), "ctr", image, (("m", "a,b"),), "by")
    assert argv == [
        "buildah", "config", "--created-by", "by", "--env", "A=1", "--port", "22/tcp",
        "--volume", "/data", "--user", "root", "--workingdir", "/w", "--label", "l=v",
        "--label", "m=a,b", "--entrypoint", '["/e"]', "--cmd", '["supervisord", "-n"]',
        "--healthcheck", "CMD curl -f http://x/h", "--healthcheck-interval", "30s",
        "--healthcheck-timeout", "5s", "--healthcheck-retries", "3", "--healthcheck-start-period", "1s",
        "ctr",
    ]


def test_config_env_with_history_line_is_one_call() -> None:
    assert cmd.config_env(cmd.Storage(), "ctr", [("A", "1"), ("PATH", "/x:$PATH")], "composer layer 1 m 1") == [
        "buildah", "config", "--created-by", "composer layer 1 m 1", "--env", "A=1", "--env", "PATH=/x:$PATH", "ctr"]
    assert cmd.config_env(cmd.Storage(), "ctr", [("A", "1")]) == ["buildah", "config", "--env", "A=1", "ctr"]
