"""`composer check`: every error names the file and field that caused it (the child's
remove/replace, a module's own module.toml), one line each, all of them, exit code 1."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from composer.cli import main

ROOT = Path(__file__).resolve().parent.parent.parent
TURBOFLOW = ROOT / "recipes" / "turboflow.toml"


def check(recipe: Path, *modules_dirs: Path) -> subprocess.CompletedProcess[str]:
    """`composer check` through the real entry point (main), in this process: its exit
    code and output exactly as a user sees them, without a Python start per test."""
    dirs = [a for d in modules_dirs for a in ("--modules-dir", str(d))]
    argv = [*dirs, "check", str(recipe)]
    out, err = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(ROOT):
            main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        signal.signal(signal.SIGTERM, handler)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def test_check_as_a_command(tmp_path: Path) -> None:
    """End to end once, as a subprocess: the same lines and exit code."""
    path = team(tmp_path, 'remove = ["supervisord"]\n')
    argv = [sys.executable, "-m", "composer", "--modules-dir", str(ROOT / "layers"), "check", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert errors(result) == errors(check(path, ROOT / "layers"))


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines; the run must have failed cleanly (exit 1, no traceback)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(("composer: error: ", "composer: hint: ")) for line in lines), lines
    return [line.removeprefix("composer: error: ") for line in lines if line.startswith("composer: error: ")]


def team(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "team.toml"
    path.write_text(f'extends = "{TURBOFLOW}"\nname = "team"\n' + text)
    return path


def module(root: Path, name: str, text: str = "") -> Path:
    folder = root / "layers" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "module.toml").write_text(f'name = "{name}"\nversion = "1.0.0"\n' + text)
    return folder


def own(tmp_path: Path, names: list[str], extra: str = "") -> Path:
    path = tmp_path / "r.toml"
    layers = "".join(f'[[layers]]\nmodule = "{n}"\n' for n in names)
    path.write_text('name = "r"\n[base]\nfrom = "debootstrap:trixie"\n' + layers + extra)
    return path


def test_removing_a_required_module_blames_the_childs_remove(tmp_path: Path) -> None:
    [line] = errors(check(team(tmp_path, 'remove = ["supervisord"]\n'), ROOT / "layers"))
    assert line.startswith(f"{tmp_path}/team.toml: remove[0]: dropping 'supervisord' leaves module 'ssh' "
                           "(recipes/turboflow.toml: layers[4]) without 'supervisord'"), line
    assert "turboflow.toml: layers[3]" not in line


def test_a_replacement_that_needs_more_blames_the_childs_replace(tmp_path: Path) -> None:
    module(tmp_path, "web-desktop", 'requires = ["websockify"]\n')
    result = check(team(tmp_path, 'replace = { vnc-desktop = "web-desktop" }\n'), tmp_path / "layers",
                   ROOT / "layers")
    [line] = errors(result)
    assert line.startswith(f"{tmp_path}/team.toml: replace.vnc-desktop: module 'web-desktop' requires 'websockify'")


def test_check_reports_every_error_each_on_one_line(tmp_path: Path) -> None:
    path = team(tmp_path, """
