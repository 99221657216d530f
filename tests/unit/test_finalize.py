"""The generated process-manager config and entrypoint."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

from composer.finalize import entrypoint_script, service_argv, supervisord_conf
from composer.model import Service


def parse(text: str) -> configparser.ConfigParser:
    # supervisord reads its file with this same parser family (with % interpolation).
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return parser


def test_programs_in_priority_order_with_users_and_env() -> None:
    services = (
        Service("sshd", ("/usr/sbin/sshd", "-D", "-e"), priority=50),
        Service("api", ("/usr/bin/node", "/opt/api/server.js"), user="devuser", priority=300,
                environment=(("PORT", "9090"),)),
    )
    conf = parse(supervisord_conf(services))
    assert conf["program:sshd"]["command"] == "/usr/sbin/sshd -D -e"
    assert conf["program:api"]["user"] == "devuser"
    assert conf["program:api"]["environment"] == 'HOME="/home/devuser",USER="devuser",PORT="9090"'
    assert conf["unix_http_server"]["file"] == "/run/supervisor.sock"
    assert conf["include"]["files"] == "/run/composer/supervisord.d/*.conf"


def test_percent_is_escaped_for_supervisord() -> None:
    conf = parse(supervisord_conf((Service("d", ("date", "+%s")),)))
    assert conf["program:d"]["command"] == "date +%s"


def test_delay_wraps_command_without_splicing_it() -> None:
    service = Service("tmux", ("/usr/local/bin/tmux-autostart", "a b"), delay=5, startsecs=1)
    argv = service_argv(service)
    assert argv == ["/bin/sh", "-c", 'sleep "$0"; exec "$@"', "5", "/usr/local/bin/tmux-autostart", "a b"]
    out = subprocess.run(["/bin/sh", "-c", 'sleep "$0"; exec "$@"', "0", "printf", "%s|", "a b", "c"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "a b|c|"
    assert parse(supervisord_conf((service,)))["program:tmux"]["startsecs"] == "6"


def test_entrypoint_runs_hooks_in_order_then_execs(tmp_path: Path) -> None:
    script = tmp_path / "entrypoint"
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    log = tmp_path / "log"
    for name in ("20-b", "10-a"):
        (hooks / name).write_text(f"#!/bin/sh\necho {name} >> {log}\n")
        (hooks / name).chmod(0o755)
    script.write_text(entrypoint_script().replace("/etc/composer/hooks.d", str(hooks)))
    out = subprocess.run(["/bin/sh", str(script), "echo", "cmd ran"], capture_output=True, text=True, check=True)
    assert log.read_text().split() == ["10-a", "20-b"]
    assert out.stdout == "cmd ran\n"


def test_entrypoint_stops_on_failing_hook(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    (hooks / "10-fail").write_text("#!/bin/sh\nexit 3\n")
    (hooks / "10-fail").chmod(0o755)
    script = tmp_path / "entrypoint"
    script.write_text(entrypoint_script().replace("/etc/composer/hooks.d", str(hooks)))
    result = subprocess.run(["/bin/sh", str(script), "echo", "never"], capture_output=True, text=True)
    assert result.returncode == 1 and "never" not in result.stdout
    assert "10-fail failed" in result.stderr
