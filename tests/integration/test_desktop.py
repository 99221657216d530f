"""The devpod's VNC desktop as a person sees it: a real VNC client on the host logs in
with the generated password and takes a screenshot of an XFCE desktop (panel, wallpaper,
no error dialog); inside, the session runs on one session bus with its XDG directories,
and X cookie authentication keeps the other local users off the display."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.conftest import RECIPES, Containers
from tests.integration.test_devpod import Devpod, run_devpod

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "devpod-ci.toml"
GEOMETRY = (1920, 1080)  # the recipe's geometry option
USER, UID = "devuser", 1000
LEAKED = "sk-from-the-environment"  # a secret passed to the container as a variable

# vncdotool runs a twisted reactor that cannot be restarted in one process: each
# capture is its own process. The password travels on stdin.
CAPTURE = """\
import sys
from vncdotool import api
client = api.connect(sys.argv[1], password=sys.stdin.read().strip())
try:
    client.captureScreen(sys.argv[2])
finally:
    client.disconnect()
    api.shutdown()
"""


def x_tree(pod: Devpod) -> str:
    return pod.sh("DISPLAY=:1 xwininfo -root -tree", user=USER, check=False).stdout


def session_ready(tree: str) -> bool:
    # WM_CLASS instance names, as xwininfo prints them: ("xfce4-panel" "Xfce4-panel").
    return '("xfce4-panel" ' in tree and '("xfdesktop" ' in tree


def wait_for_desktop(pod: Devpod, programs: tuple[str, ...] = ("xvnc", "xfce4")) -> None:
    """Until the programs run and the XFCE panel and desktop are drawn on :1."""
    pod.wait_for(dict.fromkeys(programs, "RUNNING"))
    deadline = time.monotonic() + 90
    while not session_ready(x_tree(pod)):
        if time.monotonic() > deadline:
            log = pod.sh("cat /var/log/xfce4.log /var/log/xvnc.log", check=False).stdout
            raise AssertionError(f"no panel and desktop on :1\n{x_tree(pod)}\n{log}")
        time.sleep(1)
    time.sleep(3)  # the panel and the wallpaper draw after their windows map


@pytest.fixture(scope="module")
def desktop(containers: Containers) -> Iterator[Devpod]:
    image = str(containers.build_once(RECIPE)["image"])
    pod = run_devpod(containers, image, ["--env", f"OPENAI_API_KEY={LEAKED}"])
    try:
        wait_for_desktop(pod)
        yield pod
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)


def screenshot(pod: Devpod, path: Path) -> Image.Image:
    password = pod.sh("cat /home/devuser/.vnc/password.txt", user=USER).stdout
    server = f"127.0.0.1::{pod.port(5901)}"
    subprocess.run([sys.executable, "-c", CAPTURE, server, str(path)], input=password,
                   text=True, capture_output=True, timeout=120, check=True)
    return Image.open(path).convert("RGB")


def mean(image: Image.Image, box: tuple[int, int, int, int]) -> list[float]:
    return ImageStat.Stat(image.crop(box)).mean


def share(image: Image.Image, test: Callable[[int], bool]) -> float:
    """The share of the image's pixels whose luminance passes test."""
    grey = image.convert("L")
    return sum(n for value, n in enumerate(grey.histogram()) if test(value)) / (grey.width * grey.height)


