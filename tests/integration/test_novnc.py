"""The desktop in the browser (novnc-desktop, the ML team's swap): a real headless
Chromium, driven by Playwright, loads noVNC from the running devpod, logs in with the
VNC_PASSWORD secret and shows the XFCE desktop; a wrong password ends in noVNC's
error state; the VNC server itself is reachable from inside the container only."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import RECIPES, Containers
from tests.integration.test_desktop import GEOMETRY, USER, session_ready, what_is_wrong, x_tree
from tests.integration.test_devpod import Devpod, run_devpod, secret

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "novnc-ci.toml"
CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/setup-host --test); no browser download
WEB_PORT, RFB_PORT = 6080, 5901  # the module's defaults
PASSWORD = "n0vnc-ci"  # 8 characters: all that VNC authentication uses


@pytest.fixture(scope="module")
def browser_desktop(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devpod]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"needs {CHROMIUM} (scripts/setup-host --test)")
    image = str(containers.build_once(RECIPE)["image"])
    made: list[str] = []
    args = secret(containers, tmp_path_factory.mktemp("secrets"), "VNC_PASSWORD", PASSWORD + "\n", made)
    pod = run_devpod(containers, image, ["-p", f"127.0.0.1::{WEB_PORT}", *args])
    try:
        pod.wait_for({"xvnc": "RUNNING", "xfce4": "RUNNING", "novnc": "RUNNING"})
        deadline = time.monotonic() + 90
        while not session_ready(x_tree(pod)):
            if time.monotonic() > deadline:
                log = pod.sh("cat /var/log/xfce4.log /var/log/xvnc.log", check=False).stdout
                raise AssertionError(f"no panel and desktop on :1\n{x_tree(pod)}\n{log}")
            time.sleep(1)
        time.sleep(3)  # the panel and the wallpaper draw after their windows map
        yield pod
    finally:
        containers.podman("rm", "--force", "--volumes", "--time", "0", pod.name, check=False)
        for name in made:
            containers.podman("secret", "rm", name, check=False)


def open_novnc(pod: Devpod, password: str, path: Path) -> str:
    """Load vnc.html in headless Chromium with autoconnect; screenshot the page into
    path once noVNC is connected or has given up. Returns noVNC's state and status."""
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{pod.port(WEB_PORT)}/vnc.html?autoconnect=1&resize=off&password={password}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": GEOMETRY[0], "height": GEOMETRY[1]})
            page.goto(url)
            # noVNC marks the page with its connection state (class on <html>).
            page.wait_for_selector("html.noVNC_connected, html.noVNC_disconnected",
                                   state="attached", timeout=60_000)
            state = "connected" if page.locator("html.noVNC_connected").count() else "disconnected"
            if state == "connected":
                time.sleep(3)  # the first full frame, and the control bar tucked away
            page.screenshot(path=str(path))
            status = page.locator("#noVNC_status").text_content() or ""
            return f"{state}: {status.strip()}"
        finally:
            browser.close()


def test_browser_shows_the_xfce_desktop(browser_desktop: Devpod, tmp_path: Path) -> None:
    path = tmp_path / "novnc.png"
    state = open_novnc(browser_desktop, PASSWORD, path)
    assert state.startswith("connected"), (state, path)
    image = Image.open(path).convert("RGB")
    assert what_is_wrong(image) == [], path


def test_wrong_password_is_noVNCs_error_not_the_desktop(browser_desktop: Devpod, tmp_path: Path) -> None:
    path = tmp_path / "refused.png"
    state = open_novnc(browser_desktop, "wrong-pw", path)
    assert state.startswith("disconnected"), (state, path)
    assert "authentication failed" in state.lower(), (state, path)


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
