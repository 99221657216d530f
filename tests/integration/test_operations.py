"""docs/operations.md's troubleshooting commands, taken from the doc's ```sh blocks and run
against a running devpod-ci container (test_devpod's fixture), so the doc cannot go stale.

Each line is run as written with `sh -c` on the host, with two substitutions: the doc's
container name becomes the test's, and on host-side lines (not `podman exec`) the doc's
host ports 2222/5901/9090 become the ports podman mapped. `# expect: REGEX` at the end of
a line must match its output (stdout and stderr); every line must exit 0."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, Containers
from tests.integration.test_devpod import Devpod, devpod, image, ssh_key  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "operations.md"
DOC_CONTAINER = "turboflow-devpod"
DOC_PORTS = {2222: 22, 5901: 5901, 9090: 9090}  # host port in the doc -> container port
# What the section must keep checking (a heading each), so lines are not dropped unseen.
TOPICS = ("Services: status and logs", "Health", "Who holds a port", "SSH", "VNC", "Secrets",
          "Restart a service")


@dataclass(frozen=True)
class Check:
    topic: str
    command: str
    expect: str


def troubleshooting_checks(text: str) -> list[Check]:
    """The ```sh lines of the Troubleshooting section, with their topic and expectation."""
    section = text.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    checks: list[Check] = []
    topic = ""
    inside = False
    for line in section.splitlines():
        if line.startswith("### "):
            topic = line[4:].strip()
        elif line.strip() == "```sh":
            inside = True
        elif line.strip() == "```":
            inside = False
        elif inside and line.strip():
            command, _, expect = line.partition("# expect: ")
            checks.append(Check(topic, command.strip(), expect.strip()))
    return checks


def as_run_here(check: Check, container: str, ports: dict[int, int]) -> str:
    command = check.command.replace(DOC_CONTAINER, container)
    if command.startswith("podman exec"):
        return command
    return re.sub(r"\b(2222|5901|9090)\b", lambda m: str(ports[int(m.group(1))]), command)


def test_the_doc_has_checks_for_every_topic() -> None:
    checks = troubleshooting_checks(DOC.read_text())
    assert {c.topic for c in checks} == set(TOPICS)
    assert all(c.expect for c in checks), [c.command for c in checks if not c.expect]


def test_troubleshooting_commands_work_on_a_running_devpod(containers: Containers,
                                                           devpod: Devpod) -> None:  # noqa: F811
    ports = {doc: devpod.port(inner) for doc, inner in DOC_PORTS.items()}
    failed: list[str] = []
    for check in troubleshooting_checks(DOC.read_text()):
        command = as_run_here(check, devpod.name, ports)
        result = subprocess.run(["sh", "-c", command], env=containers.env, capture_output=True,
                                text=True, timeout=60, cwd=Path("/"))
        output = result.stdout + result.stderr
        if result.returncode != 0 or not re.search(check.expect, output, re.M):
            failed.append(f"[{check.topic}] {command}\n  exit {result.returncode}, "
                          f"expected /{check.expect}/, got:\n{output[-1500:]}")
    assert not failed, "\n".join(failed)
