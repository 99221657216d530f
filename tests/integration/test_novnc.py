"""The desktop in the browser (vnc-desktop with the novnc add-on, as the ML team has it):
a real headless Chromium, driven by Playwright, loads noVNC from the running devpod, logs
in with the VNC_PASSWORD secret and shows the XFCE desktop; a wrong password ends in
noVNC's error state; the VNC server itself is reachable from inside the container only."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageChops

from tests.conftest import RECIPES, Containers, tool_missing
from tests.integration.test_desktop import CAPTURE, GEOMETRY, USER, wait_for_desktop, what_is_wrong
from tests.integration.test_devpod import Devpod, run_devpod, secret

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "novnc-ci.toml"
CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/setup-host --test); no browser download
WEB_PORT, RFB_PORT = 6080, 5901  # novnc's port, vnc-desktop's port (the defaults)
PASSWORD = "n0vnc-ci"  # 8 characters: all that VNC authentication uses


@pytest.fixture(scope="module")
def browser_desktop(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devpod]:
    if shutil.which(CHROMIUM) is None:
        tool_missing(CHROMIUM)
    # No other test uses this image: tagged in storage is all it needs, no OCI export.
    image = str(containers.build(RECIPE, "--no-archive")["image"])
    made: list[str] = []
    args = secret(containers, tmp_path_factory.mktemp("secrets"), "VNC_PASSWORD", PASSWORD + "\n", made)
    pod = run_devpod(containers, image, ["-p", f"127.0.0.1::{WEB_PORT}", *args])
    try:
        wait_for_desktop(pod, ("xvnc", "xfce4", "novnc"))
        yield pod
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)
        for name in made:
            containers.podman("secret", "rm", name, check=False)


@contextlib.contextmanager
def novnc_page(pod: Devpod, password: str) -> Iterator[tuple[Page, str]]:
    """vnc.html in headless Chromium with autoconnect, once noVNC is connected or shows
    an error; with its state and status line."""
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{pod.port(WEB_PORT)}/vnc.html?autoconnect=1&resize=off&password={password}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": GEOMETRY[0], "height": GEOMETRY[1]})
            page.goto(url)
            # noVNC marks a connected page with a class on <html>, and an error with
            # one on its status line (which it never overwrites with a lesser one).
            page.wait_for_selector("html.noVNC_connected, #noVNC_status.noVNC_status_error",
                                   state="attached", timeout=60_000)
            state = "connected" if page.locator("html.noVNC_connected").count() else "error"
            status = page.locator("#noVNC_status").text_content() or ""
            yield page, f"{state}: {status.strip()}"
        finally:
            browser.close()


def screenshot(page: Page, path: Path) -> Image.Image:
    page.screenshot(path=str(path))
    return Image.open(path).convert("RGB")


def vnc_screen(pod: Devpod, path: Path) -> Image.Image:
    """The screen as Xvnc serves it, taken by a VNC client in the container's network
    namespace: the RFB port is on the container's loopback alone."""
    pid = pod.box.podman("inspect", "--format", "{{.State.Pid}}", pod.name).stdout.strip()
    subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", CAPTURE,
                    f"127.0.0.1::{RFB_PORT}", str(path)],
                   input=PASSWORD, text=True, capture_output=True, timeout=120, check=True)
    return Image.open(path).convert("RGB")


def differing(a: Image.Image, b: Image.Image) -> float:
    """The share of pixels of two screenshots of one size that differ by more than 16
    in a colour channel (measured: the cursor and the clock, 0.2%; noVNC's error
    page against the desktop, 99.9%)."""
    red, green, blue = ImageChops.difference(a, b).split()
    most = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return sum(most.histogram()[17:]) / (most.width * most.height)


def test_browser_shows_the_xfce_desktop(browser_desktop: Devpod, tmp_path: Path) -> None:
    path, vnc = tmp_path / "novnc.png", tmp_path / "vnc.png"
    with novnc_page(browser_desktop, PASSWORD) as (page, state):
        assert state.startswith("connected"), state
        # What the browser shows is the desktop Xvnc serves, pixel for pixel (almost),
        # once the first frames have arrived and noVNC's status line is gone.
        deadline = time.monotonic() + 30
        while True:
            image, screen = screenshot(page, path), vnc_screen(browser_desktop, vnc)
            if (share := differing(image, screen)) < 0.01 or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert what_is_wrong(image) == [], path
    assert screen.size == image.size == GEOMETRY
    assert share < 0.01, (share, path, vnc)
    # The password was in the page's address: no log of the container has it.
    logged = browser_desktop.sh(f"grep -rl -e {PASSWORD} /var/log", check=False)
    assert logged.stdout == "", logged.stdout


def test_wrong_password_is_noVNCs_error_not_the_desktop(browser_desktop: Devpod, tmp_path: Path) -> None:
    path = tmp_path / "refused.png"
    with novnc_page(browser_desktop, "wrong-pw") as (page, state):
        assert state.startswith("error"), state
        assert "authentication" in state.lower(), state
        image = screenshot(page, path)
    # The comparison above tells noVNC's page from the desktop.
    screen = vnc_screen(browser_desktop, tmp_path / "vnc.png")
    assert differing(image, screen) > 0.5, path


def test_vnc_listens_on_loopback_only_and_the_password_is_the_secret(browser_desktop: Devpod) -> None:
    listening = browser_desktop.sh("cat /proc/net/tcp /proc/net/tcp6").stdout
    sockets = [line.split()[1] for line in listening.splitlines()[1:]
               if len(line.split()) > 3 and line.split()[3] == "0A"]  # state LISTEN
    rfb = sorted(s for s in sockets if s.endswith(f":{RFB_PORT:04X}"))
    assert rfb and all(s.startswith(("0100007F:", "00000000000000000000000001000000:")) for s in rfb), rfb
    web = [s for s in sockets if s.endswith(f":{WEB_PORT:04X}")]
    assert any(s.startswith(("00000000:", "00000000000000000000000000000000:")) for s in web), web
    # The secret set the password: nothing was generated.
    vnc = f"/home/{USER}/.vnc"
    assert browser_desktop.sh(f"test -e {vnc}/password.txt", check=False).returncode != 0
    assert browser_desktop.sh(f"stat -c '%a %U' {vnc}/passwd").stdout.split() == ["600", USER]
    # websockify runs as nobody.
    assert browser_desktop.sh("pgrep -u nobody -f websockify", check=False).returncode == 0
