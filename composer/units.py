"""Sizes as people read them. buildah and podman report decimal units (1 MB = 1000 kB),
so composer writes them the same way."""

from __future__ import annotations


def human_size(size: int) -> str:
    """494000000 -> '494.0 MB'."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
