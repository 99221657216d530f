"""The inventory parsers and the SBOM documents, on a recorded inventory: the documents
validate against the official SPDX 2.3 and CycloneDX 1.6 schemas (tests/data/sbom-schemas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource

from composer.emit.sbom import Bom, Entry, Origin, cyclonedx, purl, spdx
from composer.inventory import SECTION, Component, Ecosystem, from_json, parse, to_json, unchanged_by
from composer.sbom import why

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "sbom-schemas"

# What the inventory script prints in a small image (recorded from a trixie image with a venv
# and a global npm package, trimmed).
RECORDED = f"""{SECTION}deb
jq\tamd64\t1.7.1-6+deb13u4\tii \t, libc6 (>= 2.34), libjq1 (= 1.7.1-6+deb13u4)
libjq1\tamd64\t1.7.1-6+deb13u4\tii \t, libc6 (>= 2.34), libonig5 (>= 6.9.1)
libonig5\tamd64\t6.9.9-1+b1\tii \t, libc6 (>= 2.14)
libc6\tamd64\t2.41-12\tii \tlibgcc-s1 | libgcc1,
oldpkg\tamd64\t1:1.0-1\trc \t,
{SECTION}pypi
/opt/venv/lib/python3.13/site-packages/Jinja2-3.1.4.dist-info
/usr/lib/python3/dist-packages/typing_extensions-4.12.2.dist-info
{SECTION}npm
typescript\t5.6.3\t/usr/local/lib/node_modules/typescript
@types/node\t22.9.0\t/usr/local/lib/node_modules/ts-node/node_modules/@types/node
{SECTION}cargo
ripgrep\t14.1.1
"""


def test_the_recorded_inventory_parses() -> None:
    comps = parse(RECORDED)
    names = {(c.ecosystem, c.name, c.version) for c in comps}
    assert (Ecosystem.DEB, "jq", "1.7.1-6+deb13u4") in names
    assert not any(c.name == "oldpkg" for c in comps)  # removed, config files left: not installed
    assert (Ecosystem.PYPI, "jinja2", "3.1.4") in names  # PEP 503 names, as pip compares them
    assert (Ecosystem.PYPI, "typing-extensions", "4.12.2") in names
    assert (Ecosystem.NPM, "@types/node", "22.9.0") in names
    assert (Ecosystem.CARGO, "ripgrep", "14.1.1") in names
    libc = next(c for c in comps if c.name == "libc6")
    assert libc.depends == ("libgcc-s1", "libgcc1")
    assert from_json(to_json(comps)) == comps


def test_purls() -> None:
    assert purl(Component(Ecosystem.DEB, "libc6", "2.41-12", arch="amd64"), "trixie") == \
        "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-trixie"
    assert purl(Component(Ecosystem.DEB, "x", "1:2.0+b1")) == "pkg:deb/debian/x@1%3A2.0+b1"
    assert purl(Component(Ecosystem.NPM, "@types/node", "22.9.0")) == "pkg:npm/%40types/node@22.9.0"
    assert purl(Component(Ecosystem.PYPI, "jinja2", "3.1.4")) == "pkg:pypi/jinja2@3.1.4"
    assert purl(Component(Ecosystem.CARGO, "ripgrep", "14.1.1")) == "pkg:cargo/ripgrep@14.1.1"


def bom() -> Bom:
    comps = parse(RECORDED)
    jq = Origin("jq", "a" * 64)
    base = Origin("base debootstrap:trixie", "b" * 64)
    entries = tuple(Entry(c, (base,) if c.name == "libc6" else (jq,)) for c in comps)
    return Bom("localhost/demo:test", "f" * 64, "trixie", entries, "2026-12-04T12:00:00Z")


def cyclonedx_validator() -> Draft7Validator:
    def resource(name: str) -> Resource[Any]:
        return Resource.from_contents(json.loads((SCHEMAS / name).read_text()))

    registry: Registry[Any] = Registry().with_resources(
        [(name, resource(name)) for name in ("spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json")])
    schema = json.loads((SCHEMAS / "bom-1.6.SNAPSHOT.schema.json").read_text())
    return Draft7Validator(schema, registry=registry)


def test_spdx_document_validates_and_names_each_module() -> None:
    document = spdx(bom())
    schema = json.loads((SCHEMAS / "spdx-2.3.schema.json").read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(document), key=str)
    assert errors == [], errors[:3]
    jq = next(p for p in document["packages"] if p["name"] == "jq")
    assert jq["annotations"][0]["comment"] == f"module jq, layer {'a' * 64}"
    assert jq["externalRefs"][0]["referenceLocator"].startswith("pkg:deb/debian/jq@")
    contains = [r for r in document["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert len(contains) == len(document["packages"]) - 1


def test_cyclonedx_document_validates_and_names_each_module() -> None:
    document = cyclonedx(bom())
    errors = sorted(cyclonedx_validator().iter_errors(document), key=str)
    assert errors == [], errors[:3]
    libc = next(c for c in document["components"] if c["name"] == "libc6")
    assert {"name": "composer:module", "value": "base debootstrap:trixie"} in libc["properties"]


def test_an_invalid_document_is_caught() -> None:
    """The validators are live: a document without its required fields fails them."""
    document = cyclonedx(bom())
    del document["bomFormat"]
    assert list(cyclonedx_validator().iter_errors(document))
    broken = spdx(bom())
    del broken["packages"][1]["downloadLocation"]
    schema = json.loads((SCHEMAS / "spdx-2.3.schema.json").read_text())
    assert list(Draft7Validator(schema).iter_errors(broken))


@pytest.mark.parametrize(("package", "expected"), [
    ("libonig5", ["libonig5 6.9.9-1+b1 (deb): brought by jq", "  jq -> libjq1 -> libonig5"]),
    ("libc6", ["libc6 2.41-12 (deb): brought by base debootstrap:trixie"]),
    ("Jinja2", ["jinja2 3.1.4 (pypi in /opt/venv/lib/python3.13/site-packages): brought by jq"]),
    ("nothing-such", []),
])
def test_why_names_the_module_and_the_chain(package: str, expected: list[str]) -> None:
    lines = why(bom(), package)
    assert [line.split(" (layer")[0] if not line.startswith("  ") else line for line in lines] == expected


def test_schemas_are_the_draft_they_say() -> None:
    for name, cls in (("spdx-2.3.schema.json", Draft7Validator), ("bom-1.6.SNAPSHOT.schema.json", Draft7Validator)):
        cls.check_schema(json.loads((SCHEMAS / name).read_text()))
    assert Draft202012Validator  # the project's own schemas use 2020-12; these two are draft-07


def test_provenance_statement_names_the_image_and_every_layer() -> None:
    from composer.emit.provenance import statement
    from composer.planner import plan_file

    plan = plan_file(Path(__file__).resolve().parents[1] / "recipes" / "core-test.toml")
    doc = statement(plan, "sha256:" + "9" * 64, "2026-12-04T12:00:00Z", "2026-12-04T12:01:00Z")
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": plan.image_ref, "digest": {"sha256": "9" * 64}}]
    deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d["digest"]["sha256"] for d in deps] == [plan.base.key, *(s.key for s in plan.steps)]
    layers = doc["predicate"]["runDetails"]["byproducts"][0]["annotations"]["layers"]
    assert [layer["key"] for layer in layers] == plan.all_keys()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON


class ShellLessRunner:
    """What buildah answers when the image has no /bin/sh (a scratch base with files)."""

    def __init__(self, output: str) -> None:
        self.out = output
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], env: object = None, stream: bool = False) -> str:
        self.calls.append(list(argv))
        return ""

    def output(self, argv: list[str], env: object = None) -> str:
        from composer.errors import CommandError

        raise CommandError(list(argv), 1, self.out)


def test_an_image_without_a_shell_has_nothing_to_list(tmp_path: Path) -> None:
    from composer import commands as cmd
    from composer.errors import CommandError
    from composer.inventory import image_inventory

    missing = 'error running container: exec: "/bin/sh": stat /bin/sh: no such file or directory\n'
    runner = ShellLessRunner(missing)
    assert image_inventory(runner, cmd.Storage(), "a" * 64, tmp_path) == []  # type: ignore[arg-type]
    assert runner.calls[-1][-2] == "rm"  # its container removed
    with pytest.raises(CommandError):  # any other failure is an error
        image_inventory(ShellLessRunner("permission denied\n"), cmd.Storage(), "b" * 64,  # type: ignore[arg-type]
                        tmp_path)


LISTED = [Component(Ecosystem.PYPI, "numpy", "2.2.0", location="/opt/venv/lib/python3.11/site-packages"),
          Component(Ecosystem.NPM, "left-pad", "1.3.0", location="/usr/lib/node_modules/left-pad"),
          Component(Ecosystem.DEB, "jq", "1.7.1", arch="amd64")]


def test_a_layer_that_installs_nothing_leaves_the_inventory_as_it_was() -> None:
    entries = [("/usr", "dir", False), ("/usr/local/bin/composer-agents", "file", False),
               ("/etc/composer/hooks/60-agents.sh", "file", False), ("/opt", "dir", False),
               ("/opt/venv", "dir", False),  # a folder merges with the one below: what it held stays
               ("/home/devuser/agents/README.md", "file", False), ("/usr/local/bin/tool", "symlink", False),
               # a step's clean-up: caches and logs deleted, a scratch folder made opaque
               ("/var/cache/debconf/templates.dat-old", "whiteout", False), ("/var/log/apt", "whiteout", False),
               ("/tmp/build", "dir", True)]
    assert unchanged_by(entries, LISTED) is None


@pytest.mark.parametrize(("path", "kind", "opaque"), [
    ("/var/lib/dpkg/status", "file", False),  # dpkg's database
    ("/etc/dpkg/dpkg.cfg.d/excludes", "file", False),  # its configuration
    ("/usr/lib/node_modules/other/package.json", "file", False),  # a global npm package
    ("/home/u/.local/lib/python3.11/site-packages/foo-1.0.dist-info", "dir", False),  # a distribution
    ("/root/.cargo/.crates.toml", "file", False),  # cargo's record
    ("/usr/local/bin/node", "file", False),  # a program the inventory runs
    ("/opt/venv", "symlink", False),  # a link in place of the folder a component lies in
    ("/usr/lib", "file", False),  # a file in place of a read folder's parent
    ("/usr/local/lib/gone", "whiteout", False),  # a deletion (of a folder of distributions?)
    ("/home/u", "whiteout", False),  # a deletion (of a home with a venv, a cargo record?)
    ("/var/cache", "whiteout", False),  # a deletion of the folder itself, not below it
    ("/var/lib/gone", "whiteout", False),  # a deletion beside dpkg's database
    ("/srv", "dir", True),  # an opaque folder
])
def test_a_layer_that_may_change_the_inventory_is_found(path: str, kind: str, opaque: bool) -> None:
    assert unchanged_by([("/usr/local/bin/tool", "file", False), (path, kind, opaque)], LISTED) == path
