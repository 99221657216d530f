"""JSON Schema validation with errors that name the file and the field path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from composer.errors import ComposerError, ComposerErrors, did_you_mean


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = anchored(json.loads(text))
    return schema


def anchored(schema: Any) -> Any:
    """The schema with each pattern's final `$` made `\\Z`: in Python's re (which
    jsonschema uses) `$` also matches before a trailing newline, so "devuser\\n" would
    pass "^[a-z]+$" and reach a config file or a command line."""
    if isinstance(schema, dict):
        out = {k: anchored(v) for k, v in schema.items()}
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
            out["pattern"] = pattern[:-1] + "\\Z"
        return out
    if isinstance(schema, list):
        return [anchored(v) for v in schema]
    return schema


def field_path(parts: Iterable[Any]) -> str:
    """['layers', 3, 'options', 'uid'] -> 'layers[3].options.uid'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def display(path: Path) -> str:
    """A path as a person typed it: relative to the working folder when inside it."""
    # A symlink is shown as itself (its folder resolved), not as the file it points at.
    full = path.parent.resolve() / path.name if path.is_symlink() else path.resolve()
    try:
        return str(full.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# Set by the CLI: a folder of markers for (schema, document) pairs already found valid,
# so that a cached rebuild need not import jsonschema at all.
VALID_CACHE: Path | None = None


def _marker(document: Any, schema: dict[str, Any]) -> Path | None:
    if VALID_CACHE is None:
        return None
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):  # TOML dates and times have no JSON form
        return None
    return VALID_CACHE / hashlib.sha256(f"{_schema_digest(schema)}\n{text}".encode()).hexdigest()


_SCHEMA_DIGESTS: dict[int, tuple[dict[str, Any], str]] = {}


def _schema_digest(schema: dict[str, Any]) -> str:
    """The schema's hash, once per schema object (the module schema is checked once per
    module, and serialising it was a tenth of loading one)."""
    known = _SCHEMA_DIGESTS.get(id(schema))
    if known is None or known[0] is not schema:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        known = _SCHEMA_DIGESTS[id(schema)] = (schema, hashlib.sha256(text.encode()).hexdigest())
    return known[1]


def validate(document: Any, schema: dict[str, Any], where: str, prefix: str = "") -> None:
    """Raise ComposerError for a schema error in document (ComposerErrors: one per field)."""
    marker = _marker(document, schema)
    if marker is not None and marker.exists():
        return
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        return
    # One error per field path (the deepest first), each on its own line.
    found: dict[str, ComposerError] = {}
    for error in errors:
        path, message = _located(error, prefix)
        found.setdefault(path, ComposerError(f"{where}: {path}: {message}" if path else f"{where}: {message}"))
    problems = list(found.values())
    raise problems[0] if len(problems) == 1 else ComposerErrors(problems)


def _located(error: Any, prefix: str) -> tuple[str, str]:
    # For anyOf/oneOf, the most specific sub-error reads better than "is not valid": one
    # from a branch of the value's own type (a bad path string is not "not of type
    # 'object'"); when the value fits no branch's type, say what the branches accept.
    while error.context:
        fitting = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        if not fitting:
            return _path(error, prefix), f"{error.instance!r} is not {_alternatives(error)}"
        error = min(fitting, key=lambda e: len(e.message))
    return _path(error, prefix), _message(error)


def _alternatives(error: Any) -> str:
    means = error.schema.get("x-means")
    if means:
        return means
    types = [e.validator_value for e in error.context]
    return "of type " + " or ".join(repr(t) for t in types)


def _path(error: Any, prefix: str) -> str:
    path = field_path(error.absolute_path)
    if error.validator == "required":  # name the missing field itself, not the table it is missing from
        missing = [name for name in error.validator_value if name not in error.instance]
        path = field_path([*error.absolute_path, missing[0]])
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # name the unknown key itself: `colour: unknown field`, not the table it is in
        known = error.schema.get("properties", {})
        extra = [name for name in error.instance if name not in known]
        if extra:
            path = field_path([*error.absolute_path, extra[0]])
    if prefix:
        path = prefix + (path if path.startswith("[") or not path else f".{path}")
    return path


def _message(error: Any) -> str:
    if error.validator == "required":
        return "missing (required)"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = [name for name in error.instance if name not in known] if isinstance(error.instance, dict) else []
        return "unknown field" + (did_you_mean(extra[0], known) if extra else "")
    if error.validator == "pattern":
        # A pattern may say in words what it means (x-means): a person reads that, not the regex.
        means = error.schema.get("x-means")
        return f"{error.instance!r} is not {means}" if means else \
            f"{error.instance!r} does not match the expected form ({error.validator_value})"
    return str(error.message)
