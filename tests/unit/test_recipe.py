"""Recipe loading: schema errors name file and field; extends adds, removes, replaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.model import BaseKind, Family
from composer.recipe import load_recipe


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BASE = '[base]\nfrom = "debootstrap:trixie"\n'


def test_minimal_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path / "r.toml", 'name = "x"\n' + BASE))
    assert recipe.name == "x" and recipe.tag == "latest"
    assert recipe.base.kind is BaseKind.DEBOOTSTRAP and recipe.base.ref == "trixie"
    assert recipe.base.family is Family.DEBIAN


def test_unknown_field_names_file_and_path(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", 'name = "x"\n' + BASE + "[image]\nportz = []\n")
    with pytest.raises(ComposerError, match=r"r\.toml: image\.portz: unknown field \(did you mean 'ports'\?\)"):
        load_recipe(path)


def test_bad_value_names_nested_field(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", 'name = "x"\n' + BASE + '[image]\nports = ["22/tcp", "http"]\n')
    with pytest.raises(ComposerError, match=r"r\.toml: image\.ports\[1\]: 'http' does not match"):
        load_recipe(path)


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", "name = \n")
    with pytest.raises(ComposerError, match=r"r\.toml: invalid TOML"):
        load_recipe(path)


def test_missing_name(tmp_path: Path) -> None:
    with pytest.raises(ComposerError, match=r"r\.toml: name: missing"):
        load_recipe(write(tmp_path / "r.toml", BASE))


def test_image_base_needs_family(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", 'name = "x"\n[base]\nfrom = "image:docker.io/cachyos/cachyos"\n')
    with pytest.raises(ComposerError, match=r"base\.family: required"):
        load_recipe(path)


def test_module_listed_twice(tmp_path: Path) -> None:
    text = 'name = "x"\n' + BASE + '[[layers]]\nmodule = "a"\n[[layers]]\nmodule = "a"\n'
    with pytest.raises(ComposerError, match=r"layers\[1\]: module 'a' is listed twice"):
        load_recipe(write(tmp_path / "r.toml", text))


PARENT = (
    'name = "parent"\n' + BASE
    + '[[layers]]\nmodule = "a"\n'
    + '[[layers]]\nmodule = "b"\n[layers.options]\nx = 1\ny = { z = 2, w = 3 }\n'
    + '[[layers]]\nmodule = "c"\n'
    + '[image]\nenv = { A = "1", B = "2" }\nports = ["22"]\n'
    + '[[secrets]]\nname = "S1"\n'
)


def test_extends_remove_replace_override_append(tmp_path: Path) -> None:
    write(tmp_path / "parent.toml", PARENT)
    child = write(
        tmp_path / "team" / "child.toml",
        'extends = "../parent.toml"\nname = "child"\nremove = ["a"]\nreplace = { c = "d" }\n'
        '[[layers]]\nmodule = "b"\n[layers.options]\ny = { z = 9 }\n'
        '[[layers]]\nmodule = "e"\n'
        '[image]\nenv = { B = "two" }\nports = ["2222"]\n'
        '[[secrets]]\nname = "S2"\n',
    )
    recipe = load_recipe(child)
    assert recipe.name == "child"
    assert [layer.module for layer in recipe.layers] == ["b", "d", "e"]
    assert recipe.layers[0].options == {"x": 1, "y": {"z": 9, "w": 3}}
    assert recipe.layers[0].file.endswith("child.toml")  # errors point at the override
    assert dict(recipe.image.env) == {"A": "1", "B": "two"}
    assert recipe.image.ports == ("2222",)  # lists are replaced, not merged
    assert [s.name for s in recipe.secrets] == ["S1", "S2"]


def test_extends_remove_unknown_module(tmp_path: Path) -> None:
    write(tmp_path / "parent.toml", PARENT)
    child = write(tmp_path / "child.toml", 'extends = "parent.toml"\nremove = ["zzz"]\n')
    with pytest.raises(ComposerError, match=r"child\.toml: remove\[0\]: module 'zzz' is not in the parent"):
        load_recipe(child)


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ComposerError, match="extends: cycle"):
        load_recipe(tmp_path / "a.toml")


def test_remove_without_extends(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", 'name = "x"\nremove = ["a"]\n' + BASE)
    with pytest.raises(ComposerError, match="remove: only allowed together with extends"):
        load_recipe(path)


def test_extends_replaces_the_base_whole(tmp_path: Path) -> None:
    write(tmp_path / "parent.toml", PARENT.replace(BASE, BASE + 'components = ["main", "contrib"]\n'))
    child = write(tmp_path / "child.toml",
                  'extends = "parent.toml"\n[base]\nfrom = "image:docker.io/cachyos/cachyos"\nfamily = "arch"\n')
    recipe = load_recipe(child)
    assert recipe.base.kind is BaseKind.IMAGE and recipe.base.family is Family.ARCH
