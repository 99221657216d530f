"""End to end: build tests/recipes/devpod-ci.toml (turboflow without its heavy toolchain
and app modules) with real buildah, run it with podman and test secrets, and check the
running devpod as the seed describes it: users, credentials, supervisord services,
SSH, management API, tmux workspace, VNC, health check and the service toggle."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECIPES, Containers
from tests.integration.helpers import http

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "devpod-ci.toml"
PROGRAMS = {"dbus", "sshd", "xvnc", "xfce4", "management-api", "tmux-autostart"}
SEED_USERS = {  # name: (uid, gid, home mode, sudo)
    "devuser": (1000, 1000, "750", True),
    "gemini-user": (1001, 1001, "700", False),
    "openai-user": (1002, 1002, "700", False),
    "zai-user": (1003, 1003, "700", False),
}
SEED_WINDOWS = ["Claude-Main", "Claude-Agent", "Services", "Development", "Logs", "System",
                "VNC-Status", "SSH-Shell"]
# Characters a shell-built JSON file would get wrong.
ANTHROPIC_KEY = 'sk-ant-"quo\\ted" $HOME `x` ünï'
ZAI_KEY = "zai-key-" + uuid.uuid4().hex
TOKEN = "test-token-" + uuid.uuid4().hex


class Devpod:
    def __init__(self, box: Containers, name: str, image: str) -> None:
        self.box, self.name, self.image = box, name, image

    def sh(self, script: str, user: str = "root", check: bool = True
           ) -> subprocess.CompletedProcess[str]:
        return self.box.podman("exec", "--user", user, self.name, "sh", "-c", script,
                               check=check, timeout=60)

    def port(self, inner: int) -> int:
        out = self.box.podman("port", self.name, f"{inner}/tcp").stdout.strip()
        return int(out.splitlines()[0].rsplit(":", 1)[1])

    def status(self) -> dict[str, str]:
        out = self.sh("supervisorctl status", check=False).stdout
        return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}

    def wait_for(self, states: dict[str, str], timeout: float = 90) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if all(status.get(k) == v for k, v in states.items()):
                return status
            time.sleep(1)
        logs = self.box.podman("logs", self.name, check=False)
        raise AssertionError(f"programs not {states}: {status}\n{logs.stdout}\n{logs.stderr}")


def secret(box: Containers, tmp: Path, name: str, value: str, made: list[str]) -> list[str]:
    """A podman secret with a unique name, mounted at /run/secrets/<name>."""
    unique = f"{name.lower().replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    path = tmp / unique
    path.write_text(value)
    box.podman("secret", "create", unique, str(path))
    made.append(unique)
    return ["--secret", f"{unique},type=mount,target={name}"]


def run_devpod(box: Containers, image: str, args: list[str]) -> Devpod:
    name = f"devpod-{uuid.uuid4().hex[:8]}"
    box.podman("run", "-d", "--name", name, "--hostname", "turbo-devpod",
               "-p", "127.0.0.1::22", "-p", "127.0.0.1::5901", "-p", "127.0.0.1::9090",
               *args, image)
    return Devpod(box, name, image)


@pytest.fixture(scope="module")
def image(containers: Containers) -> str:
    report = containers.build_once(RECIPE)
    return str(report["image"])


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def devpod(containers: Containers, image: str, ssh_key: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devpod]:
    tmp = tmp_path_factory.mktemp("secrets")
    args: list[str] = []
    made: list[str] = []
    for name, value in {
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY + "\n",
        "ZAI_API_KEY": ZAI_KEY,
        "ANTHROPIC_BASE_URL": "https://api.z.ai/api/anthropic",
        "GOOGLE_GEMINI_API_KEY": "gemini-key",
        "SSH_AUTHORIZED_KEYS": ssh_key.with_suffix(".pub").read_text(),
        "MANAGEMENT_API_TOKEN": TOKEN,
    }.items():
        args += secret(containers, tmp, name, value, made)
    # No OPENAI_API_KEY secret: the hook falls back to the environment variable.
    args += ["--env", "OPENAI_API_KEY=openai-from-env"]
    pod = run_devpod(containers, image, args)
    try:
        pod.wait_for({p: "RUNNING" for p in PROGRAMS})
        yield pod
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)
        for name in made:
            containers.podman("secret", "rm", name, check=False)




def test_users_match_the_seed(devpod: Devpod) -> None:
    for name, (uid, gid, mode, sudo) in SEED_USERS.items():
        entry = devpod.sh(f"getent passwd {name}").stdout.strip().split(":")
        assert entry[2:4] == [str(uid), str(gid)] and entry[5] == f"/home/{name}", entry
        assert entry[6] in ("/usr/bin/zsh", "/bin/zsh"), entry
        assert devpod.sh(f"stat -c %a /home/{name}").stdout.strip() == mode, name
        assert devpod.sh(f"test -d /home/{name}/workspace", check=False).returncode == 0
        rights = devpod.sh(f"sudo -n -l -U {name}", check=False).stdout
        assert ("NOPASSWD: ALL" in rights) is sudo, (name, rights)
        # No password anywhere: the shadow entry stays locked.
        shadow = devpod.sh(f"getent shadow {name}").stdout.split(":")[1]
        assert shadow.startswith(("!", "*")), name
    groups = devpod.sh("id -nG devuser").stdout.split()
    assert {"wheel", "video", "audio", "docker", "supervisor"} <= set(groups)
    # devuser switches to the isolated users with the helpers, without a password.
    assert devpod.sh("as-gemini whoami", user="devuser").stdout.strip() == "gemini-user"
    assert devpod.sh("as-zai whoami", user="devuser").stdout.strip() == "zai-user"
    assert devpod.sh("sudo -n -u devuser true", user="gemini-user",
                     check=False).returncode != 0


def test_credentials_distributed(devpod: Devpod) -> None:
    expected = {
        "/home/devuser/.config/claude/config.json": ("devuser", {"api_key": ANTHROPIC_KEY}),
        "/home/gemini-user/.config/gemini/config.json": ("gemini-user",
                                                         {"api_key": "gemini-key"}),
        "/home/openai-user/.config/openai/config.json": ("openai-user",
                                                         {"api_key": "openai-from-env"}),
        "/home/zai-user/.config/zai/config.json": ("zai-user", {
            "api_key": ZAI_KEY, "base_url": "https://api.z.ai/api/anthropic"}),
    }
    for path, (owner, document) in expected.items():
        assert devpod.sh(f"stat -c '%a %U %G' {path}").stdout.split() == ["600", owner, owner]
        assert json.loads(devpod.sh(f"cat {path}").stdout) == document, path
    # Another isolated user cannot read it.
    assert devpod.sh("cat /home/zai-user/.config/zai/config.json", user="gemini-user",
                     check=False).returncode != 0


def test_all_services_running_and_supervisorctl_for_devuser(devpod: Devpod) -> None:
    assert devpod.status() == {p: "RUNNING" for p in PROGRAMS}
    out = devpod.sh("supervisorctl status", user="devuser", check=False).stdout
    assert {line.split()[0] for line in out.splitlines()} == PROGRAMS


def test_killed_sshd_is_restarted(devpod: Devpod) -> None:
    before = devpod.sh("supervisorctl pid sshd").stdout.strip()
    devpod.sh(f"kill -9 {before}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = devpod.sh("supervisorctl pid sshd", check=False).stdout.strip()
        if after.isdigit() and after not in (before, "0") and devpod.status()["sshd"] == "RUNNING":
            return
        time.sleep(0.5)
    raise AssertionError(f"sshd not restarted: {devpod.status()}")


def test_ssh_key_login_on_mapped_port(devpod: Devpod, ssh_key: Path) -> None:
    port = devpod.port(22)
    argv = ["ssh", "-i", str(ssh_key), "-p", str(port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "devuser@127.0.0.1", "id -un; echo $SHELL"]
    for _ in range(20):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            break
        time.sleep(1)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["devuser", "/usr/bin/zsh"]
    # No password secret: password login is off; host keys were made at start.
    assert "passwordauthentication no" in devpod.sh("sshd -T").stdout
    assert devpod.sh("ls /etc/ssh/host-keys/ssh_host_ed25519_key").returncode == 0


def test_host_keys_not_in_the_image(containers: Containers, image: str) -> None:
    out = containers.podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                            "ls /etc/ssh; ls -a /home/devuser/.vnc 2>&1 || true").stdout
    assert "ssh_host_" not in out
    assert "passwd" not in out


def test_management_api(devpod: Devpod) -> None:
    port = devpod.port(9090)
    status, body = http(port, "/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "healthy" and {"timestamp", "uptime"} <= set(health)

    assert http(port, "/services")[0] == 401
    assert http(port, "/services", token="wrong")[0] == 401
    status, body = http(port, "/services", token=TOKEN)
    assert status == 200
    services = {s["name"]: s["state"] for s in json.loads(body)["services"]}
    assert services == {p: "RUNNING" for p in PROGRAMS}

    assert http(port, "/metrics")[0] == 401
    status, body = http(port, "/metrics", token=TOKEN)
    assert status == 200 and 'supervisord_process_up{name="sshd",state="RUNNING"} 1' in body


def test_tmux_workspace_has_the_seed_windows(devpod: Devpod) -> None:
    out = devpod.sh("tmux list-windows -F '#I #W'", user="devuser").stdout
    assert out.splitlines() == [f"{i} {n}" for i, n in enumerate(SEED_WINDOWS)]
    panes = devpod.sh("tmux list-panes -t :4", user="devuser").stdout
    assert len(panes.splitlines()) == 4


def test_vnc_answers_rfb_with_a_generated_password(devpod: Devpod) -> None:
    port = devpod.port(5901)
    for attempt in range(20):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                banner = conn.recv(12)
            break
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.5)
    assert banner == b"RFB 003.008\n"
    stat = devpod.sh("stat -c '%a %U' /home/devuser/.vnc/passwd "
                     "/home/devuser/.vnc/password.txt").stdout.split()
    assert stat == ["600", "devuser", "600", "devuser"]
    password = devpod.sh("cat /home/devuser/.vnc/password.txt", user="devuser").stdout.strip()
    assert len(password) == 8 and password != "turboflo"
    # The desktop runs on the display as devuser, with no screen locker.
    procs = devpod.sh("ps -eo user:20,comm").stdout
    assert any(line.split() == ["devuser", "xfce4-session"] for line in procs.splitlines())
    assert "light-locker" not in procs and "xfce4-screensav" not in procs


def test_healthcheck_in_image_config(containers: Containers, image: str) -> None:
    inspect: list[dict[str, Any]] = json.loads(containers.podman("image", "inspect", image).stdout)
    check = inspect[0]["Healthcheck"]  # podman shows the Docker-format config here
    assert check["Test"][:2] == ["CMD", "curl"]
    # through the management API's root-only health socket (issue 20: no user can starve it)
    assert check["Test"][-3:] == ["--unix-socket", "/run/composer/management-api/health.sock",
                                  "http://localhost/health"]
    assert check["Interval"] == 30 * 10**9
    # ...and the check passes in the running devpod.
    pod = run_devpod(containers, image, [])
    try:
        pod.wait_for({"management-api": "RUNNING"})
        assert containers.podman("healthcheck", "run", pod.name, check=False).returncode == 0
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)


def test_service_toggle_disables_services(containers: Containers, image: str) -> None:
    pod = run_devpod(containers, image,
                     ["--env", "COMPOSER_DISABLE_SERVICES=xfce4,tmux-autostart"])
    try:
        pod.wait_for({"sshd": "RUNNING", "xvnc": "RUNNING", "management-api": "RUNNING"})
        # What supervisord loaded: the two are manual (autostart=false), the others auto; a
        # program it never started says "Not started". No waiting for what must not happen.
        avail = {line.split()[0]: line.split() for line in pod.sh("supervisorctl avail").stdout.splitlines()}
        assert "manual" in avail["xfce4"] and "manual" in avail["tmux-autostart"], avail
        assert "auto" in avail["sshd"] and "auto" in avail["xvnc"], avail
        stopped = pod.sh("supervisorctl status xfce4 tmux-autostart", check=False).stdout.splitlines()
        assert [line.split()[1:] for line in stopped] == [["STOPPED", "Not", "started"]] * 2, stopped
        # ...and can still be started by hand.
        pod.sh("supervisorctl start xfce4")
        assert pod.status()["xfce4"] == "RUNNING"
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)


def test_login_shells_get_the_image_environment(devpod: Devpod) -> None:
    # SSH sessions and `su -` start clean; the 05-login-env hook hands them the image's
    # variables (TZ comes from the recipe's [image] env, PATH from the image config).
    shown = devpod.sh("""su - devuser -c 'printf "%s|%s" "$TZ" "$PATH"'""").stdout
    tz, path = shown.split("|")
    assert tz == "UTC"
    assert path.startswith("/usr/local/sbin:/usr/local/bin:")
    # A secret passed as an environment variable is not among the image's variables.
    assert "openai-from-env" not in devpod.sh("cat /run/composer/login-env.sh").stdout
