"""Issue 4 in CI: build tests/recipes/tools-ci.toml (python, node, latex light,
ImageMagick, three skills, agents) and check the tools answer inside the image."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import RECIPES, Containers

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "tools-ci.toml"
SKILLS = "/home/devuser/.claude/skills"


@pytest.fixture(scope="module")
def image(containers: Containers) -> str:
    return str(containers.build_once(RECIPE)["image"])


def sh(containers: Containers, image: str, script: str, timeout: float = 300) -> str:
    """Run script with sh in a fresh container (no network: only its loopback)."""
    result = containers.podman("run", "--rm", "--network", "none", image, "sh", "-c", script,
                               timeout=timeout)
    return result.stdout


def ask_skill(containers: Containers, image: str, tool: str, *requests: dict[str, Any],
              prelude: str = "") -> list[dict[str, Any]]:
    """Send requests to a skill tool as devuser; one reply per request."""
    lines = "\n".join(json.dumps(r) for r in requests)
    script = (f"{prelude}\nrunuser -u devuser -- python3 {SKILLS}/{tool} <<'REQUESTS'\n"
              f"{lines}\nREQUESTS\n")
    out = sh(containers, image, script)
    replies = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(replies) == len(requests), out
    return replies


def test_versions_answer(containers: Containers, image: str) -> None:
    out = sh(containers, image, """
        set -e
        python3 --version
        /opt/venv/bin/python -c 'import requests, yaml, bs4, toml; print("venv-imports-ok")'
        pip --version
        uv --version
        node --version
        tsc --version
        ts-node --version
        pdflatex --version | head -n 1
        latexmk -v | head -n 2
        magick -version | head -n 1
        composer-agents count
        cat /etc/composer/agents.count
    """)
    assert "Python 3.13" in out
    assert "venv-imports-ok" in out
    assert "/opt/venv" in out  # pip is the venv's, first on PATH
    assert "Version 5." in out  # typescript@5 (ts-node needs its JavaScript API)
    assert "pdfTeX" in out
    assert "Latexmk" in out
    assert "ImageMagick 7" in out
    assert out.rstrip().splitlines()[-2:] == ["0", "0"]  # no agent templates shipped


def test_ts_node_runs_typescript(containers: Containers, image: str) -> None:
    # With no tsconfig.json, ts-node 10.9 on Node 20.19 takes the ESM path ("Unknown file
    # extension .ts"); a project's tsconfig (module commonjs) is the documented way.
    out = sh(containers, image, """
        mkdir -p /tmp/ts && cd /tmp/ts
        printf '{"compilerOptions": {"module": "commonjs", "strict": true}}\\n' > tsconfig.json
        printf 'const n: number = 6 * 7;\\nconsole.log(`answer ${n}`);\\n' > a.ts
        ts-node a.ts
    """)
    assert "answer 42" in out


def test_latex_document_compiles_to_pdf(containers: Containers, image: str) -> None:
    out = sh(containers, image, r"""
        set -e
        mkdir -p /tmp/doc && cd /tmp/doc
        cat > paper.tex <<'TEX'
