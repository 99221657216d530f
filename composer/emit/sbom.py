"""SBOMs of a built image: SPDX 2.3 and CycloneDX 1.6 JSON, every component with the module
and layer that brought it. Pure: the inventory of each layer comes in (composer/sbom.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from composer import __version__
from composer.inventory import Component, Ecosystem

TOOL = f"composer-{__version__}"


@dataclass(frozen=True)
class Origin:
    """Which layer of the plan brought a component."""

    module: str  # the module, "base <source>", or composer's own layer (reconcile, finalize)
    layer: str  # the layer's key


@dataclass(frozen=True)
class Entry:
    component: Component
    origins: tuple[Origin, ...]


@dataclass(frozen=True)
class Bom:
    image: str  # localhost/name:tag
    image_key: str  # the finalize layer's key: names this exact image
    suite: str  # the Debian suite, for purls ("" when the base is no debootstrap)
    entries: tuple[Entry, ...]
    created: str  # ISO 8601 UTC, seconds
    inventory_of: str = ""  # the final image's inventory is this key's (composer/sbom.py final_inventory)


def purl(c: Component, suite: str = "") -> str:
    version = quote(c.version, safe=".-_~+")
    if c.ecosystem is Ecosystem.DEB:
        qualifiers = "&".join(q for q in (f"arch={c.arch}" if c.arch else "",
                                          f"distro=debian-{suite}" if suite else "") if q)
        return f"pkg:deb/debian/{quote(c.name, safe='.-_~+')}@{version}" + (f"?{qualifiers}" if qualifiers else "")
    if c.ecosystem is Ecosystem.NPM:
        scope, _, name = c.name.rpartition("/")
        return f"pkg:npm/{quote(scope, safe='') + '/' if scope else ''}{quote(name, safe='.-_~')}@{version}"
    return f"pkg:{c.ecosystem}/{quote(c.name, safe='.-_~')}@{version}"


def _origin_text(origins: Sequence[Origin]) -> str:
    return "; ".join(f"module {o.module}, layer {o.layer}" for o in origins)


def spdx(bom: Bom) -> dict[str, Any]:
    """An SPDX 2.3 document: the image as a CONTAINER package that CONTAINS each component."""
    packages: list[dict[str, Any]] = [{
        "SPDXID": "SPDXRef-Image", "name": bom.image, "versionInfo": bom.image_key,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    for i, entry in enumerate(bom.entries, 1):
        c = entry.component
        ident = f"SPDXRef-Package-{c.ecosystem}-{i}"
        packages.append({
            "SPDXID": ident, "name": c.name, "versionInfo": c.version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "supplier": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl(c, bom.suite)}],
            "annotations": [{"annotationDate": bom.created, "annotationType": "OTHER",
                             "annotator": f"Tool: {TOOL}", "comment": _origin_text(entry.origins)}],
            **({"sourceInfo": f"installed at {c.location}"} if c.location else {}),
        })
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": bom.image,
        "documentNamespace": f"https://composer.invalid/spdx/{quote(bom.image, safe='')}/{bom.image_key}",
        "creationInfo": {"created": bom.created, "creators": [f"Tool: {TOOL}"]},
        "packages": packages, "relationships": relationships,
    }


def cyclonedx(bom: Bom) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM: the image as the metadata component, each component with
    composer:module and composer:layer properties."""
    components = []
    for i, entry in enumerate(bom.entries, 1):
        c = entry.component
        properties = [{"name": "composer:module", "value": o.module} for o in entry.origins]
        properties += [{"name": "composer:layer", "value": o.layer} for o in entry.origins]
        if c.location:
            properties.append({"name": "composer:location", "value": c.location})
        components.append({"type": "library", "bom-ref": f"component-{i}", "name": c.name, "version": c.version,
                           "purl": purl(c, bom.suite), "properties": properties})
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, bom.image + '@' + bom.image_key)}",
        "version": 1,
        "metadata": {
            "timestamp": bom.created,
            "tools": {"components": [{"type": "application", "name": "composer", "version": __version__}]},
            "component": {"type": "container", "bom-ref": "image", "name": bom.image, "version": bom.image_key},
        },
        "components": components,
    }
