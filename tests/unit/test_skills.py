"""The skill tools of layers/skills, run directly with Python: request handling (good
request, bad JSON, unknown action, missing program), PBR numbers against hand-computed
values, ImageMagick on a real PNG, web-summary against a page served on 127.0.0.1.
Stand-in programs (blender, qgis_process, kicad-cli) check the command lines built."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SKILLS = Path(__file__).resolve().parents[2] / "layers" / "skills" / "files" / "skills"
TOOLS = {
    "web-summary": SKILLS / "web-summary" / "tools" / "web_summary_tool.py",
    "blender": SKILLS / "blender" / "tools" / "blender_tool.py",
    "qgis": SKILLS / "qgis" / "tools" / "qgis_tool.py",
    "kicad": SKILLS / "kicad" / "tools" / "kicad_tool.py",
    "imagemagick": SKILLS / "imagemagick" / "tools" / "imagemagick_tool.py",
    "pbr-rendering": SKILLS / "pbr-rendering" / "tools" / "pbr_tool.py",
}
# A good request per tool that needs no external program or fails cleanly without one.
NEEDS_PROGRAM = {"blender": "blender", "qgis": "qgis_process", "kicad": "kicad-cli",
                 "imagemagick": "convert"}


def ask(tool: str, *requests: Any, env: dict[str, str] | None = None,
        cwd: Path | None = None, timeout: float = 60) -> list[dict[str, Any]]:
    """Send requests (dicts, or raw strings) to a tool; one reply per non-blank line."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in requests]
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, str(TOOLS[tool])], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(replies) == len([line for line in lines if line.strip()]), proc.stdout
    return replies


