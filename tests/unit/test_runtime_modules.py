"""The runtime layer modules (base, users, supervisord, ssh, vnc-desktop,
management-api, tmux-workspace): their plans for both families, their scripts,
and the scripts' real behaviour where it can run without a container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.finalize import supervisord_conf
from composer.model import Family, Plan
from composer.planner import plan_file

REPO = Path(__file__).resolve().parents[2]
LAYERS = REPO / "layers"
RUNTIME = ("base", "users", "supervisord", "ssh", "vnc-desktop", "management-api",
           "tmux-workspace")

RECIPE = """\
name = "runtime"
[base]
{base}

[[layers]]
module = "tmux-workspace"
[[layers]]
module = "management-api"
[[layers]]
module = "vnc-desktop"
[[layers]]
module = "ssh"
[[layers]]
module = "supervisord"
[[layers]]
module = "users"
[layers.options]
users = [{{ name = "devuser", uid = 1000, sudo = true, groups = ["supervisor"] }},
         {{ name = "gemini-user", uid = 1001 }}]
helpers = {{ as-gemini = "gemini-user" }}
[[layers]]
module = "base"
"""

BASES = {
    Family.DEBIAN: 'from = "debootstrap:trixie"',
    Family.ARCH: 'from = "image:docker.io/cachyos/cachyos:latest"\nfamily = "arch"',
}


def plan_for(tmp_path: Path, family: Family) -> Plan:
    # The recipe's folder holds links to the project's layers/ and hooks/,
    # which is where composer looks for them.
    (tmp_path / "layers").symlink_to(LAYERS)
    (tmp_path / "hooks").symlink_to(REPO / "hooks")
    recipe = tmp_path / "runtime.toml"
    recipe.write_text(RECIPE.format(base=BASES[family]))
    return plan_file(recipe, base_digest="sha256:" + "0" * 64)


@pytest.mark.parametrize("family", list(Family))
def test_runtime_modules_plan_for_both_families(tmp_path: Path, family: Family) -> None:
    plan = plan_for(tmp_path, family)
    names = [s.module.name for s in plan.steps]
    # requires/after put them in a working order whatever the recipe's order.
    assert names.index("base") < names.index("users") < names.index("ssh")
    assert names.index("supervisord") < names.index("ssh") and names.index("users") < names.index("tmux-workspace")
    for step in plan.steps:
        assert step.module.packages_for(family), (step.module.name, family)
        assert all(" " not in p for p in step.module.packages_for(family))
    services = {s.name: s for s in plan.finalize.services}
    assert [(s.name, s.priority) for s in plan.finalize.services] == [
        ("dbus", 10), ("sshd", 50), ("xvnc", 100), ("xfce4", 200),
        ("management-api", 300), ("tmux-autostart", 900)]
    assert services["tmux-autostart"].delay == 5
    assert services["tmux-autostart"].user == "devuser"
    assert services["management-api"].user == "devuser"
    assert services["sshd"].command == ("/usr/sbin/sshd", "-D", "-e")
    image = plan.finalize.image
    assert {"22/tcp", "5901/tcp", "9090/tcp"} <= set(image.ports)
    assert image.healthcheck is not None
    # the health check goes through the API's root-only socket, not the public port
    assert image.healthcheck.test[-3:] == ("--unix-socket", "/run/composer/management-api/health.sock",
                                           "http://localhost/health")
    hooks = sorted(name for s in plan.steps for name, _ in s.hooks)
    # Every hook but the agents module's (not a runtime module) comes with these modules,
    # each from the module's own hooks/ folder.
    shipped = [*(REPO / "hooks").glob("*.sh"), *REPO.glob("layers/*/hooks/*")]
    assert hooks == sorted(p.name for p in shipped if p.name != "60-agents.sh")


def test_users_option_defaults_reach_the_script(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, Family.DEBIAN)
    users = next(s for s in plan.steps if s.module.name == "users")
    assert users.options["helpers"] == {"as-gemini": "gemini-user"}
    assert users.options["helpers_for"] == ["devuser"]
    vnc = next(s for s in plan.steps if s.module.name == "vnc-desktop")
    assert vnc.options == {"display": 1, "geometry": "1920x1080", "depth": 24, "port": 5901,
                           "listen": "127.0.0.1", "user": "devuser",
                           "password_secret": "VNC_PASSWORD"}
    ssh = next(s for s in plan.steps if s.module.name == "ssh")
    assert ssh.options["allow_users"] == []  # sshd AllowUsers: the `user` option alone


def test_generated_supervisord_conf_has_the_runtime_programs(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, Family.DEBIAN)
    conf = supervisord_conf(plan.finalize.services)
    for name in ("dbus", "sshd", "xvnc", "xfce4", "management-api", "tmux-autostart"):
        assert f"[program:{name}]" in conf
    # What the modules rely on: socket group, the toggle hook's include folder.
    assert "file=/run/supervisor.sock" in conf and "chown=root:supervisor" in conf
    assert "files = /run/composer/supervisord.d/*.conf" in conf


def test_every_script_is_posix_sh() -> None:
    scripts = [p for m in RUNTIME for p in (LAYERS / m).rglob("*")
               if p.is_file() and (p.suffix == ".sh" or p.read_bytes().startswith(b"#!/bin/sh"))]
    assert len(scripts) >= 10
    for script in scripts:
        subprocess.run(["sh", "-n", str(script)], check=True)
        text = script.read_text()
        if text.startswith("#!"):
            assert os.access(script, os.X_OK), script
            assert "set -eu" in text, script
        assert "eval " not in text, script


# --- tmux-workspace -------------------------------------------------------------

TMUX = LAYERS / "tmux-workspace" / "files" / "tmux-autostart.sh"
SEED_WINDOWS = ["Claude-Main", "Claude-Agent", "Services", "Development", "Logs", "System",
                "VNC-Status", "SSH-Shell"]


@pytest.fixture
def tmux_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    conf = tmp_path / "tmux.json"
    conf.write_text(json.dumps({"session": "ws-test"}))
    (tmp_path / "workspace").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SHELL": "/bin/sh",
           "TERM": "xterm", "TMUX_TMPDIR": str(tmp_path), "COMPOSER_TMUX_CONF": str(conf)}
    yield env
    subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)


def windows(env: dict[str, str]) -> list[str]:
    out = subprocess.run(["tmux", "list-windows", "-t", "=ws-test", "-F", "#I #W"],
                         env=env, capture_output=True, text=True)
    return out.stdout.splitlines()


@pytest.mark.needs("tmux", "jq")
def test_tmux_workspace_makes_eight_windows_and_stays(tmux_env: dict[str, str]) -> None:
    first = subprocess.Popen([str(TMUX)], env=tmux_env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while len(windows(tmux_env)) < 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert windows(tmux_env) == [f"{i} {n}" for i, n in enumerate(SEED_WINDOWS)]
        panes = subprocess.run(["tmux", "list-panes", "-t", "=ws-test:4"], env=tmux_env,
                               capture_output=True, text=True, check=True)
        assert len(panes.stdout.splitlines()) == 4
        assert first.poll() is None  # still running while the session exists

        # A second start (supervisord restarting it) reuses the session.
        second = subprocess.Popen([str(TMUX)], env=tmux_env, stdout=subprocess.PIPE, text=True)
        assert second.stdout is not None
        assert "exists" in second.stdout.readline()
        assert len(windows(tmux_env)) == 8

        subprocess.run(["tmux", "kill-session", "-t", "=ws-test"], env=tmux_env, check=True)
        assert first.wait(timeout=15) == 0 and second.wait(timeout=15) == 0
    finally:
        first.kill()


# --- users ----------------------------------------------------------------------

USERS_SH = LAYERS / "users" / "scripts" / "users.sh"

needs_root_tools = pytest.mark.needs("unshare", "useradd", "jq", root=True)


@needs_root_tools
def test_users_script_creates_users_for_real(tmp_path: Path) -> None:
    """Run users.sh with the real shadow tools in a private mount namespace where
    /etc, /home and /usr/local are scratch copies: the host is not touched."""
    for d in ("etc", "home", "usr-local"):
        (tmp_path / d).mkdir()
    subprocess.run(["cp", "-a", "/etc/.", str(tmp_path / "etc")], check=True)
    (tmp_path / "etc" / "sudoers.d").mkdir(exist_ok=True)  # the sudo package makes it
    (tmp_path / "usr-local" / "bin").mkdir()
    lib = tmp_path / "usr-local" / "lib" / "composer"
    lib.mkdir(parents=True)
    shutil.copy(LAYERS / "users" / "files" / "as-user", lib / "as-user")
    # visudo may be absent on the test host; the sudo rules are checked with the
    # real one in the devpod integration test.
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    if not shutil.which("visudo"):
        (fakebin / "visudo").write_text("#!/bin/sh\nexit 0\n")
        (fakebin / "visudo").chmod(0o755)
    options = tmp_path / "options.json"
    options.write_text(json.dumps({
        "users": [
            {"name": "ci-dev", "uid": 4100, "gid": 4100, "shell": "/bin/sh", "sudo": True,
             "groups": ["ci-wheel", "audio"], "home_mode": "0755", "workspace": True},
            {"name": "ci-iso", "uid": 4101, "shell": "/bin/sh", "home_mode": "0700",
             "workspace": False},
        ],
        "helpers": {"as-iso": "ci-iso"},
        "helpers_for": ["ci-dev"],
    }))
    inner = (
        f"mount --bind {tmp_path}/etc /etc && mount --bind {tmp_path}/home /home && "
        f"mount --bind {tmp_path}/usr-local /usr/local && "
        f"COMPOSER_OPTIONS={options} PATH={fakebin}:$PATH sh {USERS_SH} && "
        "getent passwd ci-dev ci-iso && id -nG ci-dev && stat -c '%n %a %U' /home/ci-*"
        " /home/ci-dev/workspace && cat /etc/sudoers.d/composer-users && "
        "readlink /usr/local/bin/as-iso && cat /etc/composer/helpers.json && "
        "cat /etc/composer/users.json && grep '^ci-' /etc/shadow"
    )
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "ci-dev:x:4100:4100::/home/ci-dev:/bin/sh" in text
    assert "ci-iso:x:4101:4101::/home/ci-iso:/bin/sh" in text
    assert "ci-wheel" in text and "audio" in text  # ci-wheel did not exist: created
    assert "/home/ci-dev 755 ci-dev" in text and "/home/ci-iso 700 ci-iso" in text
    assert "/home/ci-dev/workspace 755 ci-dev" in text
    assert "/home/ci-iso/workspace" not in text
    assert "ci-dev ALL=(ALL:ALL) NOPASSWD: ALL" in text
    assert "ci-dev ALL=(ci-iso) NOPASSWD: ALL" in text
    assert "/usr/local/lib/composer/as-user" in text
    # No password is ever set: both accounts stay locked for password login.
    for line in text.splitlines():
        if line.startswith("ci-") and line.count(":") == 8:
            assert line.split(":")[1] in ("!", "*", "!*"), line
    users_json = json.loads(text[text.index("[\n"):text.rindex("]") + 1])
    assert users_json[1] == {"name": "ci-iso", "uid": 4101, "gid": 4101, "shell": "/bin/sh",
                             "sudo": False, "groups": [], "home_mode": "0700",
                             "workspace": False, "dirs": [], "home": "/home/ci-iso"}
    assert not (Path("/home") / "ci-dev").exists()  # the host's /home is untouched
