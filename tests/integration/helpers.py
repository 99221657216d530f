"""Small helpers the integration tests share: ports, podman's version, HTTP with retries."""

from __future__ import annotations

import contextlib
import shlex
import socket
import time
import urllib.error
import urllib.request

from tests.conftest import Containers


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def podman_version(containers: Containers) -> tuple[int, ...]:
    text = containers.podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    return tuple(int(p) for p in text.split("-")[0].split(".")[:2])


def header_play_argv(text: str) -> list[str]:
    """The `podman kube play ...` line of a manifest's header comment."""
    line = next(x for x in text.splitlines() if x.startswith("# Play (root):"))
    return shlex.split(line.split(":", 1)[1])


def http(port: int, path: str, token: str | None = None, timeout: float = 120) -> tuple[int, str]:
    """GET 127.0.0.1:port/path, retrying until the server answers (or timeout)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return res.status, res.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
