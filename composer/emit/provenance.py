"""A provenance statement of a build: in-toto Statement v1 with a SLSA Provenance v1
predicate — what was built (the image), from what (the recipe and its digest, the base,
every module folder's digest, composer's version) and how (every layer's key and module).
Pure; `composer build` writes it beside the SBOMs (docs/sbom.md)."""

from __future__ import annotations

from typing import Any

from composer import __version__
from composer.keys import file_digest
from composer.model import Plan

BUILD_TYPE = "https://composer.invalid/build-types/recipe/v1"


def statement(plan: Plan, image_id: str, started: str, finished: str) -> dict[str, Any]:
    """image_id: the image's config digest (what podman shows as its ID) names the subject."""
    recipe = plan.recipe
    dependencies = [{"uri": f"composer-base:{plan.base.base.source}", "digest": {"sha256": plan.base.key},
                     "annotations": {"key-document": plan.base.key_document}}]
    for step in plan.steps:
        dependencies.append({
            "uri": f"composer-module:{step.module.name}@{step.module.version}",
            "digest": {"sha256": step.key},
            "annotations": {"options": step.options, "files": step.key_document.get("files", [])},
        })
    layers = [{"name": layer.label, "kind": str(layer.kind), "key": layer.key} for layer in plan.layers()]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": plan.image_ref, "digest": {"sha256": image_id.removeprefix("sha256:")}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"recipe": str(recipe.path.name),
                                       "recipeDigest": {"sha256": file_digest(recipe.path)},
                                       "layering": str(recipe.layering)},
                "internalParameters": {"family": str(recipe.base.family)},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"https://composer.invalid/composer@{__version__}",
                            "version": {"composer": __version__}},
                "metadata": {"invocationId": plan.finalize.key, "startedOn": started, "finishedOn": finished},
                "byproducts": [{"name": "layers", "content": None, "annotations": {"layers": layers}}],
            },
        },
    }
