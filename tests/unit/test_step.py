"""One description of a module's step (composer/step.py), carried out by the builder and
written by the Containerfile emitter: both show every mount, action and variable of it."""

from __future__ import annotations

from pathlib import Path

from composer import commands as cmd
from composer.builder import build
from composer.emit.containerfile import module_group
from composer.planner import plan_file
from composer.progress import Progress
from composer.step import Clean, Copy, Run, Source, module_step
from tests.unit.test_builder import RecordingRunner, settings, write_recipe


def test_the_step_lists_what_a_module_does_in_order(tmp_path: Path) -> None:
    plan = plan_file(write_recipe(tmp_path))
    spec = module_step(plan, plan.steps[0], host_ca=False)
    kinds = [type(a).__name__ for a in spec.actions]
    assert kinds == ["Run", "Copy", "Copy", "Run", "Clean"]  # install, file, options, script, clean
    install = spec.actions[0]
    assert isinstance(install, Run) and install.argv[1:] == ("jq", "figlet")
    assert spec.env["COMPOSER_OPT_FLAVOUR"] == "fancy"
    assert spec.env["COMPOSER_MODULE"] == "tool"
    note = module_step(plan, plan.steps[1], host_ca=False)
    assert note.env["PATH"].endswith("/opt/tool/bin:" + cmd.DEFAULT_PATH)  # the earlier module's PATH
    assert [type(a) for a in note.actions] == [Copy, Clean]  # options file, then its clean globs


def test_builder_and_containerfile_carry_out_the_same_step(tmp_path: Path) -> None:
    plan = plan_file(write_recipe(tmp_path))
    step = plan.steps[0]
    spec = module_step(plan, step, host_ca=False)
    runner = RecordingRunner(cached=[plan.base.key])
    build(plan, settings(tmp_path), runner, Progress(quiet=True))
    calls = [c for c in runner.calls if c[0] == "buildah"]
    runs = [c for c in calls if c[1] == "run"]
    copies = [c for c in calls if c[1] == "copy"]
    lines = module_group(plan, step)
    text = "\n".join(lines)
    for action in spec.actions:
        argv = list(action.argv) if isinstance(action, Run | Clean) else []
        if isinstance(action, Run):
            # buildah runs the argv with every mount and variable of the step ...
            call = next(c for c in runs if c[-len(argv):] == argv)
            for mount in spec.mounts:
                assert any(a.endswith(f":{mount.target}" + (":ro" if mount.read_only else ""))
                           for a in call), mount
                # ... and so does the Containerfile's RUN (apt's work folders are part of its
                # writable cache mount of the lists)
                assert f"target={mount.target}" in text or mount.source is Source.LIST_WORK
            for name, value in spec.env.items():
                assert f"{name}={value}" in call
                assert f"{name}={value}" in text
        elif isinstance(action, Copy):
            assert any(c[-1] == action.dest for c in copies)
            assert any(line.startswith("COPY") and action.context in line and action.dest in line
                       for line in lines)
        else:
            assert any(c[-len(argv):] == argv and not any(":" + cmd.MODULE_MOUNT in a for a in c) for c in runs)
            assert any(line.startswith("RUN [") and argv[-1] in line for line in lines)
