#!/usr/bin/env python3
"""Blender skill: scene building, inspection and batch rendering with `blender -b`.

Line-delimited JSON on stdin/stdout, e.g.
  {"action": "create_scene", "output": "scene.blend",
   "objects": [{"type": "sphere", "location": [0, 0, 1],
                "material": {"base_color": [0.8, 0.1, 0.1], "metallic": 0, "roughness": 0.4}}]}
  {"action": "render", "blend_file": "scene.blend", "output": "out.png",
   "resolution": [640, 480], "samples": 16}
  {"action": "batch_render", "blend_files": ["a.blend", "b.blend"], "output_dir": "renders"}
  {"action": "scene_info", "blend_file": "scene.blend"}
Each request starts one headless Blender with the fixed script below; the
request's parameters reach it as JSON in an environment variable, never as code.
Renders use Cycles on the CPU by default (EEVEE needs a GPU context).
"""

import json
import os
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "..", "..", "lib"), "/usr/local/lib/composer-skills"]
from skillio import SkillError, find_program, param, run, safe_path, serve  # noqa: E402

MARKER = "SKILLRESULT:"
PRIMITIVES = ("cube", "sphere", "ico_sphere", "plane", "cylinder", "cone", "torus", "monkey")
ENGINES = ("CYCLES", "BLENDER_EEVEE_NEXT", "BLENDER_EEVEE", "BLENDER_WORKBENCH")

# Runs inside Blender. Reads its parameters from COMPOSER_SKILL_PARAMS.
BLENDER_SCRIPT = r'''
import bpy, json, math, os, sys
p = json.loads(os.environ["COMPOSER_SKILL_PARAMS"])

def info():
    s = bpy.context.scene
    return {"scene": s.name, "engine": s.render.engine,
            "resolution": [s.render.resolution_x, s.render.resolution_y],
            "frame_start": s.frame_start, "frame_end": s.frame_end,
            "camera": s.camera.name if s.camera else None,
            "objects": [{"name": o.name, "type": o.type, "location": list(o.location)}
                        for o in s.objects],
            "materials": [m.name for m in bpy.data.materials]}

def material(obj, spec):
    mat = bpy.data.materials.new(spec.get("name", obj.name + "-material"))
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = tuple(spec.get("base_color", [0.8, 0.8, 0.8])) + (1.0,)
    bsdf.inputs["Metallic"].default_value = spec.get("metallic", 0.0)
    bsdf.inputs["Roughness"].default_value = spec.get("roughness", 0.5)
    if "ior" in spec:
        bsdf.inputs["IOR"].default_value = spec["ior"]
    obj.data.materials.append(mat)

def build(spec):
    if spec.get("clear", True):
        bpy.ops.wm.read_factory_settings(use_empty=True)
    ops = bpy.ops.mesh
    adders = {"cube": ops.primitive_cube_add, "sphere": ops.primitive_uv_sphere_add,
              "ico_sphere": ops.primitive_ico_sphere_add, "plane": ops.primitive_plane_add,
              "cylinder": ops.primitive_cylinder_add, "cone": ops.primitive_cone_add,
              "torus": ops.primitive_torus_add, "monkey": ops.primitive_monkey_add}
    for o in spec.get("objects", []):
        adders[o["type"]](location=o.get("location", [0, 0, 0]))
        obj = bpy.context.active_object
        if "name" in o:
            obj.name = o["name"]
        obj.scale = o.get("scale", [1, 1, 1])
        obj.rotation_euler = [math.radians(a) for a in o.get("rotation", [0, 0, 0])]
        if o.get("smooth"):
            bpy.ops.object.shade_smooth()
        if "material" in o:
            material(obj, o["material"])
    scene = bpy.context.scene
    if scene.camera is None:
        bpy.ops.object.camera_add(location=(7.4, -6.5, 5.3),
                                  rotation=(math.radians(63.6), 0, math.radians(46.7)))
        scene.camera = bpy.context.active_object
    if not any(o.type == "LIGHT" for o in scene.objects):
        bpy.ops.object.light_add(type="SUN", location=(4, -4, 8))
        bpy.context.active_object.data.energy = 3.0

def render(out):
    s = bpy.context.scene
    s.render.engine = p.get("engine", "CYCLES")
    if s.render.engine == "CYCLES":
        s.cycles.device = "CPU"
        s.cycles.samples = p.get("samples", 16)
        # Distribution builds may lack OpenImageDenoise; denoising then fails the render.
        s.cycles.use_denoising = False
        for layer in s.view_layers:
            layer.cycles.use_denoising = False
    if "resolution" in p:
        s.render.resolution_x, s.render.resolution_y = p["resolution"]
        s.render.resolution_percentage = 100
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".exr": "OPEN_EXR",
               ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
    s.render.image_settings.file_format = formats[os.path.splitext(out)[1].lower()]
    s.render.use_file_extension = False
    s.frame_set(p.get("frame", s.frame_start))
    s.render.filepath = out
    bpy.ops.render.render(write_still=True)
    return {"output": out, "bytes": os.path.getsize(out), "engine": s.render.engine,
            "resolution": [s.render.resolution_x, s.render.resolution_y]}

op = p["op"]
if op == "scene_info":
    result = info()
elif op == "create_scene":
    build(p)
    bpy.ops.wm.save_as_mainfile(filepath=p["output"])
    result = dict(info(), saved=p["output"])
elif op == "render":
    if not p.get("has_file"):
        build(p)
    result = render(p["output"])
print("SKILLRESULT:" + json.dumps(result))
sys.stdout.flush()
'''


