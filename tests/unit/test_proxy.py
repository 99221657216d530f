"""Proxy credentials (http://user:pass@proxy:3128) stay out of every argv composer starts
(what `ps` shows every user of the host) and out of every message and log line it prints.
tests/integration/test_leaks.py proves with real buildah that build steps still see them."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from composer import builder
from composer.cli import main
from composer.errors import CommandError, redact
from composer.planner import plan_file
from composer.runner import Runner
from tests.unit.test_builder import RecordingRunner, quiet, settings, write_recipe

PROXY = "http://proxy-user:proxy-pass@proxy.example:3128"
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy")


@pytest.fixture
def proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.setenv(name, "localhost" if name == "no_proxy" else PROXY)


def test_redact_hides_user_and_password_of_every_url() -> None:
    text = f"E: Could not connect to {PROXY}/ and https://u@mirror/x, not ftp://host/a@b"
    assert redact(text) == ("E: Could not connect to http://***@proxy.example:3128/ and https://***@mirror/x, "
                            "not ftp://host/a@b")


def test_proxy_values_are_never_on_a_command_line(proxies: None, tmp_path: Path) -> None:
    plan = plan_file(write_recipe(tmp_path))
    runner = RecordingRunner()
    builder.build(plan, settings(tmp_path), runner, quiet())
    runs = [argv for argv in runner.calls if argv[1] == "run"]
    assert runs  # the module steps ran
    assert not [argv for argv in runner.calls if any("proxy-pass" in a or "proxy.example" in a for a in argv)]
    for argv in runs:  # not even the names: buildah passes its own environment's proxies
        names = [argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "--env"]
        assert not set(names) & set(PROXY_VARS)


class FailingWithProxy(RecordingRunner):
    """A step fails the way apt does behind a proxy that refuses: printing the proxy URL."""

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, stream: bool = False) -> str:
        if "composer-install" in " ".join(str(a) for a in argv):
            raise CommandError(self.plain(argv), 100, f"E: Failed to fetch via {PROXY}/ 407 auth\n")
        return super().run(argv, env, stream)


def test_a_failed_step_names_the_proxy_without_its_password(proxies: None, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path)
    real_build = builder.build

    def build_failing(plan: Any, build_settings: Any, runner: Runner, progress: Any) -> Any:
        return real_build(plan, build_settings, FailingWithProxy(), progress)

    monkeypatch.setattr(builder, "build", build_failing)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["--root", str(tmp_path / "storage"), "--cache-dir", str(tmp_path / "cache"),
                  "build", "-q", "--no-archive", "-o", str(tmp_path / "out"), str(recipe)])
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert "layer 1 tool: command failed (exit 100)" in err
    assert "http://***@proxy.example:3128/ 407 auth" in err  # the message still says which proxy
    assert "proxy-pass" not in err and "proxy-user" not in err


def test_verbose_output_of_a_command_is_redacted() -> None:
    lines: list[str] = []
    runner = Runner(verbose=True, echo=lines.append)
    runner.run(["/bin/sh", "-c", 'echo "via $1"', "sh", PROXY], stream=True)
    assert lines == ["+ /bin/sh -c 'echo \"via $1\"' sh http://***@proxy.example:3128",
                     "  via http://***@proxy.example:3128"]
