"""The JSON Schemas and the dataclasses must not drift apart."""

from __future__ import annotations

import dataclasses

from composer.model import Module, Service
from composer.schema import load_schema

# Module fields that are not a key of module.toml, and keys stored under another name.
DERIVED = {"path"}
RENAMED = {"options_schema": "options"}


def test_module_schema_matches_dataclass() -> None:
    fields = {RENAMED.get(f.name, f.name) for f in dataclasses.fields(Module)} - DERIVED
    assert fields == set(load_schema("module")["properties"])


def test_service_schema_matches_dataclass() -> None:
    fields = {f.name for f in dataclasses.fields(Service)} - {"module"}
    schema = load_schema("module")["properties"]["services"]["items"]["properties"]
    assert fields == set(schema)


def test_recipe_schema_covers_image_config() -> None:
    from composer.model import ImageConfig

    fields = {f.name for f in dataclasses.fields(ImageConfig)}
    assert fields == set(load_schema("recipe")["properties"]["image"]["properties"])