replace = { vnc-desktop = "vnc-desktopp" }
[[layers]]
module = "users"
[layers.options]
helperz = {}
[[layers]]
module = "ssh"
[layers.options]
usr = "devuser"
""")
    lines = errors(check(path, ROOT / "layers"))
    assert len(lines) == 3, lines
    assert "team.toml: replace.vnc-desktop: no module 'vnc-desktopp' (did you mean 'vnc-desktop'?)" in lines[0]
    assert lines[1] == (f"{tmp_path}/team.toml: layers[0].options.helperz: module 'users' has no option "
                        "'helperz' (did you mean 'helpers'?)")
    assert lines[2].endswith("layers[1].options.usr: module 'ssh' has no option 'usr' (did you mean 'user'?)")
    hints = [x for x in check(path, ROOT / "layers").stderr.splitlines() if x.startswith("composer: hint: its")]
    assert "composer: hint: its options: helpers, helpers_for, users" in hints


def test_check_goes_past_a_bad_base_and_a_module_listed_twice(tmp_path: Path) -> None:
    path = tmp_path / "solo.toml"
    path.write_text('name = "solo"\n[base]\nfrom = "image:localhost/x"\n'
                    '[[layers]]\nmodule = "motd"\n[[layers]]\nmodule = "motd"\n[[layers]]\nmodule = "motdd"\n')
    lines = errors(check(path, ROOT / "tests" / "recipes" / "layers"))
    family = "base.family: required (only a debootstrap: base implies it; this one is image)"
    assert lines[:2] == [f"{tmp_path}/solo.toml: {family}",
                         f"{tmp_path}/solo.toml: layers[1]: module 'motd' is listed twice"]
    assert lines[2].startswith(f"{tmp_path}/solo.toml: layers[2].module: no module 'motdd'") and len(lines) == 3
    # Every other command still stops at the first.
    build = subprocess.run([sys.executable, "-m", "composer", "plan", "--offline", str(path)],
                           capture_output=True, text=True)
    assert build.returncode == 1 and build.stderr.splitlines()[0].endswith(family)


def test_dropping_the_api_leaves_the_image_health_check_dangling(tmp_path: Path) -> None:
    unset = '[unset]\npod = { ports = ["api"], liveness = true }\n'
    lines = errors(check(team(tmp_path, 'remove = ["management-api"]\n' + unset), ROOT / "layers"))
    assert lines == [
        f"{tmp_path}/team.toml: image.healthcheck (set in recipes/turboflow.toml): reaches "
        "/run/composer/management-api/, the run-time folder of module 'management-api', which the recipe does not "
        "have (dropped from the parent: management-api by remove[0])"]
    dropped = team(tmp_path, 'remove = ["management-api"]\n' + unset + "image = { healthcheck = true }\n")
    assert check(dropped, ROOT / "layers").returncode == 0
    anew = team(tmp_path, 'remove = ["management-api"]\n' + unset +
                '[image.healthcheck]\ntest = ["CMD", "pgrep", "sshd"]\n')
    assert check(anew, ROOT / "layers").returncode == 0


def test_dropping_a_module_leaves_pod_ports_and_probe_dangling(tmp_path: Path) -> None:
    lines = errors(check(team(tmp_path, 'remove = ["vnc-desktop"]\n'), ROOT / "layers"))
    assert lines == [
        f"{tmp_path}/team.toml: pod.ports[1] (set in recipes/turboflow.toml): container port 5901 is published "
        "by no module of the recipe nor [image].ports (dropped from the parent: vnc-desktop by remove[0])"]
    fixed = team(tmp_path, 'remove = ["vnc-desktop"]\n[unset]\npod = { ports = ["vnc"] }\n')
    assert check(fixed, ROOT / "layers").returncode == 0


def test_unsetting_the_network_leaves_the_aliases(tmp_path: Path) -> None:
    [line] = errors(check(team(tmp_path, "[unset]\npod = { network = true }\n"), ROOT / "layers"))
    assert line == (f"{tmp_path}/team.toml: unset.pod.network: leaves pod.aliases (set in recipes/turboflow.toml) "
                    "without a network: aliases need a pod.network")


def test_dropping_a_user_leaves_a_helper_naming_it(tmp_path: Path) -> None:
    path = team(tmp_path, '[unset.options.users]\nusers = ["zai-user"]\n')
    [line] = errors(check(path, ROOT / "layers"))
    assert line == (f"{tmp_path}/team.toml: layers.users.options.helpers.as-zai (set in recipes/turboflow.toml): "
                    "'zai-user' is not one of the users (devuser, gemini-user, openai-user)")


@pytest.mark.parametrize(("users", "field"), [
    ('{ name = "a", uid = 1000 }, { name = "a", uid = 1001 }', "users[1].name: 'a' is already used by users[0]"),
    ('{ name = "a", uid = 1000 }, { name = "b", uid = 1000 }', "users[1].uid: 1000 is already used by users[0]"),
])
def test_duplicate_user_names_and_uids(tmp_path: Path, users: str, field: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[base]\nfrom = "debootstrap:trixie"\n[[layers]]\nmodule = "base"\n'
                    f'[[layers]]\nmodule = "users"\n[layers.options]\nusers = [{users}]\nhelpers_for = ["a"]\n')
    [line] = errors(check(path, ROOT / "layers"))
    assert line.startswith(f"{path}: layers[1].options.{field}"), line


def test_module_port_out_of_range_is_refused(tmp_path: Path) -> None:
    module(tmp_path, "web", 'ports = ["99999/tcp"]\n')
    [line] = errors(check(own(tmp_path, ["web"])))
    assert line.startswith(f"{tmp_path}/layers/web/module.toml: ports[0]: '99999/tcp' does not match"), line


def test_module_port_from_an_option_is_checked_when_planned(tmp_path: Path) -> None:
    module(tmp_path, "web", 'ports = ["{options.port}/tcp"]\n[options.port]\ntype = "integer"\ndefault = 80\n')
    [line] = errors(check(own(tmp_path, ["web"], "[layers.options]\nport = 99999\n")))
    assert line == (f"{tmp_path}/layers/web/module.toml: ports[0]: '99999/tcp' is not a port 1-65535 "
                    f"(used by {tmp_path}/r.toml: layers[0])")


@pytest.mark.parametrize("port", ["0", "65536/tcp", "99999"])
def test_recipe_image_port_out_of_range(tmp_path: Path, port: str) -> None:
    [line] = errors(check(own(tmp_path, [], f'[image]\nports = ["{port}"]\n')))
    assert line.startswith(f"{tmp_path}/r.toml: image.ports[0]: '{port}' does not match"), line


def test_option_default_must_pass_its_own_schema(tmp_path: Path) -> None:
    module(tmp_path, "web", '[options.port]\ntype = "integer"\nmaximum = 65535\ndefault = 99999\n')
    [line] = errors(check(own(tmp_path, ["web"])))
    assert line.startswith(f"{tmp_path}/layers/web/module.toml: options.port.default: 99999 is greater than"), line


def test_ordering_cycle_names_the_module_files(tmp_path: Path) -> None:
    module(tmp_path, "a", 'after = ["b"]\n')
    module(tmp_path, "b", 'requires = ["a"]\n')
    [line] = errors(check(own(tmp_path, ["a", "b"])))
    assert line.startswith(f"{tmp_path}/layers/a/module.toml: requires/after: ordering cycle among modules a, b "
                           f"(declared in {tmp_path}/layers/a/module.toml, {tmp_path}/layers/b/module.toml; "), line


def test_missing_family_names_the_module_file_and_the_base(tmp_path: Path) -> None:
    module(tmp_path, "tool", '[packages]\narch = ["tool"]\n')
    [line] = errors(check(own(tmp_path, ["tool"])))
    assert line.startswith(f"{tmp_path}/layers/tool/module.toml: packages: module 'tool' has no packages for family "
                           f"'debian' (base debootstrap:trixie from {tmp_path}/r.toml; used by "), line


def test_missing_hook_names_the_module_file(tmp_path: Path) -> None:
    module(tmp_path, "tool", 'hooks = ["50-x.sh"]\n')
    [line] = errors(check(own(tmp_path, ["tool"])))
    assert line.startswith(f"{tmp_path}/layers/tool/module.toml: hooks[0]: '50-x.sh' not found"), line


def test_unknown_module_says_did_you_mean(tmp_path: Path) -> None:
    module(tmp_path, "greeting")
    [line] = errors(check(own(tmp_path, ["greting"])))
    assert line.startswith(f"{tmp_path}/r.toml: layers[0].module: no module 'greting' (did you mean 'greeting'?)")


def test_pod_device_folder_fails_check_naming_the_file(tmp_path: Path) -> None:
    [line] = errors(check(team(tmp_path, '[pod]\ndevices = ["/dev/dri"]\n'), ROOT / "layers"))
    assert line.startswith(f"{tmp_path}/team.toml: pod.devices[0]: /dev/dri is a folder of device nodes"), line


def test_recipe_schema_errors_are_all_reported(tmp_path: Path) -> None:
    lines = errors(check(own(tmp_path, [], '[image]\nports = ["http"]\nworkdir = "rel"\n')))
    assert [line.split(": ")[1] for line in lines] == ["image.ports[0]", "image.workdir"]


def test_every_mistake_in_the_childs_edits_is_reported(tmp_path: Path) -> None:
    path = team(tmp_path, 'remove = ["cudaa", "latx"]\nreplace = { vnc = "x" }\n[unset]\nsecrets = ["NOPE"]\n')
    lines = errors(check(path, ROOT / "layers"))
    assert [line.split(": ")[1] for line in lines] == ["remove[0]", "remove[1]", "replace.vnc", "unset.secrets[0]"]
    assert "(did you mean 'cuda'?)" in lines[0] and "(did you mean 'latex'?)" in lines[1]


def web_desktop(tmp_path: Path) -> Path:
    """A stand-in for another desktop module: shares geometry and user with vnc-desktop,
    lacks its display, depth, port, listen and password_secret, and publishes 6080."""
    return module(tmp_path, "web-desktop", """requires = ["base", "supervisord"]
