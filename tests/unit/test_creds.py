"""Registry credentials reach composer without standing in its command line: --creds-file
(or -, standard input) and COMPOSER_REGISTRY_CREDS; --creds with a password warns."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from composer.cli import registry_options


@click.command()
@registry_options
def show(tls_verify: bool | None, creds: str, authfile: str) -> None:
    click.echo(f"creds={creds}")


def test_creds_file_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("me:s3cret\n")
    result = CliRunner().invoke(show, ["--creds-file", str(tmp_path / "c")])
    assert result.exit_code == 0 and result.stdout == "creds=me:s3cret\n" and result.stderr == ""
    result = CliRunner().invoke(show, ["--creds-file", "-"], input="me:pw\n")
    assert result.stdout == "creds=me:pw\n" and result.stderr == ""


def test_environment_is_quiet_and_the_command_line_warns() -> None:
    quiet = CliRunner().invoke(show, [], env={"COMPOSER_REGISTRY_CREDS": "me:pw"})
    assert quiet.stdout == "creds=me:pw\n" and quiet.stderr == ""
    loud = CliRunner().invoke(show, ["--creds", "me:pw"])
    assert loud.stdout == "creds=me:pw\n"
    assert "warning: --creds puts the password in composer's command line" in loud.stderr
    assert "pw" not in loud.stderr  # the warning never repeats it
    user_only = CliRunner().invoke(show, ["--creds", "me"])
    assert user_only.stderr == ""  # no password on the line: nothing to warn about


def test_bad_creds_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    for args in (["--creds-file", str(tmp_path / "missing")], ["--creds-file", str(tmp_path / "empty")],
                 ["--creds-file", str(tmp_path / "empty"), "--creds", "a:b"]):
        result = CliRunner().invoke(show, args)
        assert result.exit_code != 0
        assert str(result.exception).startswith("--creds-file") or "--creds-file" in result.stderr