def _blender(params: dict, blend_file: str = None, timeout: float = 1800) -> dict:
    argv = [find_program("blender"), "-b"]
    if blend_file:
        argv.append(blend_file)
    # A script file rather than --python-expr: on failure Blender echoes an
    # expression whole, which would hide the traceback in the error's tail.
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="blender-skill-") as script:
        script.write(BLENDER_SCRIPT)
        script.flush()
        argv += ["--factory-startup", "--python-exit-code", "1", "--python", script.name]
        proc = run(argv, timeout=timeout, env={"COMPOSER_SKILL_PARAMS": json.dumps(params)})
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise SkillError("blender finished without a result: " + proc.stdout.strip()[-1500:], "CommandFailed")


def _blend_file(request: dict, required: bool) -> str:
    if not required and request.get("blend_file") is None:
        return None
    path = safe_path(request, "blend_file")
    if not os.path.isfile(path):
        raise SkillError(f"no such .blend file: {path}", "FileNotFound")
    return os.path.abspath(path)


def _objects(request: dict) -> list:
    objects = param(request, "objects", list, [{"type": "cube"}])
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("type") not in PRIMITIVES:
            raise SkillError(f"each object needs a type in {', '.join(PRIMITIVES)}", "InvalidRequest")
    return objects


def _render_params(request: dict, output: str) -> dict:
    engine = param(request, "engine", str, "CYCLES")
    if engine not in ENGINES:
        raise SkillError(f"engine must be one of {', '.join(ENGINES)}", "InvalidRequest")
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp"):
        raise SkillError("output must end in .png, .jpg, .exr, .tif or .bmp", "InvalidRequest")
    params = {"op": "render", "output": os.path.abspath(output), "engine": engine,
              "samples": param(request, "samples", int, 16), "frame": param(request, "frame", int, 1)}
    resolution = param(request, "resolution", list, None)
    if resolution is not None:
        if len(resolution) != 2 or not all(isinstance(v, int) and 1 <= v <= 16384 for v in resolution):
            raise SkillError("resolution must be [width, height]", "InvalidRequest")
        params["resolution"] = resolution
    os.makedirs(os.path.dirname(params["output"]), exist_ok=True)
    return params


def version(request: dict) -> str:
    proc = run([find_program("blender"), "-b", "--factory-startup", "--version"], timeout=120)
    return next((line.strip() for line in proc.stdout.splitlines() if line.startswith("Blender")),
                proc.stdout.strip())


def scene_info(request: dict) -> dict:
    return _blender({"op": "scene_info"}, _blend_file(request, required=True))


def create_scene(request: dict) -> dict:
    output = os.path.abspath(safe_path(request, "output"))
    if not output.endswith(".blend"):
        raise SkillError("output must end in .blend", "InvalidRequest")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    return _blender({"op": "create_scene", "output": output, "objects": _objects(request)})


def render(request: dict) -> dict:
    blend = _blend_file(request, required=False)
    params = _render_params(request, safe_path(request, "output"))
    if blend:
        params["has_file"] = True
    else:
        params["objects"] = _objects(request)
    return _blender(params, blend)


def batch_render(request: dict) -> dict:
    files = param(request, "blend_files", list)
    out_dir = safe_path(request, "output_dir")
    ext = param(request, "format", str, "png").lower().lstrip(".")
    results, failed = [], []
    for item in files:
        try:
            name = os.path.splitext(os.path.basename(str(item)))[0]
            sub = dict(request, blend_file=item, output=os.path.join(out_dir, f"{name}.{ext}"))
            results.append(render(sub))
        except SkillError as exc:
            failed.append({"blend_file": item, "message": exc.message, "type": exc.type})
    return {"rendered": results, "failed": failed}


ACTIONS = {"version": version, "scene_info": scene_info, "create_scene": create_scene,
           "render": render, "batch_render": batch_render}

if __name__ == "__main__":
    serve(ACTIONS)
