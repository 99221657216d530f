"""Three Dev Container Features (tests/data/features: string, boolean and enum options, a
dependency, installsAfter) imported with `composer import-feature`, built in a small
recipe with real buildah, and their effect checked in the image."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import ROOT, Containers

pytestmark = pytest.mark.integration

FEATURES = ROOT / "tests" / "data" / "features"


@pytest.fixture(scope="module")
def image(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("features")
    for name in ("salute", "flavour", "waypoint"):
        containers.composer("import-feature", str(FEATURES / name), "-o", str(folder / "layers" / name))
    recipe = folder / "features.toml"
    # waypoint first: its installsAfter (after = ["salute"]) must move it behind salute.
    recipe.write_text(textwrap.dedent("""\
        name = "features-test"
        tag = "test"

        [base]
        from = "debootstrap:trixie"
        components = ["main"]

        [[layers]]
        module = "waypoint"
        [layers.options]
        marker-name = "there"

        [[layers]]
        module = "flavour"
        [layers.options]
        flavour = "chocolate"
        extra-topping = "sprinkles"

        [[layers]]
        module = "salute"
        [layers.options]
        message = "good morning"
        shout = true
    """))
    plan = json.loads(containers.composer("plan", str(recipe), "--json").stdout)
    order = [layer["module"] for layer in plan["layers"]]
    assert order.index("salute") < order.index("flavour") and order.index("salute") < order.index("waypoint")
    return str(containers.build(recipe)["image"])


def cat(containers: Containers, image: str, path: str) -> str:
    return containers.podman("run", "--rm", "--entrypoint", "cat", image, path).stdout


def test_string_and_boolean_options_reach_install_sh(containers: Containers, image: str) -> None:
    assert cat(containers, image, "/usr/local/share/greeting/greeting.txt") == "GOOD MORNING\n"


def test_enum_option_and_dependency(containers: Containers, image: str) -> None:
    # flavour's install.sh reads salute's file: it ran after it (dependsOn -> requires).
    assert cat(containers, image, "/etc/flavour") == "GOOD MORNING, chocolate with sprinkles\n"


def test_renamed_option_variables_and_sh_without_exec_bit(containers: Containers, image: str) -> None:
    # marker-name -> MARKER_NAME, enableMarker -> ENABLEMARKER; install.sh is not executable.
    assert cat(containers, image, "/opt/marker/there") == "there\n"


def test_container_env_in_the_image(containers: Containers, image: str) -> None:
    config = json.loads(containers.podman("image", "inspect", image).stdout)[0]["Config"]
    assert "GREETING_FILE=/usr/local/share/greeting/greeting.txt" in config["Env"]
