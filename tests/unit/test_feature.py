"""`composer import-feature`: a Dev Container Feature folder as a layer module."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from composer.cli import main
from composer.errors import ComposerError
from composer.feature import feature_env_name, load_feature, module_option_name, reference_name, write_module
from composer.modules import load_module

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ROOT / "tests" / "data" / "features"


@pytest.mark.parametrize(("option_id", "variable"), [
    ("version", "VERSION"), ("installZsh", "INSTALLZSH"), ("marker-name", "MARKER_NAME"),
    ("a.b", "A_B"), ("2fast", "_FAST"), ("__x", "_X"),
])
def test_the_specs_variable_names(option_id: str, variable: str) -> None:
    assert feature_env_name(option_id) == variable


def test_names() -> None:
    assert module_option_name("installZsh") == "install-zsh"
    assert module_option_name("marker-name") == "marker-name"
    assert reference_name("ghcr.io/devcontainers/features/common-utils:2") == "common-utils"
    assert reference_name("./salute") == "salute"


def test_import_maps_every_field(tmp_path: Path) -> None:
    for name in ("salute", "flavour", "waypoint"):
        write_module(load_feature(FEATURES / name), tmp_path / name)
    salute = load_module(tmp_path / "salute")
    assert (salute.name, salute.version) == ("salute", "1.0.0")
    assert salute.env == (("GREETING_FILE", "/usr/local/share/greeting/greeting.txt"),)
    message = salute.options_schema["message"]
    assert message["type"] == "string" and message["default"] == "hello"
    assert message["examples"] == ["hello", "good morning"]  # proposals: any string goes
    assert salute.options_schema["shout"] == {"type": "boolean", "default": False,
                                              "description": "Upper-case the greeting"}
    flavour = load_module(tmp_path / "flavour")
    assert flavour.requires == ("salute",)
    assert flavour.options_schema["flavour"]["enum"] == ["vanilla", "chocolate", "strawberry"]
    assert "extra-topping" in flavour.options_schema
    waypoint = load_module(tmp_path / "waypoint")
    assert waypoint.after == ("salute",)
    assert set(waypoint.options_schema) == {"enable-marker", "marker-name"}
    # the Feature's files are kept as they are, modes too
    assert (tmp_path / "flavour/feature/install.sh").read_bytes() == (FEATURES / "flavour/install.sh").read_bytes()
    assert not (tmp_path / "waypoint/feature/install.sh").stat().st_mode & 0o111


def test_wrapper_gives_install_sh_the_specs_variables(tmp_path: Path) -> None:
    """Run the generated wrapper as composer's build step would (COMPOSER_OPT_*, the module
    folder), with a stand-in install.sh that prints its environment."""
    module = write_module(load_feature(FEATURES / "waypoint"), tmp_path / "waypoint")
    (module / "feature/install.sh").write_text('echo "$ENABLEMARKER|$MARKER_NAME|$0"\n')
    env = {"PATH": "/usr/bin:/bin", "COMPOSER_MODULE_DIR": str(module),
           "COMPOSER_OPT_ENABLE_MARKER": "false", "COMPOSER_OPT_MARKER_NAME": "x y"}
    out = subprocess.run([str(module / "scripts/run-feature.sh")], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out == "false|x y|./install.sh\n"


def write_feature(folder: Path, manifest: str | dict[str, object], install: bool = True) -> Path:
    folder.mkdir(parents=True)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (folder / "devcontainer-feature.json").write_text(text)
    if install:
        (folder / "install.sh").write_text("true\n")
    return folder


GOOD = {"id": "thing", "version": "1.0.0", "options": {"v": {"type": "string", "default": "a"}}}


@pytest.mark.parametrize(("manifest", "install", "message"), [
    ('{"id": "thing",}', True, "devcontainer-feature.json: line 1 column 16: Expecting property name"),
    (GOOD, False, "install.sh: missing"),
    ({"version": "1"}, True, "devcontainer-feature.json: id: missing"),
    ({"id": "Bad Name"}, True, "devcontainer-feature.json: id: 'Bad Name' cannot be a module name"),
    ({"id": "t", "options": {"v": {"type": "number", "default": 1}}}, True,
     'devcontainer-feature.json: options.v.type: "number" is not a Feature option type'),
    ({"id": "t", "options": {"v": {"type": "string"}}}, True, "devcontainer-feature.json: options.v.default: missing"),
    ({"id": "t", "options": {"v": {"type": "boolean", "default": "yes"}}}, True,
     'devcontainer-feature.json: options.v.default: "yes" is not a boolean'),
    ({"id": "t", "options": {"v": {"type": "string", "enum": ["a"], "default": "b"}}}, True,
     'devcontainer-feature.json: options.v.default: "b" is not in its enum'),
    ({"id": "t", "options": {"aB": {"type": "string", "default": ""}, "a-b": {"type": "string", "default": ""}}},
     True, "devcontainer-feature.json: options.a-b: becomes option 'a-b', as options.aB does"),
    ({"id": "t", "containerEnv": {"X": 1}}, True,
     "devcontainer-feature.json: containerEnv.X: expected a string, got 1"),
    ({"id": "t", "dependsOn": ["x"]}, True, 'devcontainer-feature.json: dependsOn: expected an object, got ["x"]'),
])
def test_errors_name_file_and_field(tmp_path: Path, manifest: str | dict[str, object], install: bool,
                                    message: str) -> None:
    folder = write_feature(tmp_path / "f", manifest, install)
    with pytest.raises(ComposerError) as caught:
        load_feature(folder)
    assert caught.value.message.startswith(str(folder / message.split(":", 1)[0]))
    assert caught.value.message.endswith(message.split(":", 1)[1]) or message in caught.value.message


def test_cli_one_line_errors_and_no_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_feature(tmp_path / "f", '{"id": ', install=True)
    with pytest.raises(SystemExit) as done:
        main(["import-feature", str(folder)])
    assert done.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"composer: error: {folder}/devcontainer-feature.json: line 1 column 8: Expecting value"
    assert "Traceback" not in "".join(err)
    target = tmp_path / "layers" / "salute"
    main(["import-feature", str(FEATURES / "salute"), "-o", str(target)])
    assert capsys.readouterr().out.strip() == str(target)
    with pytest.raises(SystemExit):
        main(["import-feature", str(FEATURES / "salute"), "-o", str(target)])
    assert "exists and is not empty" in capsys.readouterr().err
    shutil.rmtree(target / "scripts")
    main(["import-feature", str(FEATURES / "salute"), "-o", str(target), "--force"])
    assert (target / "scripts/run-feature.sh").exists()