ports = ["6080/tcp"]
[options.geometry]
type = "string"
default = "1024x768"
[options.user]
type = "string"
default = "devuser"
""")


def test_replace_keeps_the_options_the_new_module_shares_and_names_the_rest(tmp_path: Path) -> None:
    from composer.planner import plan_file

    web_desktop(tmp_path)
    path = team(tmp_path, 'replace = { vnc-desktop = "web-desktop" }\n'
                          '[pod]\nports = [{ name = "ssh", container = 22, host = 2222 }]\n')
    plan = plan_file(path, (tmp_path / "layers",))
    [step] = [s for s in plan.steps if s.module.name == "web-desktop"]
    # turboflow sets geometry 1920x1080 for vnc-desktop: the swap keeps it (not 1024x768).
    assert step.options == {"geometry": "1920x1080", "user": "devuser"}
    ports, options, lock = plan.notes
    assert "team.toml: no lock, while the recipe it extends has one" in lock  # turboflow's lock
    assert ports == (f"{tmp_path}/team.toml: replace.vnc-desktop: 'web-desktop' publishes 6080/tcp, which no pod "
                     f"port maps (unreachable from outside the pod; {tmp_path}/team.toml: pod.ports)")
    # The options turboflow sets that web-desktop lacks, in one line.
    assert options == (f"{tmp_path}/team.toml: replace.vnc-desktop: options display, depth, port, listen of "
                       "'vnc-desktop' (set in recipes/turboflow.toml) are not options of 'web-desktop': dropped "
                       "(its options: geometry, user)")
    # check says the same as warnings, and passes; --strict makes them errors.
    result = check(path, tmp_path / "layers")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"composer: warning: {note}" for note in plan.notes]
    strict = subprocess.run([sys.executable, "-m", "composer", "--strict", "--modules-dir", str(tmp_path / "layers"),
                             "check", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert strict.returncode == 1 and "(and 2 more)" in strict.stderr, strict.stderr


def test_an_option_the_child_sets_for_the_new_module_is_checked_not_carried(tmp_path: Path) -> None:
    web_desktop(tmp_path)
    path = team(tmp_path, 'replace = { vnc-desktop = "web-desktop" }\n'
                          '[[layers]]\nmodule = "web-desktop"\n[layers.options]\ngeometry = "800x600"\ndepth = 16\n')
    [line] = errors(check(path, tmp_path / "layers", ROOT / "layers"))
    assert line.startswith(f"{tmp_path}/team.toml: layers[0].options.depth: module 'web-desktop' has no option "
                           "'depth'"), line
    from composer.planner import plan_file

    path.write_text(path.read_text().replace("depth = 16\n", ""))
    plan = plan_file(path, (tmp_path / "layers",))
    [step] = [s for s in plan.steps if s.module.name == "web-desktop"]
    assert step.options["geometry"] == "800x600"
    assert not any("'geometry'" in note for note in plan.notes), plan.notes


def test_the_dangling_port_hint_names_the_port_the_new_module_publishes(tmp_path: Path) -> None:
    web_desktop(tmp_path)
    result = check(team(tmp_path, 'replace = { vnc-desktop = "web-desktop" }\n'), tmp_path / "layers")
    [line] = errors(result)
    assert line.startswith(f"{tmp_path}/team.toml: pod.ports[1] (set in recipes/turboflow.toml): container port "
                           "5901 is published by no module"), line
    assert ('composer: hint: drop it: [unset] pod = { ports = ["vnc"] }; and map web-desktop\'s 6080 '
            "(no pod port maps it)") in result.stderr, result.stderr


def test_mistakes_in_the_childs_edits_do_not_stop_the_module_checks(tmp_path: Path) -> None:
    """remove/replace/unset mistakes and a module's unknown option: one run, every line."""
    path = team(tmp_path, """
remove = ["gui-apps", "gui-appz"]
replace = { latexx = "latex" }
[unset.options.users]
nobody = true
[[layers]]
module = "ssh"
[layers.options]
usr = "devuser"
""")
    lines = errors(check(path, ROOT / "layers"))
    assert [line.split(": ")[1] for line in lines] == [
        "remove[1]", "replace.latexx", "unset.options.users.nobody", "layers[0].options.usr"], lines
