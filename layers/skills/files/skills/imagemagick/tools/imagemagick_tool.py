#!/usr/bin/env python3
"""ImageMagick skill: image info, format conversion, resizing and batch jobs.

Line-delimited JSON on stdin/stdout, e.g.
  {"action": "info", "path": "in.png"}
  {"action": "convert", "input": "in.png", "output": "out.jpg", "quality": 90}
  {"action": "resize", "input": "in.png", "output": "small.png", "width": 64}
Works with ImageMagick 7 (`magick`) and 6 (`convert`, `identify`).
"""

import os
import re
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "..", "..", "lib"), "/usr/local/lib/composer-skills"]
from skillio import SkillError, find_program, param, run, safe_path, serve  # noqa: E402

_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]+[0-9]*|(rgb|rgba|srgb|hsl)\([0-9., %]+\))$")
_FORMAT = re.compile(r"^[A-Za-z0-9]{2,8}$")


def _tool(name: str) -> list:
    """argv prefix for an ImageMagick command: IM7's `magick [name]` or IM6's own binary."""
    try:
        magick = find_program("magick")
    except SkillError:
        return [find_program(name)]
    return [magick] if name == "convert" else [magick, name]


def _input(request: dict, name: str = "input") -> str:
    path = safe_path(request, name)
    if path.startswith("@"):
        raise SkillError(f"{name}: '@' file lists are not accepted", "InvalidRequest")
    if not os.path.exists(path):
        raise SkillError(f"{name}: no such file: {path}", "FileNotFound")
    return path


def _output(request: dict, name: str = "output") -> str:
    path = safe_path(request, name)
    if path.startswith("@"):
        raise SkillError(f"{name}: '@' is not a valid output", "InvalidRequest")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return path


def _info(path: str) -> dict:
    fmt = "%m|%w|%h|%[colorspace]|%z|%[channels]\n"
    out = run(_tool("identify") + ["-format", fmt, path]).stdout
    first = out.strip().splitlines()[0].split("|")
    return {
        "path": path,
        "format": first[0],
        "width": int(first[1]),
        "height": int(first[2]),
        "colorspace": first[3],
        "depth": int(first[4]),
        "channels": first[5],
        "frames": len(out.strip().splitlines()),
        "size_bytes": os.path.getsize(path),
    }


def _quality_args(request: dict) -> list:
    quality = param(request, "quality", int, None)
    if quality is None:
        return []
    if not 1 <= quality <= 100:
        raise SkillError("quality must be 1..100", "InvalidRequest")
    return ["-quality", str(quality)]


def _geometry(request: dict) -> str:
    width = param(request, "width", int, None)
    height = param(request, "height", int, None)
    percent = param(request, "percent", (int, float), None)
    if percent is not None:
        if not 0 < percent <= 1000:
            raise SkillError("percent must be in (0, 1000]", "InvalidRequest")
        return f"{percent:g}%"
    if width is None and height is None:
        raise SkillError("resize needs width, height or percent", "InvalidRequest")
    for value in (width, height):
        if value is not None and not 1 <= value <= 65535:
            raise SkillError("width and height must be 1..65535", "InvalidRequest")
    geometry = f"{width or ''}x{height or ''}"
    if not param(request, "keep_aspect", bool, True) and width and height:
        geometry += "!"
    return geometry


def info(request: dict) -> dict:
    return _info(_input(request, "path"))


def convert(request: dict) -> dict:
    src, dst = _input(request), _output(request)
    run(_tool("convert") + [src] + _quality_args(request) + [dst])
    return _info(dst)


def resize(request: dict) -> dict:
    src, dst = _input(request), _output(request)
    run(_tool("convert") + [src, "-resize", _geometry(request)] + _quality_args(request) + [dst])
    return _info(dst)


def create(request: dict) -> dict:
    """A solid canvas: handy for tests and placeholders."""
    dst = _output(request)
    width, height = param(request, "width", int), param(request, "height", int)
    color = param(request, "color", str, "white")
    if not _COLOR.match(color):
        raise SkillError(f"not a colour: {color!r}", "InvalidRequest")
    if not (1 <= width <= 65535 and 1 <= height <= 65535):
        raise SkillError("width and height must be 1..65535", "InvalidRequest")
    run(_tool("convert") + ["-size", f"{width}x{height}", f"xc:{color}", dst])
    return _info(dst)


def batch(request: dict) -> dict:
    """Convert (and optionally resize) many files into output_dir as `format`."""
    inputs = param(request, "inputs", list)
    out_dir = safe_path(request, "output_dir")
    fmt = param(request, "format", str, "png")
    if not _FORMAT.match(fmt):
        raise SkillError(f"not an image format: {fmt!r}", "InvalidRequest")
    resize_args = ["-resize", _geometry(request)] if any(
        k in request for k in ("width", "height", "percent")) else []
    os.makedirs(out_dir, exist_ok=True)
    done, failed = [], []
    for item in inputs:
        try:
            src = _input({"input": item})
            stem = os.path.splitext(os.path.basename(src))[0]
            dst = os.path.join(out_dir, f"{stem}.{fmt.lower()}")
            run(_tool("convert") + [src] + resize_args + _quality_args(request) + [dst])
            done.append(_info(dst))
        except SkillError as exc:
            failed.append({"input": item, "message": exc.message, "type": exc.type})
    return {"converted": done, "failed": failed}


def version(request: dict) -> str:
    return run(_tool("convert") + ["-version"]).stdout.splitlines()[0]


ACTIONS = {"info": info, "convert": convert, "resize": resize, "create": create,
           "batch": batch, "version": version}

if __name__ == "__main__":
    serve(ACTIONS)
