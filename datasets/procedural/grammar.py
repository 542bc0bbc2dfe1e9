"""The object grammar: twelve categories built from SDF primitives with randomised proportions and colours.

`generate_object(seed, index)` is deterministic: the same (seed, index) gives a bit-identical spec on any machine
(numpy's PCG64 stream seeded by both, float64 arithmetic only). Categories cycle with the index, so any range of
consecutive indices is balanced. Each category builder places parts in a z-up frame with the object standing on
z = 0; the result is then normalised into [-0.45, 0.45]³.

Every part belongs to a colour group. The category's main group takes the main colour; each other group takes a
different colour with probability `ACCENT_PROBABILITY`, otherwise the main colour. Labels record all of it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from datasets.procedural.captions import Accent, make_captions
from datasets.procedural.palette import COLOR_NAMES
from datasets.procedural.spec import ObjectSpec, PartSpec, normalise_parts

ACCENT_PROBABILITY = 0.65


@dataclass(frozen=True)
class GroupNoun:
    noun: str
    plural: bool = False


@dataclass
class Draft:
    """What a category builder returns: unnormalised parts, the main group and nouns of the other groups."""

    parts: list[PartSpec]
    main_group: str
    accent_nouns: dict[str, GroupNoun]


class _Builder:
    """Collects parts; `u(lo, hi)` draws from the object's random stream."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.parts: list[PartSpec] = []

    def u(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def chance(self, p: float) -> bool:
        return bool(self.rng.uniform() < p)

    def add(self, primitive: str, params, position, group: str, rotation=(0.0, 0.0, 0.0)) -> None:
        self.parts.append(PartSpec(primitive, [float(v) for v in params], [float(v) for v in position],
                                   [float(v) for v in rotation], group))


def _chair(b: _Builder) -> Draft:
    sw, sd, st = b.u(0.18, 0.26), b.u(0.18, 0.26), b.u(0.02, 0.04)
    leg_h = b.u(0.18, 0.30)
    leg_r = b.u(0.015, 0.03)
    b.add("rounded_box", (sw, sd, st, 0.5 * st), (0, 0, leg_h + st), "seat")
    round_legs = b.chance(0.5)
    for sx in (-1, 1):
        for sy in (-1, 1):
            pos = (sx * (sw - 1.5 * leg_r), sy * (sd - 1.5 * leg_r), leg_h / 2)
            if round_legs:
                b.add("cylinder", (leg_r, leg_h / 2), pos, "frame")
            else:
                b.add("box", (leg_r, leg_r, leg_h / 2), pos, "frame")
    back_h, back_t = b.u(0.12, 0.22), b.u(0.015, 0.03)
    b.add("box", (sw, back_t, back_h), (0, -sd + back_t, leg_h + 2 * st + back_h), "frame", (b.u(0, 12), 0, 0))
    return Draft(b.parts, "frame", {"seat": GroupNoun("seat")})


def _table(b: _Builder) -> Draft:
    leg_h, top_t = b.u(0.25, 0.40), b.u(0.015, 0.03)
    if b.chance(0.5):
        hw, hd = b.u(0.25, 0.45), b.u(0.18, 0.35)
        b.add("box", (hw, hd, top_t), (0, 0, leg_h + top_t), "top")
        leg_r = b.u(0.015, 0.03)
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.add("cylinder", (leg_r, leg_h / 2), (sx * (hw - 2 * leg_r), sy * (hd - 2 * leg_r), leg_h / 2), "legs")
    else:
        radius = b.u(0.25, 0.40)
        b.add("cylinder", (radius, top_t), (0, 0, leg_h + top_t), "top")
        b.add("cylinder", (b.u(0.025, 0.05), leg_h / 2), (0, 0, leg_h / 2), "legs")
        b.add("cylinder", (radius * b.u(0.4, 0.6), 0.015), (0, 0, 0.015), "legs")
    return Draft(b.parts, "top", {"legs": GroupNoun("legs", plural=True)})


def _lamp(b: _Builder) -> Draft:
    base_r, base_h = b.u(0.10, 0.16), b.u(0.015, 0.03)
    pole_r, pole_h = b.u(0.01, 0.02), b.u(0.15, 0.30)
    b.add("cylinder", (base_r, base_h), (0, 0, base_h), "stand")
    pole_top = 2 * base_h + 2 * pole_h
    b.add("cylinder", (pole_r, pole_h), (0, 0, 2 * base_h + pole_h), "stand")
    shade_h = b.u(0.06, 0.12)
    b.add("cone", (b.u(0.12, 0.20), b.u(0.05, 0.10), shade_h), (0, 0, pole_top + 0.6 * shade_h), "shade")
    return Draft(b.parts, "shade", {"stand": GroupNoun("stand")})


def _mushroom(b: _Builder) -> Draft:
    stem_r, stem_h = b.u(0.05, 0.10), b.u(0.10, 0.20)
    b.add("capsule" if b.chance(0.5) else "cylinder", (stem_r, stem_h), (0, 0, stem_h), "stem")
    cap_r, cap_z = b.u(0.18, 0.30), b.u(0.08, 0.15)
    cap_centre = 2 * stem_h
    b.add("ellipsoid", (cap_r, cap_r, cap_z), (0, 0, cap_centre), "cap")
    nouns = {"stem": GroupNoun("stem")}
    if b.chance(0.5):
        for k in range(int(b.rng.integers(5, 9))):
            theta = math.radians(k * 360.0 / 7.0 + b.u(-15, 15))
            phi = math.radians(b.u(20, 70))
            spot = (cap_r * math.sin(phi) * math.cos(theta), cap_r * math.sin(phi) * math.sin(theta),
                    cap_centre + cap_z * math.cos(phi))
            b.add("sphere", (b.u(0.02, 0.035),), spot, "spots")
        nouns["spots"] = GroupNoun("spots", plural=True)
    return Draft(b.parts, "cap", nouns)


def _snowman(b: _Builder) -> Draft:
    radii = [b.u(0.16, 0.22)]
    radii.append(radii[0] * b.u(0.65, 0.80))
    if b.chance(0.7):
        radii.append(radii[1] * b.u(0.60, 0.80))
    z = radii[0]
    b.add("sphere", (radii[0],), (0, 0, z), "body")
    for below, r in zip(radii[:-1], radii[1:]):
        z += below + 0.7 * r
        b.add("sphere", (r,), (0, 0, z), "body")
    head = radii[-1]
    hat_h = b.u(0.04, 0.08)
    b.add("cylinder", (1.1 * head, 0.01), (0, 0, z + 0.8 * head), "hat")
    b.add("cylinder", (0.7 * head, hat_h), (0, 0, z + 0.8 * head + hat_h), "hat")
    nose_h = b.u(0.03, 0.05)
    b.add("cone", (0.25 * nose_h + 0.015, 0.003, nose_h), (head + 0.7 * nose_h, 0, z), "nose", (0, 90, 0))
    return Draft(b.parts, "body", {"hat": GroupNoun("hat"), "nose": GroupNoun("nose")})


def _rocket(b: _Builder) -> Draft:
    radius, body_h = b.u(0.08, 0.12), b.u(0.20, 0.30)
    b.add("cylinder", (radius, body_h), (0, 0, body_h), "body")
    nose_h = b.u(0.08, 0.14)
    b.add("cone", (radius, 0.005, nose_h), (0, 0, 2 * body_h + nose_h), "fins")
    fins = int(b.rng.integers(3, 5))
    fin_w, fin_h = b.u(0.06, 0.10), b.u(0.06, 0.10)
    spin = b.u(0, 90)
    for k in range(fins):
        angle = spin + k * 360.0 / fins
        a = math.radians(angle)
        reach = radius + 0.8 * fin_w
        b.add("box", (fin_w, 0.01, fin_h), (reach * math.cos(a), reach * math.sin(a), fin_h), "fins", (0, 0, angle))
    return Draft(b.parts, "body", {"fins": GroupNoun("fins", plural=True)})


def _tower(b: _Builder) -> Draft:
    round_tower = b.chance(0.5)
    width, z = b.u(0.12, 0.20), 0.0
    for _ in range(int(b.rng.integers(2, 5))):
        half_h = b.u(0.05, 0.10)
        if round_tower:
            b.add("cylinder", (width, half_h), (0, 0, z + half_h), "walls")
        else:
            b.add("box", (width, width, half_h), (0, 0, z + half_h), "walls")
        z += 2 * half_h
        top_width = width
        width *= b.u(0.70, 0.85)
    roof_h = b.u(0.08, 0.16)
    roof_r = top_width * (1.1 if round_tower else 1.45)
    b.add("cone", (roof_r, 0.0, roof_h), (0, 0, z + roof_h), "roof")
    return Draft(b.parts, "walls", {"roof": GroupNoun("roof")})


def _mug(b: _Builder) -> Draft:
    radius, half_h = b.u(0.12, 0.18), b.u(0.12, 0.20)
    b.add("cylinder", (radius, half_h), (0, 0, half_h), "body")
    ring = b.u(0.06, 0.09)
    b.add("torus", (ring, b.u(0.015, 0.025)), (radius + 0.6 * ring, 0, half_h), "handle", (90, 0, 0))
    return Draft(b.parts, "body", {"handle": GroupNoun("handle")})


def _car(b: _Builder) -> Draft:
    length, width, height = b.u(0.30, 0.45), b.u(0.14, 0.20), b.u(0.06, 0.09)
    wheel_r, wheel_w = b.u(0.06, 0.09), b.u(0.025, 0.04)
    body_z = wheel_r + 0.6 * height
    b.add("rounded_box", (length, width, height, 0.02), (0, 0, body_z), "body")
    cabin_h = b.u(0.05, 0.08)
    b.add("rounded_box", (length * b.u(0.45, 0.65), 0.9 * width, cabin_h, 0.02),
          (length * b.u(-0.10, 0.05), 0, body_z + height + 0.9 * cabin_h), "body")
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.add("cylinder", (wheel_r, wheel_w), (sx * 0.65 * length, sy * width, wheel_r), "wheels", (90, 0, 0))
    return Draft(b.parts, "body", {"wheels": GroupNoun("wheels", plural=True)})


def _tree(b: _Builder) -> Draft:
    trunk_r, trunk_h = b.u(0.03, 0.06), b.u(0.10, 0.20)
    b.add("cylinder", (trunk_r, trunk_h), (0, 0, trunk_h), "trunk")
    top = 2 * trunk_h
    if b.chance(0.5):
        radius = b.u(0.18, 0.28)
        for _ in range(int(b.rng.integers(2, 4))):
            half_h = b.u(0.08, 0.14)
            b.add("cone", (radius, 0.01, half_h), (0, 0, top + half_h * 0.8), "canopy")
            top += half_h * 1.1
            radius *= 0.75
    else:
        radius = b.u(0.15, 0.24)
        b.add("sphere", (radius,), (0, 0, top + 0.8 * radius), "canopy")
        for k in range(int(b.rng.integers(0, 3))):
            a = math.radians(k * 137.0 + b.u(0, 60))
            r = radius * b.u(0.5, 0.7)
            offset = (0.7 * radius * math.cos(a), 0.7 * radius * math.sin(a), top + 0.6 * radius)
            b.add("sphere", (r,), offset, "canopy")
    return Draft(b.parts, "canopy", {"trunk": GroupNoun("trunk")})


def _house(b: _Builder) -> Draft:
    half_w, half_d, half_h = b.u(0.20, 0.35), b.u(0.20, 0.30), b.u(0.12, 0.20)
    b.add("box", (half_w, half_d, half_h), (0, 0, half_h), "walls")
    # a square prism turned 45° about x: its upper half is a gable roof whose eaves meet the walls' long sides
    side = half_d * b.u(0.85, 1.1) / math.sqrt(2.0)
    b.add("box", (1.05 * half_w, side, side), (0, 0, 2 * half_h), "roof", (45, 0, 0))
    if b.chance(0.5):
        b.add("box", (0.03, 0.03, 0.06), (0.5 * half_w, 0.3 * half_d, 2 * half_h + 0.7 * side * math.sqrt(2.0)), "roof")
    door_h = b.u(0.05, 0.08)
    b.add("box", (b.u(0.03, 0.05), 0.008, door_h), (0, -half_d, door_h), "door")
    return Draft(b.parts, "walls", {"roof": GroupNoun("roof"), "door": GroupNoun("door")})


def _dumbbell(b: _Builder) -> Draft:
    bar_half = b.u(0.15, 0.25)
    b.add("cylinder", (b.u(0.015, 0.025), bar_half), (0, 0, 0), "bar", (0, 90, 0))
    if b.chance(0.5):
        radius, thickness = b.u(0.07, 0.12), b.u(0.03, 0.06)
        for sx in (-1, 1):
            b.add("cylinder", (radius, thickness), (sx * bar_half, 0, 0), "weights", (0, 90, 0))
    else:
        radius = b.u(0.07, 0.11)
        for sx in (-1, 1):
            b.add("sphere", (radius,), (sx * bar_half, 0, 0), "weights")
    return Draft(b.parts, "weights", {"bar": GroupNoun("bar")})


CATEGORIES: dict[str, Callable[[_Builder], Draft]] = {
    "chair": _chair,
    "table": _table,
    "lamp": _lamp,
    "mushroom": _mushroom,
    "snowman": _snowman,
    "rocket": _rocket,
    "tower": _tower,
    "mug": _mug,
    "car": _car,
    "tree": _tree,
    "house": _house,
    "dumbbell": _dumbbell,
}
CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)