def load(tool: str) -> ModuleType:
    """Import a tool as a module (for its pure functions)."""
    spec = importlib.util.spec_from_file_location(f"skill_{tool.replace('-', '_')}", TOOLS[tool])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """An empty folder for stand-in programs (and an empty PATH)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def stub(bin_dir: Path, name: str, body: str) -> None:
    """A stand-in program written in Python: argv in sys.argv, stdin as usual."""
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    path.chmod(0o755)


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, colour type, raw scanlines) of a non-interlaced 8-bit PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    return header[0], header[1], header[3], zlib.decompress(idat)


# ---- every tool: the request loop -------------------------------------------------------

@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_bad_json_unknown_action_and_non_object_do_not_stop_the_loop(tool: str) -> None:
    bad, unknown, listing, not_object, no_action = ask(
        tool, "{not json", {"action": "explode"}, {"action": "list_actions"}, "[1, 2]", {"x": 1})
    assert bad["error"]["type"] == "JSONDecodeError"
    assert unknown["error"]["type"] == "UnknownAction"
    assert "explode" in unknown["error"]["message"]
    assert "list_actions" in listing["result"]
    assert not_object["error"]["type"] == "InvalidRequest"
    assert no_action["error"]["type"] == "UnknownAction"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_blank_lines_are_skipped_and_every_reply_is_one_line(tool: str) -> None:
    replies = ask(tool, "", {"action": "list_actions"}, "   ", {"action": "list_actions"})
    assert [sorted(r) for r in replies] == [["result"], ["result"]]


@pytest.mark.parametrize("tool", sorted(NEEDS_PROGRAM))
def test_missing_program_is_an_error_object(tool: str, bin_dir: Path) -> None:
    requests = {"blender": {"action": "version"}, "qgis": {"action": "version"},
                "kicad": {"action": "version"}, "imagemagick": {"action": "version"}}
    missing, again = ask(tool, requests[tool], requests[tool], env={"PATH": str(bin_dir)})
    assert missing["error"]["type"] == "MissingProgram"
    assert NEEDS_PROGRAM[tool] in missing["error"]["message"]
    assert again == missing


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_missing_parameter_is_invalid_request(tool: str) -> None:
    action = {"web-summary": "summarize_url", "blender": "scene_info", "qgis": "run",
              "kicad": "export_netlist", "imagemagick": "convert", "pbr-rendering": "fresnel_f0"}[tool]
    (reply,) = ask(tool, {"action": action})
    assert reply["error"]["type"] == "InvalidRequest"


def test_skill_manifests_have_front_matter_naming_the_skill() -> None:
    for name, tool in TOOLS.items():
        text = (SKILLS / name / "SKILL.md").read_text()
        assert text.startswith("---\n")
        front = text.split("---\n")[1]
        fields = dict(line.split(": ", 1) for line in front.strip().splitlines())
        assert fields["name"] == name
        assert fields["description"].startswith('"') and len(fields["description"]) > 40
        assert tool.name in text
        assert os.access(tool, os.X_OK)


# ---- pbr-rendering: physically based numbers ------------------------------------------

def test_fresnel_f0_of_dielectrics_and_a_conductor() -> None:
    glass, water, gold_like, bad = ask(
        "pbr-rendering",
        {"action": "fresnel_f0", "ior": 1.5},
        {"action": "fresnel_f0", "ior": 1.33},
        {"action": "fresnel_f0", "ior": 0.27, "extinction": 2.78},
        {"action": "fresnel_f0", "ior": -1},
    )
    # ((1.5 - 1) / (1.5 + 1))^2 = (0.5 / 2.5)^2 = 0.04
    assert glass["result"]["f0"] == pytest.approx(0.04)
    assert glass["result"]["kind"] == "dielectric"
    # (0.33 / 2.33)^2 = 0.141631^2 = 0.0200594
    assert water["result"]["f0"] == pytest.approx(0.0200594, abs=1e-6)
    # ((0.27-1)^2 + 2.78^2) / ((0.27+1)^2 + 2.78^2) = (0.5329 + 7.7284) / (1.6129 + 7.7284) = 0.884374
    assert gold_like["result"]["f0"] == pytest.approx(8.2613 / 9.3413, abs=1e-6)
    assert gold_like["result"]["kind"] == "conductor"
    assert bad["error"]["type"] == "InvalidRequest"


def test_material_mixes_f0_and_albedo_by_metallic() -> None:
    half, copper, srgb, wrong = ask(
        "pbr-rendering",
        {"action": "material", "base_color": [0.5, 0.5, 0.5], "metallic": 0.5, "roughness": 0.5, "ior": 1.5},
        {"action": "material", "preset": "copper", "roughness": 0.2},
        {"action": "material", "base_color": "#808080", "metallic": 0},
        {"action": "material", "base_color": [2, 0, 0]},
    )
    r = half["result"]
    # F0 = 0.04 * (1 - 0.5) + 0.5 * 0.5 = 0.27 ; diffuse = 0.5 * (1 - 0.5) = 0.25
    assert r["f0"] == pytest.approx([0.27, 0.27, 0.27])
    assert r["diffuse_albedo"] == pytest.approx([0.25, 0.25, 0.25])
    # alpha = 0.5^2 = 0.25 ; GGX peak D(n.h = 1) = 1 / (pi * alpha^2) = 1 / (pi * 0.0625) = 5.092958
    assert r["alpha"] == pytest.approx(0.25)
    assert r["specular_peak_d"] == pytest.approx(5.092958, abs=1e-6)
    c = copper["result"]
    assert c["metallic"] == 1.0
    assert c["f0"] == pytest.approx([0.955, 0.638, 0.538])
    assert c["diffuse_albedo"] == [0.0, 0.0, 0.0]
    assert c["alpha"] == pytest.approx(0.04)
    # sRGB 128/255 = 0.501961 -> linear ((0.501961 + 0.055) / 1.055)^2.4 = 0.215861
    assert srgb["result"]["base_color"] == pytest.approx([0.215861] * 3, abs=1e-6)
    assert srgb["result"]["base_color_srgb_hex"] == "#808080"
    assert wrong["error"]["type"] == "InvalidRequest"


def test_brdf_terms_match_hand_computation() -> None:
    (reply,) = ask("pbr-rendering", {
        "action": "brdf", "base_color": [0.8, 0.1, 0.1], "metallic": 0, "roughness": 0.5,
        "n_dot_l": 0.8, "n_dot_v": 0.9, "n_dot_h": 0.95, "v_dot_h": 0.9})
    r = reply["result"]
    # alpha = 0.25, a2 = 0.0625; D = a2 / (pi * (0.95^2 * (a2 - 1) + 1)^2)
    #   = 0.0625 / (pi * 0.15390625^2) = 0.839881
    assert r["d"] == pytest.approx(0.839881, abs=1e-6)
    # G1(x) = 2x / (x + sqrt(a2 + (1 - a2) x^2)): G1(0.8) = 0.994048, G1(0.9) = 0.993670
    assert r["g"] == pytest.approx(0.994048 * 0.993670, abs=1e-5)
    # F = 0.04 + 0.96 * (1 - 0.9)^5 = 0.0400096 ; spec = D G F / (4 * 0.8 * 0.9)
    spec = 0.839881 * 0.994048 * 0.993670 * 0.0400096 / 2.88
    assert r["specular"] == pytest.approx([spec] * 3, abs=1e-5)
    # diffuse = (1 - F) * base / pi: red 0.9599904 * 0.8 / pi = 0.244460
    assert r["diffuse"][0] == pytest.approx(0.9599904 * 0.8 / 3.141592653589793, abs=1e-6)


def test_generated_textures_are_valid_pngs_with_the_material_values(tmp_path: Path) -> None:
    (reply,) = ask("pbr-rendering", {
        "action": "generate_textures", "output_dir": str(tmp_path / "maps"), "size": 16,
        "pattern": "checker", "scale": 4, "metallic": 0.5, "roughness": 0.4, "variation": 0})
    files = reply["result"]["files"]
    assert sorted(files) == ["albedo", "height", "metallic", "normal", "roughness"]
    width, height, colour, raw = read_png(Path(files["metallic"]))
    assert (width, height, colour) == (16, 16, 0)
    rows = [raw[i * 17:(i + 1) * 17] for i in range(16)]
    assert all(row[0] == 0 and set(row[1:]) == {round(0.5 * 255)} for row in rows)
    _, _, colour, raw = read_png(Path(files["roughness"]))
    assert set(raw[1:17]) == {round(0.4 * 255)}
    _, _, colour, raw = read_png(Path(files["normal"]))
    assert colour == 2 and len(raw) == 16 * (1 + 16 * 3)
    _, _, _, raw = read_png(Path(files["height"]))
    assert set(raw[1:17]) == {0, 255}  # a checkerboard of 4-pixel cells


def test_texture_size_is_bounded() -> None:
    (reply,) = ask("pbr-rendering", {"action": "generate_textures", "output_dir": "/tmp/x", "size": 100000})
    assert reply["error"]["type"] == "InvalidRequest"


# ---- imagemagick: a real PNG ------------------------------------------------------------

@pytest.mark.needs("convert", "identify")
def test_imagemagick_converts_resizes_and_reports_a_real_png(tmp_path: Path) -> None:
    png = tmp_path / "in.png"
    pbr = load("pbr-rendering")
    png.write_bytes(pbr.png_bytes(40, 30, [[200, 30, 30] * 40] * 30, 3))
    info, jpg, small, exact, missing, batch = ask(
        "imagemagick",
        {"action": "info", "path": str(png)},
        {"action": "convert", "input": str(png), "output": str(tmp_path / "out.jpg"), "quality": 90},
        {"action": "resize", "input": str(png), "output": str(tmp_path / "small.png"), "width": 20},
        {"action": "resize", "input": str(png), "output": str(tmp_path / "exact.png"),
         "width": 10, "height": 10, "keep_aspect": False},
        {"action": "convert", "input": str(tmp_path / "nope.png"), "output": str(tmp_path / "x.png")},
        {"action": "batch", "inputs": [str(png), str(tmp_path / "nope.png")],
         "output_dir": str(tmp_path / "gifs"), "format": "gif"},
    )
    assert (info["result"]["format"], info["result"]["width"], info["result"]["height"]) == ("PNG", 40, 30)
    assert jpg["result"]["format"] == "JPEG"
    assert (tmp_path / "out.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (small["result"]["width"], small["result"]["height"]) == (20, 15)
    assert (exact["result"]["width"], exact["result"]["height"]) == (10, 10)
    assert missing["error"]["type"] == "FileNotFound"
    assert [c["format"] for c in batch["result"]["converted"]] == ["GIF"]
    assert batch["result"]["failed"][0]["type"] == "FileNotFound"


def test_imagemagick_rejects_option_like_and_list_paths(tmp_path: Path) -> None:
    bad_color, at_file, no_size = ask(
        "imagemagick",
        {"action": "create", "output": str(tmp_path / "a.png"), "width": 4, "height": 4, "color": "red;rm"},
        {"action": "info", "path": "@/etc/passwd"},
        {"action": "resize", "input": __file__, "output": str(tmp_path / "b.png")},
    )
    assert bad_color["error"]["type"] == "InvalidRequest"
    assert at_file["error"]["type"] == "InvalidRequest"
    assert no_size["error"]["type"] == "InvalidRequest"


def test_imagemagick_failed_command_is_an_error_object(tmp_path: Path, bin_dir: Path) -> None:
    stub(bin_dir, "convert", "sys.stderr.write('convert: no decode delegate\\n'); sys.exit(1)")
    (tmp_path / "in.png").write_bytes(b"not really")
    (reply,) = ask("imagemagick", {"action": "convert", "input": str(tmp_path / "in.png"),
                                   "output": str(tmp_path / "o.jpg")}, env={"PATH": str(bin_dir)})
    assert reply["error"]["type"] == "CommandFailed"
    assert "no decode delegate" in reply["error"]["message"]


# ---- web-summary: a page on 127.0.0.1 ---------------------------------------------------

ARTICLE = """<!doctype html><html><head><meta charset="utf-8"><title>Solar Power &amp; Storage</title>
<style>body { color: red }</style><script>var tracking = "Solar panels are great sentences";</script>
</head><body><nav>Home | Products | Solar panels shop</nav><header>Site banner text here</header>
<article><h1>Solar power and battery storage</h1>
<p>Solar power converts sunlight into electricity with photovoltaic panels. Solar panels on
roofs now produce cheap electricity in many countries.</p>
<p>Battery storage keeps solar electricity for the evening. A home battery stores the midday
surplus of the solar panels and releases it after sunset.</p>
<h2>Costs</h2>
<p>The price of solar panels fell by ninety percent in a decade. Battery storage prices are
falling too, which makes solar power with storage competitive.</p>
<ul><li>Grid operators value battery storage for frequency control and peak demand.</li></ul>
</article><footer>Copyright 2025 Example footer words</footer></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        pages = {"/": ("text/html; charset=utf-8", ARTICLE),
                 "/notes.txt": ("text/plain", "Plain notes about wind turbines and wind farms. "
                                "Wind turbines turn wind into electricity for the grid.")}
        if self.path not in pages:
            self.send_error(404, "Not Found")
            return
        kind, body = pages[self.path]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# No proxy for the local site; a dead proxy for everything else, so "not reachable"