def what_is_wrong(image: Image.Image) -> list[str]:
    """What a person would see wrong with this screenshot of a fresh XFCE desktop."""
    wrong = []
    width, height = image.size
    if image.size != GEOMETRY:
        wrong.append(f"size {image.size}, not {GEOMETRY}")
    colours = image.getcolors(maxcolors=width * height) or []
    if len(colours) < 1000 or max(ImageStat.Stat(image).stddev) < 10:
        wrong.append(f"nearly one colour ({len(colours)} colours)")
    # A session that failed leaves the X server's black root window.
    if (black := share(image, lambda v: v < 8)) > 0.25:
        wrong.append(f"{black:.0%} black: no wallpaper")
    # The panel across the top is its own strip, not the wallpaper below it.
    panel, wallpaper = mean(image, (0, 0, width, 20)), mean(image, (0, 60, width, 80))
    if max(abs(a - b) for a, b in zip(panel, wallpaper, strict=True)) < 15:
        wrong.append(f"no panel strip: {panel} at the top, {wallpaper} below")
    # A dialog in the middle (the failsafe-session error): a light box on the wallpaper.
    middle = image.crop((width // 2 - 300, height // 2 - 150, width // 2 + 300, height // 2 + 150))
    if (light := share(middle, lambda v: v > 200)) > 0.05:
        wrong.append(f"{light:.0%} of the middle is light: a dialog")
    return wrong


def test_vnc_client_sees_the_xfce_desktop(desktop: Devpod, tmp_path: Path) -> None:
    path = tmp_path / "desktop.png"
    image = screenshot(desktop, path)
    assert what_is_wrong(image) == [], path


def test_session_windows_processes_and_one_bus(desktop: Devpod) -> None:
    tree = x_tree(desktop)
    assert session_ready(tree), tree
    assert "failsafe" not in tree.lower(), tree
    for name in ("xfwm4", "xfce4-panel", "xfdesktop", "xfce4-session"):
        assert desktop.sh(f"pgrep -u {USER} -x {name}", check=False).returncode == 0, name
    # Exactly one session bus, the session's; no dbus-launch or autolaunched bus.
    procs = [line.split(None, 2) for line in
             desktop.sh("ps -eo user:32=,comm=,args=").stdout.splitlines()]
    buses = [p for p in procs if p[1] == "dbus-daemon" and "--system" not in p[2]]
    assert [(p[0], "--session" in p[2]) for p in buses] == [(USER, True)], buses
    assert not [p for p in procs if p[1] == "dbus-launch"], procs
    size = desktop.sh("DISPLAY=:1 xwininfo -root", user=USER).stdout
    assert f"Width: {GEOMETRY[0]}" in size and f"Height: {GEOMETRY[1]}" in size, size


def test_session_environment(desktop: Devpod) -> None:
    pid = desktop.sh(f"pgrep -u {USER} -x xfce4-session").stdout.split()[0]
    # Only the user may read it: root in the container lacks CAP_SYS_PTRACE.
    environ = desktop.sh(f"cat /proc/{pid}/environ", user=USER).stdout.split("\0")
    env = dict(item.split("=", 1) for item in environ if "=" in item)
    runtime = f"/run/user/{UID}"
    assert env["XDG_RUNTIME_DIR"] == runtime
    assert "/etc/xdg" in env["XDG_CONFIG_DIRS"].split(":"), env["XDG_CONFIG_DIRS"]
    assert "/usr/share" in env["XDG_DATA_DIRS"].split(":"), env["XDG_DATA_DIRS"]
    assert env["DISPLAY"] == ":1" and env["XAUTHORITY"] == "/home/devuser/.Xauthority"
    assert env["HOME"] == "/home/devuser" and env["USER"] == USER
    assert env["DBUS_SESSION_BUS_ADDRESS"].startswith("unix:")
    assert env["LANG"] == "C.UTF-8"  # the image's environment ...
    assert LEAKED not in "\0".join(environ)  # ... but not a secret passed as a variable
    assert desktop.sh(f"stat -c '%a %U' {runtime}").stdout.split() == ["700", USER]
    assert desktop.sh("stat -c '%a %U' /run/user").stdout.split() == ["755", "root"]


def test_x_cookie_keeps_other_users_off_the_display(desktop: Devpod) -> None:
    xvnc = desktop.sh(f"pgrep -u {USER} -a -x Xvnc").stdout
    auth = xvnc.split("-auth ", 1)[1].split()[0]
    assert auth.startswith(f"/run/user/{UID}/"), xvnc
    for path in (auth, "/home/devuser/.Xauthority"):
        assert desktop.sh(f"stat -c '%a %U' {path}").stdout.split() == ["600", USER], path
    # The desktop user reaches the display with the cookie in ~/.Xauthority ...
    ok = desktop.sh("DISPLAY=:1 xwininfo -root", user=USER, check=False)
    assert ok.returncode == 0, ok.stderr
    # ... without it the server refuses: another user, or devuser with no cookie.
    for user, env in (("gemini-user", ""), ("zai-user", "XAUTHORITY=/home/devuser/.Xauthority "),
                      (USER, "XAUTHORITY=/dev/null ")):
        denied = desktop.sh(f"{env}DISPLAY=:1 xwininfo -root", user=user, check=False)
        assert denied.returncode != 0, (user, denied.stdout)
        assert "unable to open display" in denied.stderr, (user, denied.stderr)
    # Nor over TCP.
    listening = desktop.sh("cat /proc/net/tcp /proc/net/tcp6").stdout
    assert f":{6000 + 1:04X} " not in listening  # X display :1 over TCP
    assert f":{5901:04X} " in listening  # (VNC, for contrast: the check sees listeners)


def session_processes(pod: Devpod) -> list[str]:
    names = ("xfce4-session", "xfwm4", "xfce4-panel", "xfdesktop", "dbus-daemon", "ssh-agent")
    out = pod.sh(f"ps -u {USER} -o comm=,args=").stdout
    return sorted(line.split()[0] for line in out.splitlines()
                  if line.split()[0] in names and "--system" not in line)


def test_stop_and_start_leave_one_desktop(desktop: Devpod) -> None:
    before = session_processes(desktop)
    assert before.count("xfce4-session") == 1 and before.count("dbus-daemon") == 1, before
    desktop.sh("supervisorctl stop xfce4")
    # supervisord signals one process; the whole session goes with it ...
    deadline = time.monotonic() + 20
    while (left := session_processes(desktop)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], left
    # ... so a start brings back one desktop, not a second one beside a stale one.
    desktop.sh("supervisorctl start xfce4")
    deadline = time.monotonic() + 90
    while not session_ready(x_tree(desktop)):
        assert time.monotonic() < deadline, x_tree(desktop)
        time.sleep(1)
    assert session_processes(desktop) == before
