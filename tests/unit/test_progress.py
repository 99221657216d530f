"""Progress lines: outcome per step, a heartbeat on long steps, failures said."""

from __future__ import annotations

import io
import time

import pytest

from composer.progress import Progress


def test_step_reports_outcome() -> None:
    out = io.StringIO()
    with Progress(out).step("[1/3] motd") as report:
        report("cached")
    assert out.getvalue().split() == ["[1/3]", "motd", "cached"]


def test_long_step_has_a_heartbeat() -> None:
    out = io.StringIO()
    with Progress(out, heartbeat=0.05).step("[2/3] python") as report:
        report("building…", final=False)
        time.sleep(0.18)
        report("built in 0.2s")
    lines = out.getvalue().splitlines()
    assert "building…" in lines[0] and "built in" in lines[-1]
    assert sum("still building" in line for line in lines) >= 2
    time.sleep(0.1)
    assert out.getvalue().splitlines() == lines  # the heartbeat stopped with the step


def test_failure_is_said() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress(out).step("[3/3] x") as report:
        report("building…", final=False)
        raise RuntimeError("boom")
    assert "failed after" in out.getvalue().splitlines()[-1]


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    with Progress(out, quiet=True).step("x") as report:
        report("cached")
    assert out.getvalue() == ""