# is tested without depending on this machine's network.
LOCAL = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
         "http_proxy": "", "HTTP_PROXY": ""}


def test_web_summary_summarises_a_local_page(site: str) -> None:
    (reply,) = ask("web-summary", {"action": "summarize_url", "url": site + "/", "sentences": 3,
                                   "topics": 5}, env=LOCAL)
    r = reply["result"]
    assert r["title"] == "Solar Power & Storage"
    assert len(r["summary"]) == 3
    text = " ".join(r["summary"])
    for junk in ("tracking", "Products", "banner", "Copyright", "color: red"):
        assert junk not in text
    assert all(s in ARTICLE.replace("\n", " ") for s in r["summary"])  # extractive, in page order
    order = [ARTICLE.replace("\n", " ").index(s) for s in r["summary"]]
    assert order == sorted(order)
    assert r["topics"][0] == "solar" or "solar" in r["topics"][0]
    assert any("battery" in t or "storage" in t for t in r["topics"])
    assert "Costs" in r["headings"]
    assert r["logseq"].splitlines()[0] == "- [[Solar Power & Storage]]"
    assert f"source:: {site}/" in r["logseq"]
    assert "tags:: [[" in r["logseq"]


def test_web_summary_plain_text_http_errors_and_unreachable(site: str) -> None:
    text, missing, refused, ftp = ask(
        "web-summary",
        {"action": "summarize_url", "url": site + "/notes.txt", "title": "Wind", "sentences": 1},
        {"action": "summarize_url", "url": site + "/missing"},
        {"action": "summarize_url", "url": f"http://127.0.0.1:{closed_port()}/", "timeout": 5},
        {"action": "summarize_url", "url": "ftp://example.org/file"},
        env=LOCAL)
    assert text["result"]["title"] == "Wind"
    assert "wind" in text["result"]["topics"][0]
    assert missing["error"]["type"] == "HTTPError" and "404" in missing["error"]["message"]
    assert refused["error"]["type"] == "Unreachable"
    assert ftp["error"]["type"] == "InvalidRequest"


