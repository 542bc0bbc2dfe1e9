"""The named colour palette of the procedural objects.

Ten well-separated albedos, so that the text-to-3D evaluation can classify an object's colours from its renders by
nearest palette entry. "white" is a light gray: a pure white part would vanish against the white background.
"""
from __future__ import annotations

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "orange": (0.98, 0.50, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.15, 0.62, 0.18),
    "blue": (0.12, 0.28, 0.85),
    "purple": (0.50, 0.16, 0.70),
    "pink": (0.98, 0.55, 0.75),
    "brown": (0.45, 0.27, 0.10),
    "black": (0.07, 0.07, 0.07),
    "white": (0.88, 0.88, 0.88),
}
COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)


def color_rgb(name: str) -> tuple[float, float, float]:
    """Albedo in [0, 1] of a palette colour."""
    if name not in PALETTE:
        raise KeyError(f"unknown palette colour {name!r}; choose one of {', '.join(COLOR_NAMES)}")
    return PALETTE[name]