def object_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The random stream of one object; `stream` separates the shape (0) from the cameras (1)."""
    return np.random.default_rng([int(seed), int(index), int(stream)])


def generate_object(seed: int, index: int, category: str | None = None) -> ObjectSpec:
    """The procedural object number `index` of dataset `seed` (category cycles with the index unless given)."""
    if index < 0:
        raise ValueError(f"object index must be >= 0, got {index}")
    category = CATEGORY_NAMES[index % len(CATEGORY_NAMES)] if category is None else category
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORY_NAMES)}")
    rng = object_rng(seed, index)
    draft = CATEGORIES[category](_Builder(rng))

    main_color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
    colors = {draft.main_group: main_color}
    for group in draft.accent_nouns:
        if rng.uniform() < ACCENT_PROBABILITY:
            others = [c for c in COLOR_NAMES if c != main_color]
            colors[group] = others[int(rng.integers(len(others)))]
        else:
            colors[group] = main_color
    accents = [Accent(noun.noun, noun.plural, colors[group]) for group, noun in draft.accent_nouns.items()
               if colors[group] != main_color]
    parts = normalise_parts(draft.parts)
    for part in parts:
        part.color = colors[part.group]
    labels = {"category": category, "main_color": main_color, "part_colors": colors,
              "captions": make_captions(category, main_color, accents)}
    return ObjectSpec(category=category, parts=parts, seed=int(seed), index=int(index), labels=labels)
