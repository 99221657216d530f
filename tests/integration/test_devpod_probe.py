"""Issue 20, item 1: no user of the devpod can get it restarted by starving its health
check. As zai-user, 1,000 idle connections to the management API's public port (each a
request head that never ends); the image's health check — which the Pod's liveness probe
runs — still answers within its timeout, through the API's root-only health socket."""

from __future__ import annotations

import time
import uuid

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
