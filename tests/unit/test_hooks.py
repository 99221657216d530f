"""The container start-up hooks (hooks/, and a module's own layers/<module>/hooks/), run
for real against a temporary root.

Each hook honours COMPOSER_ROOT (every path prefixed), COMPOSER_SECRETS_DIR and
COMPOSER_HOOKLIB, so these tests run them as the entrypoint would, but on a
tree under tmp_path whose etc/passwd maps the devpod's users to the test's own
uid: no root and no container needed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOKS = REPO / "hooks"
# Hooks that live with their module (composer looks in a module's own hooks/ first).
MODULE_HOOKS = sorted(REPO.glob("layers/*/hooks/*"))
HOOKLIB = REPO / "layers" / "base" / "files" / "hooklib.sh"
USERS = ("devuser", "gemini-user", "openai-user", "zai-user")

needs_jq = pytest.mark.needs("jq")


@functools.cache
def turboflow_credentials() -> str:
    """credentials.json as finalize writes it for the real turboflow recipe."""
    from composer.planner import plan_file

    plan = plan_file(REPO / "recipes" / "turboflow.toml")
    return json.dumps(list(plan.finalize.credentials))


class Tree:
    """A fake container root: passwd, homes, users.json, secrets."""

    def __init__(self, path: Path) -> None:
        self.root = path / "root"
        self.secrets = path / "secrets"
        self.uid, self.gid = os.getuid(), os.getgid()
        (self.root / "etc" / "composer").mkdir(parents=True)
        self.secrets.mkdir()
        self.set_users(USERS)
        users = [
            {"name": n, "uid": self.uid, "gid": self.gid, "shell": "/bin/sh",
             "sudo": n == "devuser", "groups": [], "home": f"/home/{n}",
             "home_mode": "0750" if n == "devuser" else "0700", "workspace": True,
             "dirs": ["agents", ".claude/skills"] if n == "devuser" else []}
            for n in USERS
        ]
        self.write("etc/composer/users.json", json.dumps(users))
        self.write("etc/composer/credentials.json", turboflow_credentials())

    def set_users(self, names: tuple[str, ...]) -> None:
        lines = ["root:x:0:0:root:/root:/bin/sh"]
        for name in names:
            lines.append(f"{name}:x:{self.uid}:{self.gid}::/home/{name}:/bin/sh")
            (self.root / "home" / name).mkdir(parents=True, exist_ok=True)
        self.write("etc/passwd", "\n".join(lines) + "\n")

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def secret(self, name: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        (self.secrets / name).write_bytes(data)

    def run(self, hook: str, env: dict[str, str] | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        # A clean environment: the host's own API keys must not leak in.
        base = {
            "PATH": os.environ["PATH"],
            "COMPOSER_ROOT": str(self.root),
            "COMPOSER_SECRETS_DIR": str(self.secrets),
            "COMPOSER_HOOKLIB": str(HOOKLIB),
        }
        proc = subprocess.run([str(hook_path(hook))], env={**base, **(env or {})},
                              capture_output=True, text=True)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def home(self, name: str) -> Path:
        return self.root / "home" / name


def hook_path(name: str) -> Path:
    """Where composer finds the hook of a shipped module: its own hooks/ folder, else hooks/."""
    return next((path for path in MODULE_HOOKS if path.name == name), HOOKS / name)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_every_hook_is_executable_posix_sh_named_nn() -> None:
    # Every hook lives with the one module that lists it; hooks/ holds only what several share.
    hooks = sorted(h for h in HOOKS.iterdir() if h.suffix == ".sh")
    assert hooks == []
    assert sorted(str(h.relative_to(REPO)) for h in MODULE_HOOKS) == [
        "layers/agents/hooks/60-agents.sh",
        "layers/base/hooks/00-secrets.sh", "layers/base/hooks/05-login-env.sh", "layers/base/hooks/30-credentials.sh",
        "layers/ssh/hooks/20-ssh-hostkeys.sh",
        "layers/supervisord/hooks/45-logs.sh", "layers/supervisord/hooks/50-service-toggle.sh",
        "layers/tmux-workspace/hooks/55-tmux.sh",
        "layers/users/hooks/10-directories.sh", "layers/users/hooks/40-permissions.sh",
        "layers/vnc-desktop/hooks/25-desktop.sh",
    ]
    for hook in [*hooks, *MODULE_HOOKS, HOOKLIB]:
        if hook != HOOKLIB:
            assert os.access(hook, os.X_OK), hook
            assert hook.read_text().startswith("#!/bin/sh\n"), hook
            assert "set -eu" in hook.read_text(), hook
        subprocess.run(["sh", "-n", str(hook)], check=True)
        if shutil.which("bash"):
            subprocess.run(["bash", "--posix", "-n", str(hook)], check=True)


# --- 30-credentials ---------------------------------------------------------

NASTY = 'sk-"quoted"\\back\\\\slash\nsecond line\t$HOME `id` $(id) ünïcødé ✓ \u2028'


@needs_jq
def test_credentials_are_valid_json_with_any_characters(tree: Tree) -> None:
    tree.secret("ANTHROPIC_API_KEY", NASTY + "\n")  # a trailing newline is not part of a key
    tree.secret("GOOGLE_GEMINI_API_KEY", "gem'ini\"key")
    tree.secret("OPENAI_API_KEY", "sk-openai\\n")
    tree.secret("ZAI_API_KEY", NASTY)
    tree.secret("ANTHROPIC_BASE_URL", "https://api.z.ai/api/anthropic?a=1&b=\"2\"")
    tree.run("30-credentials.sh")

    claude = tree.home("devuser") / ".config/claude/config.json"
    assert json.loads(claude.read_text(encoding="utf-8")) == {"api_key": NASTY}
    gemini = tree.home("gemini-user") / ".config/gemini/config.json"
    assert json.loads(gemini.read_text()) == {"api_key": "gem'ini\"key"}
    openai = tree.home("openai-user") / ".config/openai/config.json"
    assert json.loads(openai.read_text()) == {"api_key": "sk-openai\\n"}
    zai = tree.home("zai-user") / ".config/zai/config.json"
    assert json.loads(zai.read_text(encoding="utf-8")) == {
        "api_key": NASTY, "base_url": "https://api.z.ai/api/anthropic?a=1&b=\"2\""}

    for path in (claude, gemini, openai, zai):
        assert mode(path) == 0o600, path
        assert mode(path.parent) == 0o700, path.parent
        assert path.stat().st_uid == tree.uid
    assert not list(tree.home("devuser").glob(".config/claude/.composer.*"))


@needs_jq
def test_credentials_fall_back_to_env_and_skip_missing(tree: Tree) -> None:
    proc = tree.run("30-credentials.sh", env={"OPENAI_API_KEY": "from-env \"x\""})
    openai = tree.home("openai-user") / ".config/openai/config.json"
    assert json.loads(openai.read_text()) == {"api_key": 'from-env "x"'}
    assert mode(openai) == 0o600
    # No other secret: nothing else written, and the hook succeeds.
    assert not (tree.home("devuser") / ".config/claude").exists()
    assert not (tree.home("gemini-user") / ".config/gemini").exists()
    assert not (tree.home("zai-user") / ".config/zai").exists()
    assert "from-env" not in proc.stderr


@needs_jq
def test_secret_file_wins_over_env_and_empty_is_missing(tree: Tree) -> None:
    tree.secret("ANTHROPIC_API_KEY", "from-file")
    tree.secret("GOOGLE_GEMINI_API_KEY", "\n")
    tree.run("30-credentials.sh", env={"ANTHROPIC_API_KEY": "from-env",
                                       "GOOGLE_GEMINI_API_KEY": "gem-env"})
    claude = tree.home("devuser") / ".config/claude/config.json"
    assert json.loads(claude.read_text()) == {"api_key": "from-file"}
    # An empty secret file counts as absent; it does not fall back to the env var.
    assert not (tree.home("gemini-user") / ".config/gemini/config.json").exists()


@needs_jq
def test_zai_has_its_own_key_and_missing_users_are_skipped(tree: Tree) -> None:
    tree.secret("ANTHROPIC_API_KEY", "devuser-anthropic-key")
    tree.run("30-credentials.sh")
    # One provider never receives another's key: no ZAI_API_KEY, no zai config.
    assert not (tree.home("zai-user") / ".config/zai").exists()
    tree.secret("ZAI_API_KEY", "z")  # the base URL is optional (the module's default applies)
    tree.run("30-credentials.sh")
    assert json.loads((tree.home("zai-user") / ".config/zai/config.json").read_text()) == {"api_key": "z"}

    tree.set_users(("devuser",))  # the isolated users do not exist in this image
    tree.secret("OPENAI_API_KEY", "o")
    proc = tree.run("30-credentials.sh")
    assert (tree.home("devuser") / ".config/claude/config.json").exists()
    assert not (tree.home("openai-user") / ".config").exists()
    assert "no user openai-user" in proc.stderr


@needs_jq
def test_one_broken_home_never_stops_the_others(tree: Tree) -> None:
    # An AI user turns its ~/.config/gemini into a plain file: only its own entry is skipped.
    (tree.home("gemini-user") / ".config").mkdir()
    (tree.home("gemini-user") / ".config/gemini").write_text("not a folder")
    for name in ("ANTHROPIC_API_KEY", "GOOGLE_GEMINI_API_KEY", "OPENAI_API_KEY"):
        tree.secret(name, name.lower())
    proc = tree.run("30-credentials.sh")
    assert "skipping .config/gemini/config.json" in proc.stderr
    assert (tree.home("gemini-user") / ".config/gemini").read_text() == "not a folder"
    assert json.loads((tree.home("openai-user") / ".config/openai/config.json").read_text()) == {
        "api_key": "openai_api_key"}
    assert (tree.home("devuser") / ".config/claude/config.json").exists()


@needs_jq
def test_credentials_never_follow_a_planted_symlink(tree: Tree, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "victim"
    target.write_text("untouched")
    # A user points the config file at a file of root's choosing...
    conf = tree.home("openai-user") / ".config/openai"
    conf.mkdir(parents=True)
    (conf / "config.json").symlink_to(target)
    # ...or the whole config folder somewhere else.
    (tree.home("gemini-user") / ".config").mkdir()
    (tree.home("gemini-user") / ".config/gemini").symlink_to(elsewhere)
    tree.secret("OPENAI_API_KEY", "o")
    tree.secret("GOOGLE_GEMINI_API_KEY", "g")
    tree.run("30-credentials.sh")

    assert target.read_text() == "untouched"
    assert not (conf / "config.json").is_symlink()
    assert json.loads((conf / "config.json").read_text()) == {"api_key": "o"}
    assert sorted(p.name for p in elsewhere.iterdir()) == ["victim"]


@needs_jq
def test_credentials_never_write_through_a_hard_link(tree: Tree, tmp_path: Path) -> None:
    # A user hard-links the config file to another file: the write replaces the name,
    # the other file keeps its content.
    victim = tree.home("openai-user") / "victim"
    victim.write_text("untouched")
    conf = tree.home("openai-user") / ".config/openai"
    conf.mkdir(parents=True)
    os.link(victim, conf / "config.json")
    tree.secret("OPENAI_API_KEY", "o")
    tree.run("30-credentials.sh")
    assert victim.read_text() == "untouched"
    assert (conf / "config.json").stat().st_nlink == 1
    assert json.loads((conf / "config.json").read_text()) == {"api_key": "o"}


@pytest.mark.needs(root=True, why="the folder is made root's: needs root")
def test_secrets_folder_made_root_only(tree: Tree) -> None:
    tree.secrets.chmod(0o755)
    tree.secret("ANTHROPIC_API_KEY", "k")
    (tree.secrets / "ANTHROPIC_API_KEY").chmod(0o444)  # podman's --secret mode
    tree.run("00-secrets.sh")
    assert mode(tree.secrets) == 0o700 and tree.secrets.stat().st_uid == 0
    assert (tree.secrets / "ANTHROPIC_API_KEY").read_text() == "k"


# --- 10-directories / 40-permissions ----------------------------------------

@needs_jq
def test_directories_made_for_existing_users(tree: Tree) -> None:
    tree.set_users(("devuser", "gemini-user"))
    tree.run("10-directories.sh")
    dev = tree.home("devuser")
    for rel in ("workspace", "agents", ".claude", ".claude/skills", ".config"):
        assert (dev / rel).is_dir(), rel
        assert (dev / rel).stat().st_uid == tree.uid
    assert (tree.home("gemini-user") / "workspace").is_dir()
    assert not (tree.home("openai-user") / "workspace").exists()
    assert (tree.root / "var/log/supervisor").is_dir()
    assert (tree.root / "run/composer").is_dir()
    tree.run("10-directories.sh")  # idempotent


@needs_jq
def test_open_volume_roots_are_tightened_and_a_planted_link_is_not_followed(tree: Tree, tmp_path: Path) -> None:
    """A provisioner made devuser's volume roots 0777 (an AI user could write into
    ~devuser/.claude/skills: code run as devuser). At start they get the home's mode; one
    swapped for a symlink to a file outside is left alone and its target untouched."""
    tree.set_users(("devuser", "gemini-user"))
    dev = tree.home("devuser")
    for rel in ("workspace", ".claude/skills", "agents"):
        (dev / rel).mkdir(parents=True)
        (dev / rel).chmod(0o777)
    target = tmp_path / "outside"
    target.mkdir()
    target.chmod(0o755)
    gemini = tree.home("gemini-user")
    os.symlink(target, gemini / "workspace")
    proc = tree.run("10-directories.sh")
    for rel in ("workspace", ".claude/skills", "agents"):
        assert mode(dev / rel) == 0o750, rel
    assert mode(target) == 0o755  # never chmod'ed through the link
    assert "refusing symlink" in proc.stderr or "not tightening" in proc.stderr


@needs_jq
def test_permissions_set_home_modes(tree: Tree) -> None:
    for name in USERS:
        tree.home(name).chmod(0o755)
    tree.run("40-permissions.sh")
    assert mode(tree.home("devuser")) == 0o750  # the default: the AI users stay out
    for name in ("gemini-user", "openai-user", "zai-user"):
        assert mode(tree.home(name)) == 0o700, name


@needs_jq
@pytest.mark.needs(root=True, why="chown to another uid needs root")
def test_permissions_give_files_back_to_their_user(tree: Tree, tmp_path: Path) -> None:
    stray = tree.home("devuser") / "models" / "cache.bin"
    stray.parent.mkdir()
    stray.write_text("x")
    os.chown(stray.parent, 4242, 4242)
    os.chown(stray, 4242, 4242)
    outside = tmp_path / "outside"
    outside.write_text("y")
    os.chown(outside, 4243, 4243)
    (tree.home("devuser") / "link").symlink_to(outside)
    tree.run("40-permissions.sh")
    assert stray.stat().st_uid == tree.uid and stray.parent.stat().st_uid == tree.uid
    assert outside.stat().st_uid == 4243  # the link changed, not its target


# --- 50-service-toggle -------------------------------------------------------



SUPERVISORD_CONF = """\
[supervisord]
nodaemon=true

