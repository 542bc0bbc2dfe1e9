"""Plain, JSON-serialisable descriptions of procedural objects; a spec alone rebuilds the object's SDF.

An object is a union of parts. Each part is a primitive (`primitives.PRIMITIVES`) with its parameters, a rotation
(Euler angles in degrees, local→world R = Rz·Ry·Rx) and a position, plus the name of its colour group and its
palette colour. Specs produced by the grammar are already normalised into [-0.45, 0.45]³.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np

from datasets.procedural.primitives import PRIMITIVES, local_half_extents

OBJECT_HALF_EXTENT = 0.45


@dataclass
class PartSpec:
    primitive: str
    params: list[float]
    position: list[float]
    rotation: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    group: str = "body"
    color: str = "white"

    def __post_init__(self):
        if self.primitive not in PRIMITIVES:
            raise ValueError(f"unknown primitive {self.primitive!r}; choose one of {', '.join(PRIMITIVES)}")


@dataclass
class ObjectSpec:
    """One object. `labels` holds category, colours per group, main colour and captions (see `grammar`)."""

    category: str
    parts: list[PartSpec]
    seed: int = 0
    index: int = 0
    labels: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ObjectSpec:
        parts = [PartSpec(**part) for part in data["parts"]]
        return cls(category=data["category"], parts=parts, seed=data.get("seed", 0), index=data.get("index", 0),
                   labels=dict(data.get("labels", {})))

    @classmethod
    def from_json(cls, text: str) -> ObjectSpec:
        return cls.from_dict(json.loads(text))

    def bounds(self) -> np.ndarray:
        """Axis-aligned bounds `(2, 3)` [min, max]: the union of the parts' rotated local boxes (conservative)."""
        lows, highs = [], []
        for part in self.parts:
            half = np.array(local_half_extents(part.primitive, part.params))
            extent = np.abs(rotation_matrix(part.rotation)) @ half
            lows.append(np.asarray(part.position) - extent)
            highs.append(np.asarray(part.position) + extent)
        return np.stack([np.min(lows, axis=0), np.max(highs, axis=0)])


def rotation_matrix(euler_deg: list[float]) -> np.ndarray:
    """Local→world rotation `(3, 3)` for Euler angles (degrees) about x, then y, then z (R = Rz·Ry·Rx)."""
    ax, ay, az = (math.radians(a) for a in euler_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def normalise_parts(parts: list[PartSpec], half_extent: float = OBJECT_HALF_EXTENT) -> list[PartSpec]:
    """Scale and centre parts so that their bounds fill [-half_extent, half_extent] along the longest axis.

    Every primitive parameter is a length, so uniform scaling multiplies them all.
    """
    low, high = ObjectSpec("", parts).bounds()
    centre = (low + high) / 2.0
    scale = 2.0 * half_extent / float(np.max(high - low))
    return [dataclasses.replace(part, params=[float(v) * scale for v in part.params],
                                position=[float(v) for v in (np.asarray(part.position) - centre) * scale])
            for part in parts]
