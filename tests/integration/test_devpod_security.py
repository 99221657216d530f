"""The running devpod against its own users (issue 12): secrets, credential files, homes,
the X display and SSH are each user's alone, root's PATH and the service logs are not the
users', and the start-up hooks, which run as root on paths users control, cannot be
turned against root. Every attack is made as the attacker would, inside a real devpod of
the session's devpod-ci image; the attack group costs one restart, and the host keys one
redeploy on the same volume.

Attacks tried (all planted before one restart, then checked):
- gemini-user: ~/.config/gemini is a plain file where the credential folder goes;
- zai-user: ~/.config/zai/config.json is a symlink to /etc/passwd;
- openai-user: ~/.config/openai is a symlink to /etc;
- gemini-user: /tmp/runtime-devuser a symlink to /etc (the runtime dir xfce4-start
  used to make there);
- a hard link to /etc/shadow in gemini-user's home (made by root here: this kernel's
  protected_hardlinks stops a user from making it, which is checked too; a host
  without that protection must not let 40-permissions hand /etc/shadow over);
- devuser: ~/.vnc/passwd a symlink to /etc/shadow.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECIPES, Containers
from tests.integration.test_devpod import Devpod, run_devpod, secret
from tests.integration.test_devpod import ssh_key as ssh_key  # the key fixture, shared

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "devpod-ci.toml"
PROGRAMS = {"dbus", "sshd", "xvnc", "xfce4", "management-api", "tmux-autostart"}
AI_USERS = ("gemini-user", "openai-user", "zai-user")
USERS = ("devuser", *AI_USERS)
# Each secret and the one user its credential file is for.
SECRETS = {
    "ANTHROPIC_API_KEY": ("devuser", "/home/devuser/.config/claude/config.json"),
    "GOOGLE_GEMINI_API_KEY": ("gemini-user", "/home/gemini-user/.config/gemini/config.json"),
    "OPENAI_API_KEY": ("openai-user", "/home/openai-user/.config/openai/config.json"),
    "ZAI_API_KEY": ("zai-user", "/home/zai-user/.config/zai/config.json"),
}
HOST_KEYS = "/etc/ssh/host-keys"
# What a restart may change outside /run, /tmp, /proc, /sys, /dev, the homes and the logs:
# podman's own bind mounts and the host-key volume's mount point (chmod'ed at each start).
RESTART_WRITES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", HOST_KEYS}


def fingerprint(pod: Devpod) -> str:
    return pod.sh(f"ssh-keygen -l -f {HOST_KEYS}/ssh_host_ed25519_key.pub").stdout.split()[1]


@pytest.fixture(scope="module")
def devpod_args(containers: Containers, ssh_key: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """podman run arguments: the secrets as plain `--secret` mounts (mode 0444, what the
    issue found readable by all) and one with the documented mode=0400; a named volume for
    the host keys."""
    tmp = tmp_path_factory.mktemp("secrets-security")
    made: list[str] = []
    args: list[str] = []
    values = {name: f"{name.lower()}-{uuid.uuid4().hex}" for name in SECRETS}
    values["SSH_AUTHORIZED_KEYS"] = ssh_key.with_suffix(".pub").read_text()
    for name, value in values.items():
        args += secret(containers, tmp, name, value, made)
    args[-1] += ",mode=0400"  # the README's flags, on the last one
    volume = f"hostkeys-{uuid.uuid4().hex[:8]}"
    containers.podman("volume", "create", volume)
    try:
        yield [*args, "-v", f"{volume}:{HOST_KEYS}"]
    finally:
        containers.podman("volume", "rm", "--force", volume, check=False)
        for name in made:
            containers.podman("secret", "rm", name, check=False)


@pytest.fixture(scope="module")
def pod(containers: Containers, devpod_args: list[str]) -> Iterator[Devpod]:
    image = str(containers.build_once(RECIPE)["image"])
    box = run_devpod(containers, image, devpod_args)
    try:
        box.wait_for({p: "RUNNING" for p in PROGRAMS})
        yield box
    finally:
        containers.podman("rm", "--force", "--time", "0", box.name, check=False)


def fails(pod: Devpod, script: str, user: str) -> bool:
    return pod.sh(script, user=user, check=False).returncode != 0


def allowed(pod: Devpod, user: str, attempts: list[str]) -> list[str]:
    """Which of these commands succeed as user (one exec for all of them)."""
    script = "".join(f"if {a} > /dev/null 2>&1; then echo {shlex.quote(a)}; fi\n"
                     for a in attempts)
    return pod.sh(script, user=user).stdout.splitlines()


def test_secrets_folder_is_root_only(pod: Devpod) -> None:
    assert pod.sh("stat -c '%a %U' /run/secrets").stdout.split() == ["700", "root"]
    names = pod.sh("ls /run/secrets").stdout.split()
    assert set(SECRETS) | {"SSH_AUTHORIZED_KEYS"} <= set(names), names
    attempts = ["ls /run/secrets", *(f"cat /run/secrets/{name}" for name in names)]
    for user in USERS:
        assert allowed(pod, user, attempts) == [], user


def test_each_credential_file_is_its_users_alone(pod: Devpod) -> None:
    for owner, path in SECRETS.values():
        assert pod.sh(f"stat -c '%a %U' {path}").stdout.split() == ["600", owner], path
    for user in USERS:
        readable = allowed(pod, user, [f"cat {path}" for _, path in SECRETS.values()])
        assert readable == [f"cat {path}" for owner, path in SECRETS.values() if owner == user]


def test_ai_users_cannot_read_other_homes(pod: Devpod) -> None:
    # devuser's home is 0750 (the AI users are not in its group); what is private in it stays private.
    private = [*(f"ls /home/devuser/{folder}" for folder in (".config/claude", ".ssh", ".vnc")),
               *(f"cat /home/devuser/{file}"
                 for file in (".Xauthority", ".vnc/passwd", ".ssh/authorized_keys"))]
    for attacker in AI_USERS:
        homes = [f"ls /home/{victim}" for victim in AI_USERS if victim != attacker]
        assert allowed(pod, attacker, [*homes, *private]) == [], attacker
    # (the same commands work for their owner: the check can see a success)
    assert allowed(pod, "devuser", private) == private


def test_ai_users_cannot_write_into_the_display(pod: Devpod) -> None:
    deadline = time.monotonic() + 60
    while fails(pod, "DISPLAY=:1 xsetroot -name probe", "devuser"):
        assert time.monotonic() < deadline, "devuser never reached the display"
        time.sleep(1)
    for attacker in AI_USERS:
        for env in ("", "XAUTHORITY=/home/devuser/.Xauthority "):
            out = pod.sh(f"{env}DISPLAY=:1 xsetroot -solid red -name owned", user=attacker,
                         check=False)
            assert out.returncode != 0 and "unable to open display" in out.stderr, (attacker, out)


def ssh(port: int, key: Path, user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", f"{user}@127.0.0.1", "id -un"],
        capture_output=True, text=True, timeout=60)


def test_ssh_only_for_the_recipes_users(pod: Devpod, ssh_key: Path) -> None:
    assert "allowusers devuser" in pod.sh("sshd -T").stdout.lower()
    # gemini-user lets the same key in through an authorized_keys of its own.
    public = ssh_key.with_suffix(".pub").read_text()
    pod.box.podman("exec", "-i", "--user", "gemini-user", pod.name, "sh", "-c",
                   "mkdir -p -m 700 ~/.ssh && cat > ~/.ssh/authorized_keys && "
                   "chmod 600 ~/.ssh/authorized_keys", input=public)
    port = pod.port(22)
    for _ in range(20):
        allowed = ssh(port, ssh_key, "devuser")
        if allowed.returncode == 0:
            break
        time.sleep(1)
    assert allowed.stdout.strip() == "devuser", allowed.stderr
    denied = ssh(port, ssh_key, "gemini-user")
    assert denied.returncode != 0 and "gemini-user" not in denied.stdout, denied


def test_root_path_and_service_logs(pod: Devpod) -> None:
    for path in (pod.sh("printenv PATH").stdout,
                 pod.sh("tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^PATH=//p'").stdout):
        assert path.strip() and not path.startswith("/opt/venv/bin"), path
    # supervisord makes the logs with umask 027 (also after a rotation), and so do its programs.
    assert "Umask:\t0027" in pod.sh("cat /proc/1/status").stdout
    sshd = pod.sh("supervisorctl pid sshd").stdout.strip()
    assert "Umask:\t0027" in pod.sh(f"cat /proc/{sshd}/status").stdout
    logs = pod.sh("ls /var/log/*.log").stdout.split()
    assert {f"/var/log/{p}.log" for p in PROGRAMS} <= set(logs), logs
    readable = pod.sh("find /var/log/*.log /var/log/supervisor -type f -perm /o=r").stdout.split()
    assert readable == [], readable
    for attacker in AI_USERS:
        assert fails(pod, "cat /var/log/management-api.log", attacker), attacker
    # The socket group (devuser) reads them: the tmux Logs window tails them.
    assert not fails(pod, "cat /var/log/sshd.log /var/log/supervisord.log", "devuser")


def plant_attacks(pod: Devpod) -> None:
    as_user = {
        "gemini-user": "rm -rf ~/.config/gemini && echo not-a-folder > ~/.config/gemini && "
                       "ln -sfn /etc /tmp/runtime-devuser",
        "zai-user": "rm -f ~/.config/zai/config.json && ln -s /etc/passwd ~/.config/zai/config.json",
        "openai-user": "rm -rf ~/.config/openai && ln -s /etc ~/.config/openai",
        "devuser": "rm -f ~/.vnc/passwd && ln -s /etc/shadow ~/.vnc/passwd",
    }
    for user, script in as_user.items():
        pod.sh(script, user=user)
    # The kernel's protected_hardlinks stops a user from linking root's files ...
    assert fails(pod, "ln /etc/shadow ~/shadow", "gemini-user")
    # ... a host without it would not: plant the link the user could have made there.
    pod.sh("ln /etc/shadow /home/gemini-user/shadow")


def sensitive(pod: Devpod) -> str:
    return pod.sh("stat -c '%n %a %U %G %h' / /etc /etc/passwd /etc/shadow /root; "
                  "sha256sum /etc/passwd /etc/shadow; ls -A / | sha256sum; ls -A /etc | sha256sum").stdout


def test_hook_attacks_then_restart(containers: Containers, pod: Devpod,
                                   devpod_args: list[str]) -> None:
    plant_attacks(pod)
    # The loopback default of the VNC address (the CI recipe says 0.0.0.0), tried on
    # the same restart: the options file as the image would have it without that line.
    pod.sh("jq '.listen = \"127.0.0.1\"' /etc/composer/options/vnc-desktop.json > /tmp/v.json && "
           "cat /tmp/v.json > /etc/composer/options/vnc-desktop.json")
    before, keys = sensitive(pod), fingerprint(pod)
    pod.sh("touch /var/tmp/before-restart && sleep 1")
    containers.restart(pod.name)
    pod.wait_for({p: "RUNNING" for p in PROGRAMS})

    # The devpod started, and root changed nothing it should not have.
    assert sensitive(pod) == before
    changed = pod.sh(
        "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp"
        " -o -path /home -o -path /var/log -o -path /var/tmp \\) -prune"
        " -o -cnewer /var/tmp/before-restart -print").stdout.split()
    # "/" itself: a podman restart moves the ctime of "/" in any container (seen with
    # `sleep` as the entrypoint, where no hook runs); its owner, mode and entries are
    # compared in sensitive() instead.
    assert set(changed) - {"/"} <= RESTART_WRITES, changed
    assert fingerprint(pod) == keys

    logs = containers.podman("logs", pod.name)
    log = logs.stdout + logs.stderr
    # gemini-user broke its own credential folder: skipped, said so, nothing else.
    assert pod.sh("cat /home/gemini-user/.config/gemini").stdout == "not-a-folder\n"
    assert "skipping .config/gemini/config.json of gemini-user" in log, log
    # zai-user's symlink was replaced by its credential file, /etc/passwd untouched.
    zai = "/home/zai-user/.config/zai/config.json"
    assert pod.sh(f"stat -c '%F %a %U' {zai}").stdout.split() == ["regular", "file", "600",
                                                                   "zai-user"]
    # openai-user's symlink to /etc was refused, never followed.
    assert pod.sh("readlink /home/openai-user/.config/openai").stdout.strip() == "/etc"
    assert fails(pod, "test -e /etc/config.json", "root")
    # The hard link to /etc/shadow was left root's and reported.
    assert pod.sh("stat -c '%U %G %a' /etc/shadow").stdout.split() == ["root", "shadow", "640"]
    assert "left alone, a hard link that is not gemini-user's" in log, log
    # devuser's .vnc/passwd link was replaced by the password file (Xvnc is running on it).
    assert pod.sh("stat -c '%F %U' /home/devuser/.vnc/passwd").stdout.split() == [
        "regular", "file", "devuser"]
    # The X socket folders are root's again; the session's runtime dir is /run/user/<uid>.
    for folder in ("/tmp/.ICE-unix", "/tmp/.X11-unix"):
        assert pod.sh(f"stat -c '%F %a %U' {folder}").stdout.split() == ["directory", "1777",
                                                                        "root"], folder
    assert pod.sh("stat -c '%a %U' /run/user/1000").stdout.split() == ["700", "devuser"]
    # Xvnc now listens on loopback only (0100007F:170D is 127.0.0.1:5901).
    listening = pod.sh("cat /proc/net/tcp").stdout
    assert " 0100007F:170D 00000000:0000 0A " in listening, listening
    assert " 00000000:170D " not in listening


def test_host_keys_survive_a_redeploy(containers: Containers, pod: Devpod,
                                      devpod_args: list[str]) -> None:
    keys = fingerprint(pod)
    assert pod.sh(f"stat -c '%a %U' {HOST_KEYS}").stdout.split() == ["700", "root"]
    containers.podman("rm", "--force", "--time", "0", pod.name)
    again = run_devpod(containers, pod.image, devpod_args)
    try:
        again.wait_for({"sshd": "RUNNING"})
        assert fingerprint(again) == keys
        assert f"hostkey {HOST_KEYS}/ssh_host_ed25519_key" in again.sh("sshd -T").stdout.lower()
    finally:
        containers.podman("rm", "--force", "--time", "0", again.name, check=False)


def test_readable_read_only_secrets_refuse_to_start(containers: Containers,
                                                    tmp_path: Path) -> None:
    """A read-only secrets folder every user could read, and no CAP_SYS_ADMIN to cover
    it: the devpod does not start, and says why (the hooks fail before any service)."""
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o755)
    (folder / "ANTHROPIC_API_KEY").write_text("sk-readable")
    (folder / "ANTHROPIC_API_KEY").chmod(0o644)
    folder.chmod(0o755)
    image = str(containers.build_once(RECIPE)["image"])
    name = f"devpod-{uuid.uuid4().hex[:8]}"
    try:
        run = containers.podman("run", "--name", name, "-v", f"{folder}:/run/secrets:ro",
                                image, check=False, timeout=120)
        assert run.returncode != 0, run
        assert "refusing to start: /run/secrets is read-only and every user can read" \
            " ANTHROPIC_API_KEY" in run.stderr, run.stderr
        assert "mode=0400" in run.stderr
    finally:
        containers.podman("rm", "--force", "--time", "0", name, check=False)
