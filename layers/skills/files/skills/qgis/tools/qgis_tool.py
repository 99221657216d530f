#!/usr/bin/env python3
"""QGIS skill: geoprocessing through `qgis_process` (QGIS 3.22+), headless.

Line-delimited JSON on stdin/stdout, e.g.
  {"action": "list_algorithms", "search": "buffer"}
  {"action": "algorithm_help", "algorithm": "native:buffer"}
  {"action": "run", "algorithm": "native:centroids",
   "parameters": {"INPUT": "parcels.geojson", "OUTPUT": "centroids.gpkg"}}
  {"action": "buffer", "input": "roads.geojson", "distance": 10, "output": "roads_10m.gpkg"}
  {"action": "reproject", "input": "a.geojson", "target_crs": "EPSG:3857", "output": "b.gpkg"}
Parameters go to qgis_process as JSON on stdin (`run ALG -`), never on a shell line.
"""

import json
import os
import re
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "..", "..", "lib"), "/usr/local/lib/composer-skills"]
from skillio import SkillError, find_program, param, run, safe_path, serve  # noqa: E402

_ALGORITHM = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_]+$")
_CRS = re.compile(r"^(EPSG|ESRI|IAU_2015|OGC):[0-9A-Za-z_]+$")
# Headless: no X display is needed for processing.
QGIS_ENV = {"QT_QPA_PLATFORM": "offscreen", "QGIS_NO_OVERRIDE_IMPORT": "1"}


def _qgis(args: list, stdin: str = None, timeout: float = 1800) -> dict:
    proc = run([find_program("qgis_process")] + args, timeout=timeout, env=QGIS_ENV, input=stdin)
    text = proc.stdout
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        raise SkillError("qgis_process printed no JSON: " + text.strip()[-1500:], "CommandFailed") from None


def _algorithm(request: dict) -> str:
    alg = param(request, "algorithm", str)
    if not _ALGORITHM.match(alg):
        raise SkillError(f"not an algorithm id (provider:name): {alg!r}", "InvalidRequest")
    return alg


def version(request: dict) -> str:
    proc = run([find_program("qgis_process"), "--version"], timeout=120, env=QGIS_ENV)
    return proc.stdout.strip()


def list_algorithms(request: dict) -> dict:
    """Algorithm ids and names, optionally filtered by provider and a search word."""
    provider = param(request, "provider", str, None)
    search = param(request, "search", str, "").lower()
    listing = _qgis(["--json", "list"])
    found = {}
    for prov_id, prov in listing.get("providers", {}).items():
        if provider and prov_id != provider:
            continue
        for alg_id, alg in prov.get("algorithms", {}).items():
            name = alg.get("name", "")
            if search in alg_id.lower() or search in name.lower():
                found[alg_id] = name
    return {"count": len(found), "algorithms": found}


def algorithm_help(request: dict) -> dict:
    data = _qgis(["--json", "help", _algorithm(request)])
    return {"algorithm": data.get("algorithm_details", {}),
            "parameters": {k: {"description": v.get("description"), "type": v.get("raw_definition", {}).get("parameter_type")}
                           for k, v in data.get("parameters", {}).items()},
            "outputs": list(data.get("outputs", {}))}


def _run(alg: str, inputs: dict, request: dict) -> dict:
    for key in inputs:
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise SkillError(f"not a parameter name: {key!r}", "InvalidRequest")
    payload = {"inputs": inputs}
    for key in ("ellipsoid", "distance_units", "area_units", "project_path"):
        if key in request:
            payload[key] = param(request, key, str)
    data = _qgis(["--json", "run", alg, "-"], stdin=json.dumps(payload))
    return {"algorithm": alg, "results": data.get("results", {}),
            "log": (data.get("log") or {}).get("info", "")[-2000:] if isinstance(data.get("log"), dict) else ""}


def run_algorithm(request: dict) -> dict:
    return _run(_algorithm(request), param(request, "parameters", dict, {}), request)


def _existing(request: dict, name: str) -> str:
    path = safe_path(request, name)
    if "|" not in path and not os.path.exists(path):
        raise SkillError(f"{name}: no such file: {path}", "FileNotFound")
    return path


def buffer(request: dict) -> dict:
    distance = param(request, "distance", (int, float))
    inputs = {"INPUT": _existing(request, "input"), "DISTANCE": distance,
              "SEGMENTS": param(request, "segments", int, 8),
              "DISSOLVE": param(request, "dissolve", bool, False),
              "OUTPUT": safe_path(request, "output")}
    return _run("native:buffer", inputs, request)


def reproject(request: dict) -> dict:
    crs = param(request, "target_crs", str)
    if not _CRS.match(crs):
        raise SkillError(f"target_crs must look like EPSG:4326, not {crs!r}", "InvalidRequest")
    inputs = {"INPUT": _existing(request, "input"), "TARGET_CRS": crs,
              "OUTPUT": safe_path(request, "output")}
    return _run("native:reprojectlayer", inputs, request)


ACTIONS = {"version": version, "list_algorithms": list_algorithms,
           "algorithm_help": algorithm_help, "run": run_algorithm,
           "buffer": buffer, "reproject": reproject}

if __name__ == "__main__":
    serve(ACTIONS)