def test_youtube_transcript_degrades_to_a_clear_error() -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    reply, bad_id = ask("web-summary",
                        {"action": "youtube_transcript", "url": "https://youtu.be/dQw4w9WgXcQ", "timeout": 5},
                        {"action": "youtube_transcript", "video_id": "short"},
                        env={"https_proxy": dead, "HTTPS_PROXY": dead, "NO_PROXY": "", "no_proxy": ""})
    assert reply["error"]["type"] == "Unreachable"
    assert "youtube.com" in reply["error"]["message"]
    assert bad_id["error"]["type"] == "InvalidRequest"


def test_summarize_text_and_logseq_block() -> None:
    (reply,) = ask("web-summary", {"action": "summarize_text", "title": "Notes", "sentences": 1,
                                   "text": "Rust compiles to WebAssembly with wasm-ld. "
                                           "Cargo builds the crate for the wasm32 target.\n\n"
                                           "The weather was fine today and nothing else happened."})
    r = reply["result"]
    assert len(r["summary"]) == 1
    assert r["logseq"].startswith("- [[Notes]]\n")


def test_web_summary_extraction_helpers() -> None:
    ws = load("web-summary")
    assert ws.split_sentences("One two three four. Five six seven eight! Tiny. Nine ten eleven twelve?") == [
        "One two three four.", "Five six seven eight!", "Nine ten eleven twelve?"]
    assert ws.topics("cache key cache key cache layer layer build", 2) == ["cache key", "layer"]


