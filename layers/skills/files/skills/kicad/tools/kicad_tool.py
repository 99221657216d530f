#!/usr/bin/env python3
"""KiCad skill: schematic and board exports and checks with `kicad-cli` (KiCad 8/9).

Line-delimited JSON on stdin/stdout, e.g.
  {"action": "export_netlist", "schematic": "amp.kicad_sch", "output": "amp.net"}
  {"action": "export_bom", "schematic": "amp.kicad_sch", "output": "bom.csv"}
  {"action": "export_schematic", "schematic": "amp.kicad_sch", "output": "amp.pdf"}
  {"action": "erc", "schematic": "amp.kicad_sch"}
  {"action": "export_pcb", "board": "amp.kicad_pcb", "format": "gerbers", "output": "gerbers/"}
  {"action": "drc", "board": "amp.kicad_pcb"}
"""

import json
import os
import re
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "..", "..", "lib"), "/usr/local/lib/composer-skills"]
from skillio import SkillError, find_program, param, run, safe_path, serve  # noqa: E402

NETLIST_FORMATS = ("kicadsexpr", "kicadxml", "cadstar", "orcadpcb2", "spice", "spicemodel",
                   "pads", "allegro")
# format -> (kicad-cli subcommand, output is a directory, needs --layers)
PCB_FORMATS = {"gerbers": ("gerbers", True, False), "drill": ("drill", True, False),
               "pdf": ("pdf", False, True), "svg": ("svg", False, True),
               "dxf": ("dxf", False, True), "step": ("step", False, False),
               "pos": ("pos", False, False), "glb": ("glb", False, False),
               "vrml": ("vrml", False, False)}
_LAYER = re.compile(r"^[A-Za-z0-9_.*]+$")


def _cli(args: list, timeout: float = 600) -> str:
    return run([find_program("kicad-cli")] + args, timeout=timeout).stdout


def _source(request: dict, name: str, suffix: str) -> str:
    path = safe_path(request, name)
    if not path.endswith(suffix):
        raise SkillError(f"{name} must be a {suffix} file", "InvalidRequest")
    if not os.path.isfile(path):
        raise SkillError(f"{name}: no such file: {path}", "FileNotFound")
    return path


def _output(request: dict, is_dir: bool = False) -> str:
    path = safe_path(request, "output")
    os.makedirs(path if is_dir else (os.path.dirname(os.path.abspath(path))), exist_ok=True)
    return path


def _written(path: str) -> dict:
    if os.path.isdir(path):
        files = sorted(os.listdir(path))
        return {"output": path, "files": files}
    if not os.path.exists(path):
        raise SkillError(f"kicad-cli reported success but wrote no {path}", "CommandFailed")
    return {"output": path, "bytes": os.path.getsize(path)}


def _layers(request: dict) -> list:
    layers = param(request, "layers", list, None)
    if layers is None:
        return []
    if not all(isinstance(x, str) and _LAYER.match(x) for x in layers):
        raise SkillError("layers must be names such as F.Cu, B.Cu, Edge.Cuts", "InvalidRequest")
    return ["--layers", ",".join(layers)]


def version(request: dict) -> str:
    return _cli(["version"]).strip()


def export_netlist(request: dict) -> dict:
    sch = _source(request, "schematic", ".kicad_sch")
    fmt = param(request, "format", str, "kicadsexpr")
    if fmt not in NETLIST_FORMATS:
        raise SkillError(f"format must be one of {', '.join(NETLIST_FORMATS)}", "InvalidRequest")
    out = _output(request)
    _cli(["sch", "export", "netlist", "--format", fmt, "--output", out, sch])
    return _written(out)


def export_bom(request: dict) -> dict:
    sch = _source(request, "schematic", ".kicad_sch")
    out = _output(request)
    args = ["sch", "export", "bom", "--output", out]
    fields = param(request, "fields", list, None)
    if fields is not None:
        if not all(isinstance(f, str) and "," not in f for f in fields):
            raise SkillError("fields must be field names without commas", "InvalidRequest")
        args += ["--fields", ",".join(fields)]
    _cli(args + [sch])
    return _written(out)


def export_schematic(request: dict) -> dict:
    sch = _source(request, "schematic", ".kicad_sch")
    fmt = param(request, "format", str, "pdf")
    if fmt not in ("pdf", "svg", "dxf"):
        raise SkillError("format must be pdf, svg or dxf", "InvalidRequest")
    out = _output(request, is_dir=fmt != "pdf")
    _cli(["sch", "export", fmt, "--output", out, sch])
    return _written(out)


def export_pcb(request: dict) -> dict:
    board = _source(request, "board", ".kicad_pcb")
    fmt = param(request, "format", str)
    if fmt not in PCB_FORMATS:
        raise SkillError(f"format must be one of {', '.join(PCB_FORMATS)}", "InvalidRequest")
    sub, is_dir, needs_layers = PCB_FORMATS[fmt]
    layers = _layers(request)
    if needs_layers and not layers:
        layers = ["--layers", "F.Cu,B.Cu,Edge.Cuts"]
    out = _output(request, is_dir=is_dir)
    target = out.rstrip("/") + "/" if is_dir else out
    _cli(["pcb", "export", sub, "--output", target] + layers + [board])
    return _written(out)


def _check(kind: str, args: list, request: dict) -> dict:
    out = param(request, "output", str, None)
    with tempfile.TemporaryDirectory() as tmp:
        report = out or os.path.join(tmp, f"{kind}.json")
        _cli(args[:2] + ["--format", "json", "--severity-all", "--output", report] + args[2:])
        with open(report, encoding="utf-8") as fh:
            data = json.load(fh)
    items = [v for key in ("violations", "unconnected_items", "schematic_parity")
             for v in data.get(key, [])]
    for sheet in data.get("sheets", []):
        items += sheet.get("violations", [])
    by_severity: dict = {}
    for item in items:
        by_severity[item.get("severity", "unknown")] = by_severity.get(item.get("severity", "unknown"), 0) + 1
    return {"report": out, "violations": len(items), "by_severity": by_severity,
            "items": [{"type": i.get("type"), "severity": i.get("severity"),
                       "description": i.get("description")} for i in items[:100]]}


def erc(request: dict) -> dict:
    return _check("erc", ["sch", "erc", _source(request, "schematic", ".kicad_sch")], request)


def drc(request: dict) -> dict:
    return _check("drc", ["pcb", "drc", _source(request, "board", ".kicad_pcb")], request)


ACTIONS = {"version": version, "export_netlist": export_netlist, "export_bom": export_bom,
           "export_schematic": export_schematic, "export_pcb": export_pcb,
           "erc": erc, "drc": drc}

if __name__ == "__main__":
    serve(ACTIONS)
