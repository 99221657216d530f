#!/usr/bin/env python3
"""Acceptance run for issue 4 (not in CI: a long, multi-GB build).

Builds recipes/turboflow.toml (every runtime, toolchain, app and skill module at
the seed's values) into a private containers-storage, starts one container from it and checks that every tool of the
seed answers: Python imports, cargo (native and wasm32), nvcc and cuDNN, the LaTeX
engines, Blender, QGIS, KiCad, Chromium, Firefox, ImageMagick, the npm CLIs for each
user, and every skill. Prints a summary (pass/fail per check, image size, build time)
and writes it as JSON.

    python tests/acceptance/acceptance.py [--storage DIR] [--keep] [--recipe FILE]

--storage keeps the storage (and so the layer cache) between runs; --keep leaves
the container running for a look inside. Needs root, buildah, podman, runc,
debootstrap and ~60 GB of free disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.conftest import write_container_config  # noqa: E402

SKILLS = "/home/devuser/.claude/skills"
AS_DEV = "runuser -u devuser --"


def skill(tool: str, *requests: dict) -> str:
    """A shell line sending requests to a skill tool as devuser."""
    lines = "\\n".join(json.dumps(r) for r in requests)
    return f"printf '{lines}\\n' | {AS_DEV} python3 {SKILLS}/{tool}"


# name -> (shell script run in the container as root, text its output must contain)
CHECKS: dict[str, tuple[str, str]] = {
    "python": ("python3 --version", "Python 3.13"),
    "venv imports": ("/opt/venv/bin/python -c 'import numpy, pandas, scipy, matplotlib, seaborn, sklearn, "
                     "requests, bs4, yaml, toml; print(\"imports-ok\")'", "imports-ok"),
    "torch trio": ("/opt/venv/bin/python -c 'import torch, torchvision, torchaudio; "
                   "print(torch.__version__, torchvision.__version__, torchaudio.__version__)'", "2.9.1"),
    "python tools": ("for t in pip virtualenv poetry uv black flake8 mypy pylint pytest; do "
                     "$t --version >/dev/null || exit 1; done; echo tools-ok", "tools-ok"),
    "cargo hello": ("cd /tmp && rm -rf hello && cargo new -q hello && cd hello && cargo run -q", "Hello, world!"),
    "cargo wasm32 cdylib": (
        "cd /tmp && rm -rf w && cargo new -q --lib w && cd w && "
        "printf '[lib]\\ncrate-type = [\"cdylib\"]\\n' >> Cargo.toml && "
        "printf '#[unsafe(no_mangle)]\\npub extern \"C\" fn add(a: i32, b: i32) -> i32 {\\n' > src/lib.rs && "
        "printf '    a + b\\n}\\n' >> src/lib.rs && "
        "cargo build -q --release --target wasm32-unknown-unknown && "
        "head -c 4 target/wasm32-unknown-unknown/release/w.wasm | od -c | head -n 1", "\\0   a   s   m"),
    "rust tools": ("for t in rustfmt cargo-clippy rust-analyzer bat eza rg fd tokei; do "
                   "$t --version >/dev/null || exit 1; done; echo rust-tools-ok", "rust-tools-ok"),
    "nvcc": ("nvcc --version && ls -l /opt/cuda/bin/nvcc && echo CUDA_HOME=$CUDA_HOME", "release 12"),
    "cuda compile": ("cd /tmp && printf '#include <cuda_runtime.h>\\n#include <cudnn.h>\\n#include <cstdio>\\n"
                     "__global__ void k(int *x){*x=42;}\\n"
                     "int main(){printf(\"cudnn %%d\\\\n\", CUDNN_MAJOR);}\\n' > k.cu && "
                     "nvcc -o k k.cu -L/opt/cuda/lib64 -lcudnn && ./k", "cudnn 9"),
    "cuda-gdb": ("cuda-gdb --version | head -n 1", "NVIDIA"),
    "glx is mesa": ("update-alternatives --query glx | sed -n 's/^Value: //p'; ls /usr/lib/x86_64-linux-gnu/libGL.so.1",
                    "mesa-diverted"),
    "pdflatex": ("cd /tmp && printf '\\\\documentclass{article}\\\\begin{document}Hi\\\\end{document}\\n' > p.tex && "
                 "pdflatex -interaction=nonstopmode p.tex >/dev/null && head -c 5 p.pdf", "%PDF-"),
    "xelatex": ("cd /tmp && printf '\\\\documentclass{article}\\\\usepackage{fontspec}' > x.tex && "
                "printf '\\\\begin{document}Hi\\\\end{document}\\n' >> x.tex && "
                "xelatex -interaction=nonstopmode x.tex >/dev/null && head -c 5 x.pdf", "%PDF-"),
    "lualatex": ("cd /tmp && printf '\\\\documentclass{article}\\\\begin{document}Hi\\\\end{document}\\n' > l.tex && "
                 "lualatex -interaction=nonstopmode l.tex >/dev/null && head -c 5 l.pdf", "%PDF-"),
    "biber latexmk": ("biber --version && latexmk -v | head -n 2", "Latexmk"),
    "blender": ("blender -b --factory-startup --version 2>/dev/null | head -n 1", "Blender 4"),
    "qgis_process": ("QT_QPA_PLATFORM=offscreen qgis_process --version 2>/dev/null", "QGIS"),
    "kicad-cli": ("kicad-cli version", "9."),
    "chromium headless": ("cd /tmp && echo '<title>chromium-ok</title>' > c.html && "
                          "chromium --headless --no-sandbox --disable-gpu --dump-dom file:///tmp/c.html 2>/dev/null",
                          "chromium-ok"),
    "firefox": ("firefox-esr --version", "Mozilla Firefox"),
    "imagemagick": ("magick -version | head -n 1", "ImageMagick 7"),
    "claude": ("claude --version", "Claude Code"),
    "npm globals": ("for t in ccusage agentic-flow pm2 tsc ts-node; do $t --version >/dev/null 2>&1 || "
                    "{ echo \"$t failed\"; exit 1; }; done; echo globals-ok", "globals-ok"),
    "playwright chromium": (
        "cd /tmp && NODE_PATH=$(npm root -g) node -e \"const {chromium}=require('playwright');"
        "(async()=>{const b=await chromium.launch({executablePath:process.env.PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH,"
        "args:['--no-sandbox']});const p=await b.newPage();await p.setContent('<title>pw-ok</title>');"
        "console.log(await p.title());await b.close();})()\"", "pw-ok"),
    "gemini (gemini-user)": ("su - gemini-user -c 'gemini --version'", "."),
    "codex (openai-user)": ("su - openai-user -c 'codex --version'", "codex"),
    "zai-user env": ("su - zai-user -c 'echo $ANTHROPIC_BASE_URL'", "https://"),
    "agents count": ("composer-agents count; cat /etc/composer/agents.count", "0"),
    "skill imagemagick": (skill("imagemagick/tools/imagemagick_tool.py",
                                {"action": "create", "output": "/tmp/s/a.png", "width": 8, "height": 8},
                                {"action": "convert", "input": "/tmp/s/a.png", "output": "/tmp/s/a.jpg"}),
                          '"format": "JPEG"'),
    "skill pbr-rendering": (skill("pbr-rendering/tools/pbr_tool.py", {"action": "fresnel_f0", "ior": 1.5}),
                            '"f0": 0.04'),
    "skill web-summary": (
        "mkdir -p /tmp/site && printf '<title>Site</title><p>Composer builds layers. Layers are cached by key. "
        "A key is a hash of inputs.</p>' > /tmp/site/index.html && "
        "(cd /tmp/site && python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &) && sleep 2 && "
        + skill("web-summary/tools/web_summary_tool.py", {"action": "summarize_url", "url": "http://127.0.0.1:8765/"}),
        '"title": "Site"'),
    "skill blender": (skill("blender/tools/blender_tool.py",
                            {"action": "render", "output": "/tmp/s/cube.png", "resolution": [64, 48], "samples": 2}),
                      '"output": "/tmp/s/cube.png"'),
    "skill qgis": (
        "printf '{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":{},"
        "\"geometry\":{\"type\":\"Point\",\"coordinates\":[10,50]}}]}' > /tmp/s/p.geojson && "
        "chown devuser /tmp/s/p.geojson && "
        + skill("qgis/tools/qgis_tool.py", {"action": "buffer", "input": "/tmp/s/p.geojson", "distance": 1,
                                           "output": "/tmp/s/b.gpkg"}),
        '"OUTPUT": "/tmp/s/b.gpkg"'),
    "skill kicad": (skill("kicad/tools/kicad_tool.py", {"action": "version"}), '"result": "9.'),
}


def run(argv: list[str], env: dict[str, str], timeout: float = 7200,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {result.returncode}\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", type=Path, help="keep containers-storage and cache here")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "turboflow.toml")
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    parser.add_argument("--json", type=Path, default=Path("acceptance-summary.json"))
    parser.add_argument("--archive", action="store_true", help="also write the OCI archive (~the image size)")
    args = parser.parse_args()

    folder = args.storage or Path(tempfile.mkdtemp(prefix="composer-acceptance-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **write_container_config(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    out = folder / "out"
    report_file = out / "report.json"
    started = time.monotonic()
    run([sys.executable, "-m", "composer", "--cache-dir", str(folder / "cache"), "build", str(args.recipe),
         "-o", str(out), "--report", str(report_file), *([] if args.archive else ["--no-archive"])],
        env, timeout=6 * 3600)
    build_seconds = time.monotonic() - started
    report = json.loads(report_file.read_text())
    image = report["image"]
    size = json.loads(run(["podman", "image", "inspect", image], env).stdout)[0]["Size"]

    name = "composer-acceptance"  # the container
    run(["podman", "rm", "-f", name], env, check=False)
    # Through the entrypoint, so the start-up hooks run as in a real start.
    run(["podman", "run", "-d", "--name", name, "--network", "none", image, "sleep", "infinity"], env)
    run(["podman", "exec", name, "sh", "-c", "mkdir -p /tmp/s && chown devuser /tmp/s"], env)
    results = []
    for check, (script, expect) in CHECKS.items():
        t0 = time.monotonic()
        # Not a login shell: /etc/profile would reset PATH and drop /opt/venv and /opt/cuda.
        proc = run(["podman", "exec", name, "bash", "-c", script], env, timeout=900, check=False)
        output = (proc.stdout + proc.stderr).strip()
        ok = proc.returncode == 0 and expect in output
        results.append({"check": check, "ok": ok, "seconds": round(time.monotonic() - t0, 1),
                        "output": output[-400:]})
        print(f"{'PASS' if ok else 'FAIL'}  {check:24} {output.splitlines()[-1][:90] if output else ''}", flush=True)
    if not args.keep:
        run(["podman", "rm", "-f", name], env, check=False)

    passed = sum(r["ok"] for r in results)
    summary = {"image": image, "size_bytes": size, "size_gb": round(size / 1e9, 2),
               "build_seconds": round(build_seconds), "build": report.get("summary"),
               "passed": passed, "failed": len(results) - passed, "checks": results}
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"\nimage {image}: {summary['size_gb']} GB, built in {summary['build_seconds']} s")
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