# ---- blender, qgis, kicad: command lines through stand-in programs ---------------------

def test_blender_passes_parameters_as_json_data_not_code(tmp_path: Path, bin_dir: Path) -> None:
    stub(bin_dir, "blender", f"""
log = open({str(tmp_path / 'argv.json')!r}, 'a')
log.write(json.dumps(sys.argv[1:]) + '\\n')
if '--version' in sys.argv:
    print('Blender 4.3.2'); sys.exit(0)
params = json.loads(os.environ['COMPOSER_SKILL_PARAMS'])
assert 'COMPOSER_SKILL_PARAMS' in open(sys.argv[sys.argv.index('--python') + 1]).read()
if params['op'] == 'render':
    open(params['output'], 'wb').write(b'png')
print('noise line')
print('SKILLRESULT:' + json.dumps({{'echo': params}}))""")
    scene = tmp_path / "s.blend"
    scene.write_bytes(b"BLENDER")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    version, render, bad_engine, bad_object, missing = ask(
        "blender",
        {"action": "version"},
        {"action": "render", "blend_file": str(scene), "output": str(tmp_path / "r" / "out.png"),
         "samples": 4, "resolution": [64, 32]},
        {"action": "render", "output": "x.png", "engine": "'; import os; '"},
        {"action": "create_scene", "output": str(tmp_path / "n.blend"), "objects": [{"type": "teapot"}]},
        {"action": "scene_info", "blend_file": str(tmp_path / "none.blend")},
        env=env)
    assert version["result"] == "Blender 4.3.2"
    echo = render["result"]["echo"]
    assert echo["op"] == "render" and echo["samples"] == 4 and echo["resolution"] == [64, 32]
    assert echo["has_file"] is True
    argv = json.loads((tmp_path / "argv.json").read_text().splitlines()[1])
    assert argv[:2] == ["-b", str(scene)]
    assert "--factory-startup" in argv
    script = argv[argv.index("--python") + 1]
    assert script.endswith(".py") and not Path(script).exists()  # a temporary file, removed
    assert bad_engine["error"]["type"] == "InvalidRequest"
    assert bad_object["error"]["type"] == "InvalidRequest"
    assert missing["error"]["type"] == "FileNotFound"


