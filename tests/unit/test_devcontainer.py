"""devcontainer.json: what the Dev Containers tools need from the devpod, valid per the spec."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from composer.cli import main
from composer.emit.devcontainer import podman_size, render
from composer.planner import plan_file

ROOT = Path(__file__).resolve().parents[2]
DEVPOD_CI = ROOT / "tests" / "recipes" / "devpod-ci.toml"
SCHEMA = json.loads((ROOT / "tests/data/devcontainer/devContainer.base.schema.json").read_text())
VALIDATOR = jsonschema.Draft201909Validator(SCHEMA)


def devpod(podman_secrets: bool = False) -> dict[str, Any]:
    return json.loads(render(plan_file(DEVPOD_CI), podman_secrets=podman_secrets))


def test_devpod_ci_is_valid_per_the_spec_schema() -> None:
    for secrets in (False, True):
        assert list(VALIDATOR.iter_errors(devpod(secrets))) == []


def test_the_schema_refuses_what_the_spec_does_not_know() -> None:
    # The vendored schema is not a rubber stamp: a misspelt key fails it.
    document = devpod() | {"overideCommand": False}
    assert [e.message for e in VALIDATOR.iter_errors(document)] == [
        "Unevaluated properties are not allowed ('overideCommand' was unexpected)"
    ]


def test_the_entrypoint_runs_and_the_dev_user_works() -> None:
    document = devpod()
    assert document["image"] == "localhost/devpod-ci:test"
    assert document["overrideCommand"] is False
    assert document["containerUser"] == "root"  # supervisord starts as root
    assert document["remoteUser"] == "devuser"
    assert document["updateRemoteUserUID"] is False


def test_ports_volumes_and_run_arguments_come_from_pod() -> None:
    document = devpod()
    assert document["forwardPorts"][:3] == [22, 5901, 9090]
    assert document["portsAttributes"]["5901"] == {"label": "vnc"}
    assert "source=devpod-ci-workspace,target=/home/devuser/workspace,type=volume" in document["mounts"]
    assert "--cap-add=SYS_ADMIN" in document["runArgs"]
    assert "--shm-size=32g" in document["runArgs"]
    assert not [a for a in document["runArgs"] if a.startswith("--device")]  # devpod-ci: none


def test_secrets_are_names_never_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-must-not-appear")
    text = render(plan_file(DEVPOD_CI), podman_secrets=True)
    assert "sk-test-must-not-appear" not in text
    document = json.loads(text)
    assert document["secrets"]["ANTHROPIC_API_KEY"] == {"description": "Claude Code key for devuser"}
    assert "--secret=ANTHROPIC_API_KEY,type=mount,target=/run/secrets/ANTHROPIC_API_KEY" in document["runArgs"]
    # Without the flag no --secret: podman would refuse to start without each one created.
    assert not [a for a in devpod()["runArgs"] if a.startswith("--secret")]


def test_a_recipe_without_users_or_pod(tmp_path: Path) -> None:
    module = tmp_path / "layers" / "tool"
    module.mkdir(parents=True)
    (module / "module.toml").write_text(
        'name = "tool"\nversion = "1"\ndescription = "t"\nports = ["8080/tcp", "53/udp"]\n'
        '[packages]\ndebian = ["curl"]\n'
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent("""\
        name = "plain"
        tag = "v1"
        [base]
        from = "debootstrap:trixie"
        [[layers]]
        module = "tool"
    """))
    document = json.loads(render(plan_file(recipe)))
    assert list(VALIDATOR.iter_errors(document)) == []
    assert document["remoteUser"] == document["containerUser"]
    assert document["forwardPorts"] == [8080]  # forwarding is TCP only
    assert "secrets" not in document and "mounts" not in document


@pytest.mark.parametrize(("quantity", "podman"), [("1Gi", "1g"), ("512Mi", "512m"), ("2G", "2g"), ("100", "100")])
def test_shm_size_in_podman_units(quantity: str, podman: str) -> None:
    assert podman_size(quantity) == podman


def test_cli_writes_the_file_or_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / ".devcontainer" / "devcontainer.json"
    main(["devcontainer", str(DEVPOD_CI), "-o", str(target)])
    assert json.loads(target.read_text())["remoteUser"] == "devuser"
    assert str(target) in capsys.readouterr().out
    main(["devcontainer", str(DEVPOD_CI), "-o", "-"])
    assert json.loads(capsys.readouterr().out)["image"] == "localhost/devpod-ci:test"
    assert not Path("-").exists()


def test_cli_bad_recipe_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text('name = "x"\ntag = "v1"\n[pod]\nshm_size = 12\n')
    with pytest.raises(SystemExit) as done:
        main(["devcontainer", str(recipe), "-o", "-"])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("composer: error: ") and "Traceback" not in err


def test_rootful_podman_maps_ids_itself() -> None:
    # The Dev Containers CLI adds --userns=keep-id (refused by root's podman) unless
    # runArgs carry a --uidmap/--gidmap: the flag adds an identity map, still valid.
    document = json.loads(render(plan_file(DEVPOD_CI), rootful=True))
    assert document["runArgs"][-2:] == ["--uidmap=0:0:65536", "--gidmap=0:0:65536"]
    assert list(VALIDATOR.iter_errors(document)) == []
    assert not [a for a in devpod()["runArgs"] if "idmap" in a]
