#!/usr/bin/env python3
"""PBR skill: physically based material properties and generated texture maps.

Line-delimited JSON on stdin/stdout, e.g.
  {"action": "fresnel_f0", "ior": 1.5}
  {"action": "material", "preset": "gold", "roughness": 0.3}
  {"action": "brdf", "base_color": [0.8, 0.1, 0.1], "metallic": 0, "roughness": 0.5,
   "n_dot_l": 0.8, "n_dot_v": 0.9, "n_dot_h": 0.95, "v_dot_h": 0.9}
  {"action": "generate_textures", "output_dir": "maps", "size": 256, "pattern": "noise"}
Colours are linear RGB triples in 0..1, or "#rrggbb" (sRGB, converted to linear).
The metallic/roughness model is the glTF 2.0 one; textures are PNG written with
zlib + struct, so no numpy or Pillow is needed.
"""

import math
import os
import random
import re
import struct
import sys
import zlib

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "..", "..", "lib"), "/usr/local/lib/composer-skills"]
from skillio import SkillError, param, safe_path, serve  # noqa: E402

# Linear-RGB F0 of conductors (Real-Time Rendering, 4th ed., table 9.2) and the
# index of refraction of common dielectrics.
METALS = {
    "gold": (1.000, 0.782, 0.344),
    "silver": (0.972, 0.960, 0.915),
    "copper": (0.955, 0.638, 0.538),
    "aluminium": (0.913, 0.922, 0.924),
    "iron": (0.562, 0.565, 0.578),
    "titanium": (0.542, 0.497, 0.449),
    "chromium": (0.549, 0.556, 0.554),
    "nickel": (0.660, 0.609, 0.526),
}
DIELECTRICS = {"water": 1.33, "ice": 1.31, "glass": 1.5, "plastic": 1.46,
               "skin": 1.4, "diamond": 2.42, "quartz": 1.54, "sapphire": 1.77}
DIELECTRIC_ALBEDO = {"water": (0.02, 0.05, 0.07), "ice": (0.9, 0.95, 1.0),
                     "glass": (0.9, 0.9, 0.9), "plastic": (0.8, 0.8, 0.8),
                     "skin": (0.85, 0.62, 0.52), "diamond": (1.0, 1.0, 1.0),
                     "quartz": (0.9, 0.9, 0.9), "sapphire": (0.1, 0.2, 0.7)}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
MAX_TEXTURE = 4096


def srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def linear_to_srgb(c: float) -> float:
    return c * 12.92 if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def _unit(request: dict, name: str, default=None) -> float:
    """A number in 0..1; required when there is no default."""
    if default is None:
        value = float(param(request, name, (int, float)))
    else:
        value = float(param(request, name, (int, float), default))
    if not 0.0 <= value <= 1.0:
        raise SkillError(f"{name} must be in 0..1", "InvalidRequest")
    return value


def _color(request: dict, name: str, default: tuple) -> tuple:
    value = param(request, name, (list, str), list(default))
    if isinstance(value, str):
        match = _HEX.match(value)
        if not match:
            raise SkillError(f"{name}: not a #rrggbb colour: {value!r}", "InvalidRequest")
        digits = match.group(1)
        return tuple(srgb_to_linear(int(digits[i:i + 2], 16) / 255) for i in (0, 2, 4))
    if len(value) != 3 or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                  and 0 <= c <= 1 for c in value):
        raise SkillError(f"{name} must be three numbers in 0..1", "InvalidRequest")
    return tuple(float(c) for c in value)


def f0_from_ior(n: float, k: float = 0.0, outside: float = 1.0) -> float:
    """Reflectance at normal incidence; with k, the conductor form."""
    return ((n - outside) ** 2 + k * k) / ((n + outside) ** 2 + k * k)


def ior_from_f0(f0: float) -> float:
    root = math.sqrt(f0)
    return (1 + root) / (1 - root)


def schlick(f0: float, cos_theta: float) -> float:
    return f0 + (1 - f0) * (1 - cos_theta) ** 5


def ggx_d(alpha: float, n_dot_h: float) -> float:
    """GGX / Trowbridge-Reitz normal distribution."""
    a2 = alpha * alpha
    denom = n_dot_h * n_dot_h * (a2 - 1) + 1
    return a2 / (math.pi * denom * denom)


