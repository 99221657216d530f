"""A module's [[credentials]] checked once its options are put in: the schema sees
`{options.NAME}`, an option's value could point the start-up hook at another user's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.planner import plan_file

MODULE = """name = "keys"
version = "1"
[options.owner]
type = "string"
default = "devuser"
[options.cfg]
type = "string"
default = ".config/keys.json"
[options.key]
type = "string"
default = "KEYS_API_KEY"
[[credentials]]
user = "{options.owner}"
file = "{options.cfg}"
secrets = { api_key = "{options.key}" }
"""


def recipe(tmp_path: Path, options: str) -> Path:
    module = tmp_path / "layers" / "keys"
    module.mkdir(parents=True)
    (module / "module.toml").write_text(MODULE)
    path = tmp_path / "r.toml"
    path.write_text(f'name = "r"\n[base]\nfrom = "scratch"\nfamily = "debian"\n'
                    f'[[layers]]\nmodule = "keys"\noptions = {{ {options} }}\n')
    return path


def test_defaults_pass(tmp_path: Path) -> None:
    plan = plan_file(recipe(tmp_path, ""))
    assert plan.finalize.credentials[0]["file"] == ".config/keys.json"


@pytest.mark.parametrize(("options", "field", "value"), [
    ('cfg = "../../etc/shadow"', "file", "../../etc/shadow"),
    ('cfg = ".config/../../../etc/shadow"', "file", ".config/../../../etc/shadow"),
    ('cfg = "/etc/shadow"', "file", "/etc/shadow"),
    ('owner = "../root"', "user", "../root"),
    ('owner = "root\\nx"', "user", "root\\nx"),
    ('key = "A/../B"', "secrets.api_key", "A/../B"),
])
def test_an_option_cannot_take_a_credential_out_of_its_place(tmp_path: Path, options: str, field: str,
                                                           value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ComposerError) as info:
        plan_file(recipe(tmp_path, options))
    message = str(info.value)
    assert message.startswith(f"layers/keys/module.toml: credentials[0].{field}: '{value}' "
                              "(with the options of r.toml: layers[0] put in) is not"), message
