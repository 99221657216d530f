"""Run-time attacks on devpod-ci (issue 20), each performed for real:

- no user of the devpod can get it restarted by starving its health check: as zai-user,
  1,000 idle connections to the management API's public port (each a request head that
  never ends); the image's health check — which the Pod's liveness probe runs — still
  answers within its timeout, through the API's root-only health socket;
- secrets given as environment variables reach the users they are for, and no running
  program has them in its environment."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers
from tests.integration.test_devpod import run_devpod

pytestmark = pytest.mark.integration

HOLD = """
i=0
while [ $i -lt 1000 ]; do
    exec {fd}<>/dev/tcp/127.0.0.1/9090 || break
    printf 'GET /health HTTP/1.1\\r\\n' >&$fd
    i=$((i + 1))
done
echo "held $i" > /tmp/held
sleep 300
"""


def test_a_user_holding_the_public_port_cannot_fail_the_health_check(containers: Containers) -> None:
    image = str(containers.build_once(RECIPES / "devpod-ci.toml")["image"])
    pod = run_devpod(containers, image, [])
    try:
        pod.wait_for({"management-api": "RUNNING"})
        assert containers.podman("healthcheck", "run", pod.name, check=False).returncode == 0
        script = f"/tmp/hold-{uuid.uuid4().hex[:8]}.sh"
        pod.sh(f"cat > {script} <<'EOF'\n{HOLD}\nEOF\nchmod 755 {script}")
        containers.podman("exec", "-d", "--user", "zai-user", pod.name, "bash", script)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and pod.sh("cat /tmp/held", check=False).returncode:
            time.sleep(0.5)
        held = pod.sh("cat /tmp/held").stdout.split()
        assert int(held[1]) >= 128, held  # at least every slot of the public port
        # The attack works on the public port: /health there gets no answer ...
        public = pod.sh("curl -s -m 5 -o /dev/null -w '%{http_code}' http://localhost:9090/health", check=False)
        assert public.stdout.strip() in ("000", ""), public.stdout
        # ... and not on the check that restarts the Pod: the image's health check, run as
        # podman runs it (and as the liveness probe's exec), answers within its timeout.
        started = time.monotonic()
        assert containers.podman("healthcheck", "run", pod.name, check=False).returncode == 0
        assert time.monotonic() - started < 10
        # The socket is no way in for the attacker.
        as_zai = pod.sh("curl -s -m 5 --unix-socket /run/composer/management-api/health.sock "
                        "http://localhost/health", user="zai-user", check=False)
        assert as_zai.returncode != 0
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)


def test_secrets_given_as_environment_variables_reach_no_program(containers: Containers) -> None:
    image = str(containers.build_once(RECIPES / "devpod-ci.toml")["image"])
    key, token = "env-key-" + uuid.uuid4().hex, "env-token-" + uuid.uuid4().hex
    pod = run_devpod(containers, image, ["-e", f"ANTHROPIC_API_KEY={key}", "-e", f"MANAGEMENT_API_TOKEN={token}"])
    try:
        pod.wait_for({"management-api": "RUNNING", "sshd": "RUNNING", "tmux-autostart": "RUNNING"})
        # The hooks read them: devuser's Claude config holds the key, the API takes the token.
        assert key in pod.sh("cat /home/devuser/.config/claude/config.json").stdout
        assert pod.sh(f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer {token}' "
                      "http://localhost:9090/services").stdout == "200"
        # No process holds them in its environment. (podman exec gives its own process the
        # container's configured environment: this scan overrides both names.)
        scan = containers.podman(
            "exec", "-e", "ANTHROPIC_API_KEY=-", "-e", "MANAGEMENT_API_TOKEN=-", pod.name, "sh", "-c",
            f"for e in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $e 2>/dev/null | "
            f"grep -qE '{key}|{token}' && echo ${{e%/environ}} $(cat ${{e%/environ}}/comm); done; "
            "ls -d /proc/[0-9]* | wc -l").stdout.split("\n")
        holders = [line for line in scan if line.startswith("/proc/")]
        assert holders == [], holders
        assert int(scan[-2]) > 10  # it did look at the running programs
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)


def test_devusers_work_is_closed_to_the_ai_users(containers: Containers, tmp_path: Path) -> None:
    """devuser's home, workspace and volume roots are 0750 (a provisioner's 0777 volume root
    is tightened at start) and user programs run with umask 027: gemini-user reads and
    writes none of it."""
    image = str(containers.build_once(RECIPES / "devpod-ci.toml")["image"])
    volume = tmp_path / "workspace"
    volume.mkdir()
    volume.chmod(0o777)  # as a provisioner leaves it
    pod = run_devpod(containers, image, ["-v", f"{volume}:/home/devuser/workspace"])
    try:
        pod.wait_for({"management-api": "RUNNING", "tmux-autostart": "RUNNING"})
        pod.sh("echo API_KEY=x > /home/devuser/workspace/.env && chown 1000:1000 /home/devuser/workspace/.env",
               user="root")
        modes = pod.sh("stat -c '%a %n' /home/devuser /home/devuser/workspace").stdout.split()
        assert modes[0::2] == ["750", "750"], modes
        for attack in ("ls /home/devuser/workspace", "cat /home/devuser/workspace/.env",
                       "touch /home/devuser/workspace/planted", "ls /home/devuser/.claude"):
            assert pod.sh(attack, user="gemini-user", check=False).returncode != 0, attack
        # Programs of devuser's: services (supervisord's umask=027) and logins (pam_umask).
        umasks = pod.sh("for p in $(pgrep -u devuser); do grep Umask /proc/$p/status; done | sort -u").stdout
        # every one closes at least what 027 closes to others (Xvnc's own 077 is stricter)
        assert umasks.split() and all(int(u, 8) & 0o007 == 0o007 for u in umasks.split()[1::2]), umasks
        login = pod.sh("su - devuser -c umask").stdout.strip()
        assert int(login, 8) & 0o007 == 0o007, login  # 0007 with a private group: the group is devuser alone
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)


def test_a_planted_tmux_folder_does_not_stop_the_workspace(containers: Containers) -> None:
    """zai-user makes /tmp/tmux-1000 (devuser's tmux folder name) before a restart: the
    workspace still starts, in a folder of devuser's own."""
    image = str(containers.build_once(RECIPES / "devpod-ci.toml")["image"])
    pod = run_devpod(containers, image, [])
    try:
        pod.wait_for({"tmux-autostart": "RUNNING"})
        pod.sh("supervisorctl stop tmux-autostart >/dev/null")
        pod.sh("tmux kill-server || true", user="devuser")
        pod.sh("rm -rf /tmp/tmux-1000")
        pod.sh("mkdir -m 0777 /tmp/tmux-1000 && touch /tmp/tmux-1000/default", user="zai-user")
        containers.restart(pod.name)
        pod.wait_for({"tmux-autostart": "RUNNING"})
        windows: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(windows) < 8:
            time.sleep(1)
            windows = pod.sh("tmux list-windows -F '#W'", user="devuser", check=False).stdout.split()
        assert len(windows) == 8, windows
        assert pod.sh("stat -c '%U %a' /tmp/tmux-1000").stdout.split() == ["devuser", "700"]
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)