def smith_g1(alpha: float, n_dot_x: float) -> float:
    """Smith masking for GGX (the separable form)."""
    a2 = alpha * alpha
    return 2 * n_dot_x / (n_dot_x + math.sqrt(a2 + (1 - a2) * n_dot_x * n_dot_x))


def _round(values, digits: int = 6):
    if isinstance(values, (list, tuple)):
        return [round(v, digits) for v in values]
    return round(values, digits)


def fresnel_f0(request: dict) -> dict:
    n = float(param(request, "ior", (int, float)))
    k = float(param(request, "extinction", (int, float), 0.0))
    outside = float(param(request, "outside_ior", (int, float), 1.0))
    if n <= 0 or outside <= 0 or k < 0:
        raise SkillError("ior and outside_ior must be > 0, extinction >= 0", "InvalidRequest")
    f0 = f0_from_ior(n, k, outside)
    return {"ior": n, "extinction": k, "f0": _round(f0), "f0_srgb": _round(linear_to_srgb(f0)),
            "kind": "conductor" if k > 0 else "dielectric"}


def _material(request: dict) -> dict:
    """Resolve a preset and explicit parameters to a glTF-style material."""
    preset = param(request, "preset", str, None)
    base, metallic, ior = (0.8, 0.8, 0.8), 0.0, 1.5
    if preset is not None:
        if preset in METALS:
            base, metallic = METALS[preset], 1.0
        elif preset in DIELECTRICS:
            base, ior = DIELECTRIC_ALBEDO[preset], DIELECTRICS[preset]
        else:
            raise SkillError(f"unknown preset {preset!r}; see list_presets", "InvalidRequest")
    base = _color(request, "base_color", base)
    metallic = _unit(request, "metallic", metallic)
    roughness = _unit(request, "roughness", 0.5)
    ior = float(param(request, "ior", (int, float), ior))
    if ior <= 0:
        raise SkillError("ior must be > 0", "InvalidRequest")
    return {"preset": preset, "base_color": base, "metallic": metallic,
            "roughness": roughness, "ior": ior}


def material(request: dict) -> dict:
    m = _material(request)
    f0_dielectric = f0_from_ior(m["ior"])
    metallic = m["metallic"]
    f0 = [f0_dielectric * (1 - metallic) + c * metallic for c in m["base_color"]]
    diffuse = [c * (1 - metallic) for c in m["base_color"]]
    alpha = m["roughness"] ** 2
    return {
        "preset": m["preset"],
        "base_color": _round(m["base_color"]),
        "base_color_srgb_hex": "#" + "".join(
            f"{round(linear_to_srgb(c) * 255):02x}" for c in m["base_color"]),
        "metallic": metallic,
        "roughness": m["roughness"],
        "alpha": _round(alpha),
        "ior": m["ior"],
        "f0": _round(f0),
        "diffuse_albedo": _round(diffuse),
        "specular_peak_d": _round(ggx_d(alpha, 1.0)) if alpha > 0 else None,
        "model": "glTF 2.0 metallic-roughness; alpha = roughness^2; GGX/Smith/Schlick",
    }


def brdf(request: dict) -> dict:
    """Cook-Torrance specular + Lambert diffuse for one light/view configuration."""
    m = _material(request)
    dots = {name: _unit(request, name) for name in ("n_dot_l", "n_dot_v", "n_dot_h", "v_dot_h")}
    alpha = max(m["roughness"] ** 2, 1e-4)
    f0_dielectric = f0_from_ior(m["ior"])
    d = ggx_d(alpha, dots["n_dot_h"])
    g = smith_g1(alpha, dots["n_dot_l"]) * smith_g1(alpha, dots["n_dot_v"])
    denom = max(4 * dots["n_dot_l"] * dots["n_dot_v"], 1e-6)
    specular, diffuse = [], []
    for c in m["base_color"]:
        f0 = f0_dielectric * (1 - m["metallic"]) + c * m["metallic"]
        f = schlick(f0, dots["v_dot_h"])
        specular.append(d * g * f / denom)
        diffuse.append((1 - f) * (1 - m["metallic"]) * c / math.pi)
    total = [s + df for s, df in zip(specular, diffuse)]
    return {"d": _round(d), "g": _round(g), "specular": _round(specular),
            "diffuse": _round(diffuse), "brdf": _round(total),
            "radiance_factor": _round([t * dots["n_dot_l"] for t in total])}


