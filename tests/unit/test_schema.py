"""The JSON Schemas and the dataclasses must not drift apart: the schema holds types and
constraints, the dataclasses (built by one loader, `from_raw`) the defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from composer.model import (
    Base,
    Credential,
    FileSpec,
    Healthcheck,
    ImageConfig,
    LivenessProbe,
    Module,
    Pod,
    PodPort,
    PodVolume,
    Recipe,
    Resources,
    ScriptSpec,
    Secret,
    Service,
)
from composer.schema import load_schema

MODULE = load_schema("module")["properties"]
RECIPE = load_schema("recipe")["properties"]
RECIPE_DEFS = load_schema("recipe")["$defs"]
POD = RECIPE["pod"]["properties"]
# Recipe fields worked out while loading (extends, origins), not read from a key of their own
RECIPE_DERIVED = {"path", "module_dirs", "cache_from", "cache_to", "removed", "unset", "effective", "origins",
                  "parent_file"}
# Recipe keys that shape other fields instead of being one: the extends machinery and [cache]
RECIPE_INSTRUCTIONS = {"extends", "remove", "replace", "only", "unset", "cache"}

# (dataclass, its schema object, dataclass fields that are no key of the TOML table,
#  TOML keys stored under another name)
PAIRS = [
    (Module, {"properties": MODULE}, {"path"}, {"options_schema": "options"}),
    (Service, MODULE["services"]["items"], {"module"}, {}),
    (Credential, MODULE["credentials"]["items"], {"module"}, {}),
    (FileSpec, MODULE["files"]["items"], set(), {}),
    (ScriptSpec, MODULE["scripts"]["items"], set(), {}),
    (Healthcheck, MODULE["healthcheck"], set(), {}),
    (Healthcheck, RECIPE_DEFS["healthcheck"], set(), {}),
    (ImageConfig, RECIPE["image"], set(), {}),
    (Secret, RECIPE["secrets"]["items"], set(), {}),
    (Base, RECIPE["base"], {"kind", "ref"}, {}),
    (Recipe, {"properties": {k: v for k, v in RECIPE.items() if k not in RECIPE_INSTRUCTIONS}}, RECIPE_DERIVED, {}),
    (Pod, RECIPE["pod"], set(), {}),
    (PodPort, POD["ports"]["items"], set(), {}),
    (PodVolume, POD["volumes"]["additionalProperties"]["oneOf"][1], set(), {}),
    (Resources, POD["resources"], set(), {}),
    (LivenessProbe, POD["liveness"]["oneOf"][1], set(), {}),
]


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@pytest.mark.parametrize(("cls", "schema", "derived", "renamed"), PAIRS,
                         ids=[f"{p[0].__name__}-{i}" for i, p in enumerate(PAIRS)])
def test_fields_match_and_defaults_live_in_one_place(
        cls: type, schema: dict[str, Any], derived: set[str], renamed: dict[str, str]) -> None:
    props = schema["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in derived}
    keys = {renamed.get(name, name) for name in fields}
    assert keys == set(props) - {"from"}  # base.from is parsed into kind and ref
    for name, f in fields.items():
        spec = props[renamed.get(name, name)]
        if "default" in spec:  # a schema default is documentation: it must be the real one
            default = default_of(f)
            assert default is not dataclasses.MISSING and spec["default"] == (
                list(default) if isinstance(default, tuple) else default), name


def test_pod_shorthands_load_as_their_tables() -> None:
    """`name = "/path"` is { path = "/path" }; `liveness = true` the probe's defaults."""
    from composer.model import from_raw

    pod = from_raw(Pod, {"volumes": {"a": "/a", "b": {"path": "/b", "claim": "c"}}, "liveness": True})
    assert pod.volumes == (("a", PodVolume("/a")), ("b", PodVolume("/b", "c")))
    assert pod.probe == LivenessProbe()
    assert from_raw(Pod, {}).probe is None
    assert from_raw(Pod, {"liveness": {"port": 1}}).probe == LivenessProbe(port=1)