[program:sshd]
command=/usr/sbin/sshd -D -e

[program:xfce4]
command=/usr/local/lib/composer/vnc/xfce4-start

[program:tmux-autostart]
command=/bin/sh -c 'sleep "$0"; exec "$@"' 5 /usr/local/bin/tmux-autostart.sh

[include]
files = /run/composer/supervisord.d/*.conf
"""


@needs_jq
@pytest.mark.needs(root=True, why="chown to another uid needs root")
def test_permissions_leave_a_foreign_hard_link_alone(tree: Tree, tmp_path: Path) -> None:
    # What a user could plant where the kernel does not protect hard links: a second
    # name for a file of someone else's (think /etc/shadow).
    outside = tmp_path / "shadow"
    outside.write_text("secret")
    os.chown(outside, 0, 4244)
    outside.chmod(0o640)
    os.link(outside, tree.home("gemini-user") / "shadow")
    proc = tree.run("40-permissions.sh")
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 4244)
    assert "left alone, a hard link that is not gemini-user's" in proc.stderr


# --- 45-logs -------------------------------------------------------------------

@pytest.mark.needs(root=True, why="log files are root's: needs root")
def test_logs_made_private_and_programs_umask(tree: Tree, tmp_path: Path) -> None:
    tree.write("etc/composer/supervisord.conf", SUPERVISORD_CONF.replace(
        "[program:sshd]\n", "[program:sshd]\nstdout_logfile=/var/log/sshd.log\n"))
    old = tree.write("var/log/management-api.log", "token=abc\n")
    old.chmod(0o644)
    outside = tmp_path / "outside"
    outside.write_text("x")
    outside.chmod(0o644)
    (tree.root / "var/log/xvnc.log").symlink_to(outside)
    proc = tree.run("45-logs.sh")
    assert mode(old) == 0o640 and old.read_text() == "token=abc\n"
    assert mode(tree.root / "var/log/sshd.log") == 0o640  # made before supervisord opens it
    assert mode(tree.root / "var/log/supervisor") == 0o750
    assert mode(outside) == 0o644 and "left alone (not a plain file)" in proc.stderr
    conf = (tree.root / "run/composer/supervisord.d/45-logs.conf").read_text()
    assert "[supervisord]" not in conf  # the entrypoint's umask 027 is supervisord's
    assert "[program:sshd]\numask=027\n" in conf and "[program:xfce4]\numask=027\n" in conf


def test_toggle_writes_overrides_for_known_programs(tree: Tree) -> None:
    tree.write("etc/composer/supervisord.conf", SUPERVISORD_CONF)
    proc = tree.run("50-service-toggle.sh", env={
        "COMPOSER_DISABLE_SERVICES": "xfce4, tmux-autostart,nope,../evil,*",
    })
    out = tree.root / "run/composer/supervisord.d/50-service-toggle.conf"
    assert out.read_text() == (
        "[program:xfce4]\nautostart=false\n\n"
        "[program:tmux-autostart]\nautostart=false\n\n"
    )
    assert mode(out) == 0o644
    assert "unknown program: nope" in proc.stderr
    assert "invalid program name: ../evil" in proc.stderr

    # The next start without the variable starts everything again.
    tree.run("50-service-toggle.sh")
    assert not out.exists()


def test_toggle_enable_and_disable_wins(tree: Tree) -> None:
    tree.write("etc/composer/supervisord.conf", SUPERVISORD_CONF)
    tree.run("50-service-toggle.sh", env={
        "COMPOSER_ENABLE_SERVICES": "sshd xfce4",
        "COMPOSER_DISABLE_SERVICES": "xfce4",
    })
    text = (tree.root / "run/composer/supervisord.d/50-service-toggle.conf").read_text()
    # supervisord keeps the last value read for a key: disable comes last.
    assert text.index("autostart=true") < text.rindex("[program:xfce4]\nautostart=false")
    assert "[program:sshd]\nautostart=true" in text


def test_toggle_without_config_is_harmless(tree: Tree) -> None:
    tree.run("50-service-toggle.sh", env={"COMPOSER_DISABLE_SERVICES": "xfce4"})
    assert not (tree.root / "run/composer/supervisord.d/50-service-toggle.conf").exists()


# --- 20-ssh-hostkeys ------------------------------------------------------------

def fake_chpasswd(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "chpasswd.stdin"
    fake = tmp_path / "chpasswd"
    fake.write_text(f"#!/bin/sh\ncat >> '{log}'\n")
    fake.chmod(0o755)
    return fake, log


def ssh_conf(tree: Tree) -> None:
    tree.write("etc/composer/options/ssh.json", json.dumps({
        "user": "devuser", "authorized_keys_secret": "SSH_AUTHORIZED_KEYS",
        "password_secret": "DEVUSER_PASSWORD"}))


@needs_jq
@pytest.mark.needs("ssh-keygen")
def test_ssh_hook_keys_and_no_password_without_secret(tree: Tree, tmp_path: Path) -> None:
    ssh_conf(tree)
    fake, log = fake_chpasswd(tmp_path)
    keys = "ssh-ed25519 AAAAC3Nza test@ci\nssh-rsa AAAAB3 other@ci"
    tree.secret("SSH_AUTHORIZED_KEYS", keys + "\n")
    tree.run("20-ssh-hostkeys.sh", env={"COMPOSER_CHPASSWD": str(fake)})

    hostkeys = sorted(p.name for p in (tree.root / "etc/ssh/host-keys").glob("ssh_host_*_key"))
    assert "ssh_host_ed25519_key" in hostkeys and "ssh_host_rsa_key" in hostkeys
    assert (tree.root / "run/sshd").is_dir()
    auth = tree.home("devuser") / ".ssh/authorized_keys"
    assert auth.read_text() == keys + "\n"
    assert mode(auth) == 0o600 and mode(auth.parent) == 0o700
    assert not log.exists()
    assert not (tree.root / "run/composer/sshd_config.d/password.conf").exists()

    # Keys made once are kept.
    assert mode(tree.root / "etc/ssh/host-keys") == 0o700
    before = (tree.root / "etc/ssh/host-keys/ssh_host_ed25519_key").read_bytes()
    tree.run("20-ssh-hostkeys.sh", env={"COMPOSER_CHPASSWD": str(fake)})
    assert (tree.root / "etc/ssh/host-keys/ssh_host_ed25519_key").read_bytes() == before


@needs_jq
@pytest.mark.needs("ssh-keygen")
def test_ssh_hook_password_only_from_secret(tree: Tree, tmp_path: Path) -> None:
    ssh_conf(tree)
    fake, log = fake_chpasswd(tmp_path)
    tree.secret("DEVUSER_PASSWORD", "p@ss:w\"ord\n")
    tree.run("20-ssh-hostkeys.sh", env={"COMPOSER_CHPASSWD": str(fake)})
    assert log.read_text() == 'devuser:p@ss:w"ord\n'
    conf = tree.root / "run/composer/sshd_config.d/password.conf"
    assert "PasswordAuthentication yes" in conf.read_text()

    # A newline inside would make chpasswd read a second user:password line.
    log.unlink()
    tree.secret("DEVUSER_PASSWORD", "pw\nroot:owned\n")
    proc = tree.run("20-ssh-hostkeys.sh", env={"COMPOSER_CHPASSWD": str(fake)})
    assert not log.exists()
    assert not conf.exists()
    assert "newline" in proc.stderr


# --- 25-desktop / the management API's token -------------------------------------

def fake_vncpasswd(tmp_path: Path) -> Path:
    # vncpasswd -f reads the plaintext on stdin and writes 8 obfuscated bytes.
    fake = tmp_path / "vncpasswd"
    fake.write_text("#!/bin/sh\n[ \"$1\" = -f ] || exit 2\nprintf 'OBF:'; head -c 8\n")
    fake.chmod(0o755)
    return fake


@needs_jq
def test_vnc_password_generated_once_then_from_secret(tree: Tree, tmp_path: Path) -> None:
    tree.write("etc/composer/options/vnc-desktop.json", json.dumps({"user": "devuser",
                                                    "password_secret": "VNC_PASSWORD"}))
    env = {"COMPOSER_VNCPASSWD": str(fake_vncpasswd(tmp_path))}
    tree.write("tmp/.X1-lock", "123\n")
    tree.run("25-desktop.sh", env=env)
    vnc = tree.home("devuser") / ".vnc"
    plain = (vnc / "password.txt").read_text().strip()
    assert len(plain) == 8 and plain.isalnum() and plain != "turboflow"[:8]
    assert (vnc / "passwd").read_text() == "OBF:" + plain
    assert mode(vnc / "passwd") == mode(vnc / "password.txt") == 0o600
    assert mode(vnc) == 0o700
    assert (tree.root / "run/dbus").is_dir()
    assert mode(tree.root / "tmp/.X11-unix") == 0o1777
    assert not (tree.root / "tmp/.X1-lock").exists()

    tree.run("25-desktop.sh", env=env)  # a restart keeps the generated password
    assert (vnc / "password.txt").read_text().strip() == plain

    tree.secret("VNC_PASSWORD", "s3cret!\n")
    tree.run("25-desktop.sh", env=env)
    assert (vnc / "passwd").read_text() == "OBF:s3cret!\n"
    assert not (vnc / "password.txt").exists()


def test_module_folders_read_only_their_own_options() -> None:
    """A module names no other module's files: the options files its hooks, files and
    scripts read are its own (the desktop hook once read novnc-desktop's too)."""
    named: dict[str, set[str]] = {}
    for path in sorted(REPO.glob("layers/*/**/*")):
        if path.is_file():
            text = path.read_text(errors="replace")
            if found := set(re.findall(r"/etc/composer/options/([A-Za-z0-9_-]+)[.]json", text)):
                named[str(path.relative_to(REPO))] = found
    foreign = {path: names - {path.split("/")[1]} for path, names in named.items()}
    assert {path: names for path, names in foreign.items() if names} == {}
    assert named["layers/vnc-desktop/hooks/25-desktop.sh"] == {"vnc-desktop"}


@needs_jq
def test_desktop_runtime_dir_and_x11_dir_made_safely(tree: Tree, tmp_path: Path) -> None:
    tree.write("etc/composer/options/vnc-desktop.json", json.dumps({"user": "devuser",
                                                    "password_secret": "VNC_PASSWORD"}))
    env = {"COMPOSER_VNCPASSWD": str(fake_vncpasswd(tmp_path))}
    # What a user could leave in /tmp and the runtime dir in an earlier run.
    target = tmp_path / "etc-of-root"
    target.mkdir(mode=0o755)
    (tree.root / "tmp").mkdir(exist_ok=True)
    (tree.root / "tmp/.X11-unix").symlink_to(target)
    (tree.root / "tmp/.ICE-unix").mkdir(mode=0o777)  # not a link, but mode 0777 (no sticky bit)
    runtime = tree.root / "run/user" / str(tree.uid)
    runtime.mkdir(parents=True)
    (runtime / "bus").write_text("stale")
    tree.run("25-desktop.sh", env=env)
    x11 = tree.root / "tmp/.X11-unix"
    assert not x11.is_symlink() and x11.is_dir() and mode(x11) == 0o1777
    assert mode(target) == 0o755  # the link's target was not chmod'ed
    assert mode(tree.root / "tmp/.ICE-unix") == 0o1777
    assert mode(runtime) == 0o700 and runtime.stat().st_uid == tree.uid
    assert list(runtime.iterdir()) == []  # emptied at every start
    assert mode(runtime.parent) == 0o755


@needs_jq
def test_management_api_token_from_secret_or_generated(tree: Tree) -> None:
    token = tree.root / "run/composer/management-api/token"
    tree.run("30-credentials.sh")  # no secret: a token is generated, never an open API
    generated = token.read_text().strip()
    assert len(generated) == 48 and int(generated, 16) >= 0
    assert mode(token) == 0o600 and mode(token.parent) == 0o700
    assert token.stat().st_uid == tree.uid
    tree.run("30-credentials.sh")
    assert token.read_text().strip() == generated  # kept across restarts

    tree.secret("MANAGEMENT_API_TOKEN", "tok en\n")
    tree.run("30-credentials.sh")
    assert token.read_text() == "tok en\n"

    tree.secret("MANAGEMENT_API_TOKEN", "x" * 5000)  # the API reads at most 4 KiB
    proc = tree.run("30-credentials.sh")
    assert "longer than 4096 bytes" in proc.stderr
    assert token.read_text() == "tok en\n"  # an existing token is kept, never the long one


# --- 05-login-env -----------------------------------------------------------

def test_login_env_exports_only_listed_names_as_data(tree: Tree) -> None:
    tree.write("etc/composer/env.names", "PATH\nCUDA_HOME\nQUOTED\nUNSET\nbad-name\n")
    tricky = "it's $(id) `id` \"q\" \\ ünï"
    tree.run("05-login-env.sh", env={"CUDA_HOME": "/opt/cuda", "QUOTED": tricky,
                                     "OPENAI_API_KEY": "sk-secret"})
    out = tree.root / "run/composer/login-env.sh"
    assert mode(out) == 0o644
    text = out.read_text()
    assert "OPENAI_API_KEY" not in text and "sk-secret" not in text  # not a listed name
    assert "UNSET" not in text and "bad-name" not in text
    # Sourced by a login shell, the values come back exactly.
    shown = subprocess.run(["sh", "-c", '. "$0"; printf "%s|%s|%s" "$PATH" "$CUDA_HOME" "$QUOTED"', str(out)],
                           env={}, capture_output=True, text=True, check=True).stdout
    assert shown == f"{os.environ['PATH']}|/opt/cuda|{tricky}"


def test_login_env_without_names_file_does_nothing(tree: Tree) -> None:
    tree.run("05-login-env.sh")
    assert not (tree.root / "run/composer/login-env.sh").exists()


# --- 55-tmux (tmux-workspace) -----------------------------------------------------------


@needs_jq
@pytest.mark.needs(root=True, why="the planted folder belongs to another uid")
def test_tmux_folder_planted_by_another_user_is_replaced(tree: Tree) -> None:
    """zai-user made /tmp/tmux-<devuser's uid> (open, theirs) before a restart: tmux would
    refuse it and the workspace would not start. The hook makes it devuser's, 0700."""
    tree.write("etc/composer/options/tmux-workspace.json", json.dumps({"user": "devuser"}))
    planted = tree.root / "tmp" / f"tmux-{tree.uid}"
    planted.mkdir(parents=True)
    (planted / "default").write_text("not a socket")
    os.chown(planted, 4242, 4242)
    planted.chmod(0o777)
    proc = tree.run("55-tmux.sh")
    assert "removing" in proc.stderr
    assert planted.is_dir() and not planted.is_symlink() and list(planted.iterdir()) == []
    assert (planted.stat().st_uid, mode(planted)) == (tree.uid, 0o700)
    planted.rmdir()
    os.symlink("/etc", planted)  # a link planted instead: removed, never followed
    tree.run("55-tmux.sh")
    assert planted.is_dir() and not planted.is_symlink()
    assert (Path("/etc").stat().st_uid, mode(Path("/etc"))) == (0, 0o755)
    tree.run("55-tmux.sh")  # the user's own, 0700: left as it is