def test_qgis_runs_algorithms_with_json_on_stdin(tmp_path: Path, bin_dir: Path) -> None:
    stub(bin_dir, "qgis_process", """
args = sys.argv[1:]
assert os.environ['QT_QPA_PLATFORM'] == 'offscreen'
if args == ['--json', 'list']:
    print(json.dumps({'providers': {'native': {'algorithms': {
        'native:buffer': {'name': 'Buffer'}, 'native:centroids': {'name': 'Centroids'}}},
        'gdal': {'algorithms': {'gdal:buffervectors': {'name': 'Buffer vectors'}}}}}))
elif args[:2] == ['--json', 'run'] and args[3] == '-':
    payload = json.load(sys.stdin)
    print('banner text before json')
    print(json.dumps({'results': {'OUTPUT': payload['inputs']['OUTPUT']}, 'inputs': payload,
                      'algorithm': args[2]}))
else:
    sys.stderr.write('bad args %r' % args); sys.exit(2)""")
    layer = tmp_path / "roads.geojson"
    layer.write_text('{"type": "FeatureCollection", "features": []}')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    listing, native, buffered, bad_alg, bad_crs, missing = ask(
        "qgis",
        {"action": "list_algorithms", "search": "buffer"},
        {"action": "list_algorithms", "provider": "native"},
        {"action": "buffer", "input": str(layer), "distance": 10, "output": str(tmp_path / "b.gpkg")},
        {"action": "run", "algorithm": "native:buffer; rm -rf /"},
        {"action": "reproject", "input": str(layer), "target_crs": "$(id)", "output": "x.gpkg"},
        {"action": "buffer", "input": str(tmp_path / "none.geojson"), "distance": 1, "output": "x.gpkg"},
        env=env)
    assert listing["result"]["algorithms"] == {"native:buffer": "Buffer", "gdal:buffervectors": "Buffer vectors"}
    assert native["result"]["count"] == 2
    assert buffered["result"]["algorithm"] == "native:buffer"
    assert buffered["result"]["results"] == {"OUTPUT": str(tmp_path / "b.gpkg")}
    assert bad_alg["error"]["type"] == "InvalidRequest"
    assert bad_crs["error"]["type"] == "InvalidRequest"
    assert missing["error"]["type"] == "FileNotFound"


def test_kicad_builds_kicad_cli_command_lines(tmp_path: Path, bin_dir: Path) -> None:
    stub(bin_dir, "kicad-cli", f"""
args = sys.argv[1:]
open({str(tmp_path / 'argv.json')!r}, 'a').write(json.dumps(args) + '\\n')
if args == ['version']:
    print('9.0.2'); sys.exit(0)
out = args[args.index('--output') + 1]
if out.endswith('/'):
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, 'board-F_Cu.gbr'), 'w').write('G04*')
elif args[1] in ('erc', 'drc'):
    json.dump({{'sheets': [{{'violations': [{{'type': 'pin_not_connected', 'severity': 'error',
               'description': 'Pin not connected'}}]}}]}}, open(out, 'w'))
else:
    open(out, 'w').write('(export)')""")
    sch = tmp_path / "amp.kicad_sch"
    sch.write_text("(kicad_sch)")
    board = tmp_path / "amp.kicad_pcb"
    board.write_text("(kicad_pcb)")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    version, netlist, bom, gerbers, erc, wrong_format, wrong_file = ask(
        "kicad",
        {"action": "version"},
        {"action": "export_netlist", "schematic": str(sch), "output": str(tmp_path / "amp.xml"), "format": "kicadxml"},
        {"action": "export_bom", "schematic": str(sch), "output": str(tmp_path / "bom.csv"),
         "fields": ["Reference", "Value"]},
        {"action": "export_pcb", "board": str(board), "format": "gerbers", "output": str(tmp_path / "fab")},
        {"action": "erc", "schematic": str(sch)},
        {"action": "export_netlist", "schematic": str(sch), "output": "x", "format": "exe"},
        {"action": "export_netlist", "schematic": str(board), "output": "x"},
        env=env)
    assert version["result"] == "9.0.2"
    assert netlist["result"]["bytes"] > 0
    assert bom["result"]["output"] == str(tmp_path / "bom.csv")
    assert gerbers["result"]["files"] == ["board-F_Cu.gbr"]
    assert erc["result"]["violations"] == 1
    assert erc["result"]["by_severity"] == {"error": 1}
    assert wrong_format["error"]["type"] == "InvalidRequest"
    assert wrong_file["error"]["type"] == "InvalidRequest"
    calls = [json.loads(line) for line in (tmp_path / "argv.json").read_text().splitlines()]
    assert calls[1] == ["sch", "export", "netlist", "--format", "kicadxml", "--output",
                        str(tmp_path / "amp.xml"), str(sch)]
    assert calls[2][-3:] == ["--fields", "Reference,Value", str(sch)]
    assert calls[3][:5] == ["pcb", "export", "gerbers", "--output", str(tmp_path / "fab") + "/"]
    assert calls[4][:5] == ["sch", "erc", "--format", "json", "--severity-all"]