\documentclass{article}
\begin{document}
\section{Composer}
Hello from the tools image: $e^{i\pi} + 1 = 0$.
\end{document}
TEX
        latexmk -pdf -interaction=nonstopmode paper.tex >/dev/null
        head -c 5 paper.pdf; echo
        wc -c < paper.pdf
    """)
    lines = out.split()
    assert lines[0] == "%PDF-"
    assert int(lines[1]) > 1000


def test_skills_installed_for_devuser(containers: Containers, image: str) -> None:
    out = sh(containers, image, f"stat -c '%U %n' {SKILLS}/*/SKILL.md {SKILLS}/*/tools/*.py")
    owners = dict(line.split(" ", 1)[::-1] for line in out.splitlines())
    assert set(owners.values()) == {"devuser"}
    assert f"{SKILLS}/imagemagick/tools/imagemagick_tool.py" in owners
    assert f"{SKILLS}/pbr-rendering/tools/pbr_tool.py" in owners
    assert f"{SKILLS}/web-summary/tools/web_summary_tool.py" in owners
    assert not any("/blender/" in path for path in owners)  # not chosen in this recipe


def test_imagemagick_skill_converts_png(containers: Containers, image: str) -> None:
    create, convert, resize, bad = ask_skill(
        containers, image, "imagemagick/tools/imagemagick_tool.py",
        {"action": "create", "output": "/tmp/im/in.png", "width": 64, "height": 48, "color": "#336699"},
        {"action": "convert", "input": "/tmp/im/in.png", "output": "/tmp/im/out.jpg", "quality": 85},
        {"action": "resize", "input": "/tmp/im/in.png", "output": "/tmp/im/half.png", "percent": 50},
        {"action": "no-such-action"},
        prelude="mkdir -p /tmp/im && chown devuser /tmp/im",
    )
    assert create["result"]["format"] == "PNG"
    assert convert["result"]["format"] == "JPEG"
    assert (convert["result"]["width"], convert["result"]["height"]) == (64, 48)
    assert (resize["result"]["width"], resize["result"]["height"]) == (32, 24)
    assert bad["error"]["type"] == "UnknownAction"


def test_pbr_skill_returns_material_values(containers: Containers, image: str) -> None:
    f0, gold, textures = ask_skill(
        containers, image, "pbr-rendering/tools/pbr_tool.py",
        {"action": "fresnel_f0", "ior": 1.5},
        {"action": "material", "preset": "gold", "roughness": 0.5},
        {"action": "generate_textures", "output_dir": "/tmp/pbr", "size": 32, "pattern": "checker"},
        prelude="mkdir -p /tmp/pbr && chown devuser /tmp/pbr",
    )
    assert f0["result"]["f0"] == pytest.approx(0.04)
    assert gold["result"]["metallic"] == 1.0
    assert gold["result"]["alpha"] == pytest.approx(0.25)
    assert gold["result"]["diffuse_albedo"] == [0.0, 0.0, 0.0]
    assert sorted(textures["result"]["files"]) == ["albedo", "height", "metallic", "normal", "roughness"]


def test_web_summary_skill_summarises_local_page(containers: Containers, image: str) -> None:
    page = (
        "<html><head><title>Layer Caching Explained</title><script>var x = 1;</script></head>"
        "<body><nav>Home About Contact</nav><article><h1>Layer caching</h1>"
        "<p>Container images are built from layers. Each layer caching step stores a layer under a key. "
        "A cache key is a hash of everything that shapes the layer.</p>"
        "<p>When the key matches, the layer caching reuses the stored layer. "
        "Changing one module rebuilds the layers after it.</p></article>"
        "<footer>Copyright nobody</footer></body></html>"
    )
    prelude = (
        "mkdir -p /tmp/site && cat > /tmp/site/index.html <<'HTML'\n" + page + "\nHTML\n"
        "cd /tmp/site && (python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &)\n"
        "for i in 1 2 3 4 5 6 7 8 9 10; do python3 -c \"import urllib.request as u; "
        "u.urlopen('http://127.0.0.1:8765/')\" 2>/dev/null && break; sleep 0.5; done"
    )
    (reply,) = ask_skill(containers, image, "web-summary/tools/web_summary_tool.py",
                         {"action": "summarize_url", "url": "http://127.0.0.1:8765/", "sentences": 2},
                         prelude=prelude)
    result = reply["result"]
    assert result["title"] == "Layer Caching Explained"
    assert len(result["summary"]) == 2
    assert all("var x" not in s and "Copyright" not in s for s in result["summary"])
    assert "layer" in " ".join(result["topics"])
    assert result["logseq"].startswith("- [[Layer Caching Explained]]")
