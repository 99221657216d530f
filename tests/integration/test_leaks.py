"""Build-time-only inputs never leak: a build with a marker CA bundle and marker proxy
variables proves its step saw both (a hash of each in the image), while neither marker is
in any layer tar of the OCI archive, in the config or the history, nor in the argv of any
process on the host while the build runs (what `ps` shows every user)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import tarfile
import threading
from pathlib import Path

import pytest

from tests.conftest import Containers

pytestmark = pytest.mark.integration

# The core test recipe's base (tests/recipes/core-test.toml): built once per session.
BASE = '[base]\nfrom = "debootstrap:trixie"\ncomponents = ["main"]\n'

PROBE = """#!/bin/sh
# Proves the step saw the host CA bundle and the proxies, without putting their values
# in the layer: only their hashes.
set -eu
mkdir -p /etc/leakprobe
sha256sum < "$SSL_CERT_FILE" | cut -d' ' -f1 > /etc/leakprobe/ca.sha256
printf '%s' "$http_proxy" | sha256sum | cut -d' ' -f1 > /etc/leakprobe/http_proxy.sha256
printf '%s' "$HTTPS_PROXY" | sha256sum | cut -d' ' -f1 > /etc/leakprobe/HTTPS_PROXY.sha256
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArgvWatch(threading.Thread):
    """Reads the argv of every process on the host until stopped: which ones held a marker,
    and how many buildah processes it saw (so that a watch that saw nothing cannot pass)."""

    def __init__(self, markers: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.markers = markers
        self.hits: list[str] = []
        self.buildah: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    argv = (proc / "cmdline").read_bytes()
                except OSError:
                    continue  # the process ended
                program = argv.split(b"\0", 1)[0]
                if program == b"buildah" or program.endswith(b"/buildah"):
                    self.buildah.add(int(proc.name))
                if any(m in argv for m in self.markers):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.done.wait(0.01)


def blobs(archive: Path) -> tuple[dict[str, bytes], list[str], str]:
    """Every blob of an OCI archive by digest (layers decompressed), its manifest's layer
    digests and its config digest."""
    found: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("blobs/sha256/"):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                found[member.name.rsplit("/", 1)[1]] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    manifest = json.loads(found[index["manifests"][0]["digest"].split(":")[1]])
    layers = [layer["digest"].split(":")[1] for layer in manifest["layers"]]
    return found, layers, manifest["config"]["digest"].split(":")[1]


def test_host_ca_and_proxy_reach_the_step_and_nothing_else(containers: Containers, tmp_path: Path) -> None:
    tag = secrets.token_hex(8)
    ca_marker = f"COMPOSER-LEAK-MARKER-CA-{tag}"
    ca = tmp_path / "marker-ca.pem"
    ca.write_text(f"-----BEGIN CERTIFICATE-----\n{ca_marker}\n-----END CERTIFICATE-----\n")
    proxy = f"http://marker-user-{tag}:marker-pass-{tag}@127.0.0.1:9/"
    module = tmp_path / "layers" / "leakprobe"
    module.mkdir(parents=True)
    (module / "probe.sh").write_text(f"{PROBE}# run {tag}: a new layer every run, built with this run's markers\n")
    (module / "module.toml").write_text('name = "leakprobe"\nversion = "1"\n[[scripts]]\nrun = "probe.sh"\n')
    # The base first, without the markers: debootstrap would try to fetch through the dead proxy.
    (tmp_path / "base.toml").write_text(f'name = "leak-base"\ntag = "test"\n{BASE}')
    containers.build(tmp_path / "base.toml", "--no-archive")
    recipe = tmp_path / "leak.toml"
    recipe.write_text(f'name = "leak-test"\ntag = "test"\n{BASE}[[layers]]\nmodule = "leakprobe"\n')

    markers = [ca_marker.encode(), f"marker-user-{tag}".encode(), f"marker-pass-{tag}".encode()]
    env = {"SSL_CERT_FILE": str(ca), "http_proxy": proxy, "HTTPS_PROXY": proxy, "no_proxy": ""}
    marked = Containers(containers.root, {**containers.env, **env}, containers.cache_dir)
    watch = ArgvWatch(markers)
    watch.start()
    try:
        report = marked.build(recipe)
    finally:
        watch.done.set()
        watch.join()
    assert [layer["cache"] for layer in report["layers"]] == ["hit", "miss", "miss"]
    assert watch.buildah, "the watch saw no buildah process: it proves nothing"
    assert watch.hits == []

    found, layers, config = blobs(Path(report["archive"]))
    assert len(layers) == 3 and all(digest in found for digest in layers)
    # The step saw both: their hashes are in the probe's layer.
    with tarfile.open(fileobj=io.BytesIO(found[layers[1]])) as tar:
        seen = {name: tar.extractfile(f"etc/leakprobe/{name}.sha256").read().decode().strip()  # type: ignore[union-attr]
                for name in ("ca", "http_proxy", "HTTPS_PROXY")}
    assert seen == {"ca": sha256(ca.read_bytes()), "http_proxy": sha256(proxy.encode()),
                    "HTTPS_PROXY": sha256(proxy.encode())}
    # Every blob (each layer tar, the config with its history, the manifest) and the
    # image as containers-storage holds it: no marker.
    stored = containers.buildah("inspect", "--type", "image", report["image"]).stdout.encode()
    assert json.loads(found[config])["history"]
    documents = {**found, "containers-storage config": stored}
    hits = [(name, m) for name, data in documents.items() for m in markers if m in data]
    assert hits == []
    # Nor the variables that point build tools at the bundle, nor the proxy names.
    for text in (found[config], stored):
        assert b"host-ca" not in text and b"PIP_CERT" not in text and b"_proxy" not in text.lower()