def list_presets(request: dict) -> dict:
    return {"metals": {k: list(v) for k, v in METALS.items()}, "dielectrics": dict(DIELECTRICS)}


def png_bytes(width: int, height: int, rows, channels: int) -> bytes:
    """Encode 8-bit grey (1) or RGB (3) rows of ints as a PNG file."""
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + bytes(row) for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _height_field(size: int, pattern: str, seed: int, scale: int) -> list:
    """Values in 0..1: flat, a checkerboard, or smoothed value noise."""
    if pattern == "solid":
        return [[0.5] * size for _ in range(size)]
    if pattern == "checker":
        cell = max(1, size // scale)
        return [[1.0 if ((x // cell) + (y // cell)) % 2 else 0.0 for x in range(size)]
                for y in range(size)]
    rng = random.Random(seed)
    grid = [[rng.random() for _ in range(scale + 1)] for _ in range(scale + 1)]
    step = size / scale
    field = []
    for y in range(size):
        gy, fy = divmod(y / step, 1)
        gy = int(gy)
        sy = fy * fy * (3 - 2 * fy)
        row = []
        for x in range(size):
            gx, fx = divmod(x / step, 1)
            gx = int(gx)
            sx = fx * fx * (3 - 2 * fx)
            top = grid[gy][gx] * (1 - sx) + grid[gy][gx + 1] * sx
            bottom = grid[gy + 1][gx] * (1 - sx) + grid[gy + 1][gx + 1] * sx
            row.append(top * (1 - sy) + bottom * sy)
        field.append(row)
    return field


def _normal_rows(field: list, strength: float) -> list:
    size = len(field)
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            dx = (field[y][(x + 1) % size] - field[y][(x - 1) % size]) * strength
            dy = (field[(y + 1) % size][x] - field[(y - 1) % size][x]) * strength
            length = math.sqrt(dx * dx + dy * dy + 1)
            row += [round((-dx / length * 0.5 + 0.5) * 255), round((-dy / length * 0.5 + 0.5) * 255),
                    round((1 / length * 0.5 + 0.5) * 255)]
        rows.append(row)
    return rows


def generate_textures(request: dict) -> dict:
    """Write albedo, roughness, metallic, height and normal maps (PNG) for a material."""
    m = _material(request)
    out_dir = safe_path(request, "output_dir")
    size = param(request, "size", int, 256)
    if not 1 <= size <= MAX_TEXTURE:
        raise SkillError(f"size must be 1..{MAX_TEXTURE}", "InvalidRequest")
    pattern = param(request, "pattern", str, "noise")
    if pattern not in ("solid", "checker", "noise"):
        raise SkillError("pattern must be solid, checker or noise", "InvalidRequest")
    scale = param(request, "scale", int, 8)
    if not 1 <= scale <= size:
        raise SkillError("scale must be 1..size", "InvalidRequest")
    variation = _unit(request, "variation", 0.2)
    strength = float(param(request, "normal_strength", (int, float), 4.0))
    field = _height_field(size, pattern, param(request, "seed", int, 0), scale)

    def grey(value_of):
        return [[max(0, min(255, round(value_of(v) * 255))) for v in row] for row in field]

    srgb = [linear_to_srgb(c) for c in m["base_color"]]
    albedo = [[max(0, min(255, round(c * (1 - variation / 2 + variation * v) * 255)))
               for v in row for c in srgb] for row in field]
    maps = {
        "albedo": (albedo, 3),
        "roughness": (grey(lambda v: m["roughness"] * (1 - variation / 2 + variation * v)), 1),
        "metallic": (grey(lambda v: m["metallic"]), 1),
        "height": (grey(lambda v: v), 1),
        "normal": (_normal_rows(field, strength), 3),
    }
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, (rows, channels) in maps.items():
        path = os.path.join(out_dir, f"{name}.png")
        with open(path, "wb") as fh:
            fh.write(png_bytes(size, size, rows, channels))
        written[name] = path
    return {"size": size, "pattern": pattern, "files": written,
            "material": {k: v for k, v in material(request).items() if k != "model"}}


ACTIONS = {"fresnel_f0": fresnel_f0, "material": material, "brdf": brdf,
           "list_presets": list_presets, "generate_textures": generate_textures}

if __name__ == "__main__":
    serve(ACTIONS)
