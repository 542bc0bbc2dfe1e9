"""Mesh files → `ObjectRecord`s: object ids, shards, captions, rig cameras and the render (scripts/render_meshes.py,
scripts/reconstruct.py --mesh).

An object is named by its file's path relative to the mesh folder (`rel`, posix). Everything derived from it is a
pure function of `rel`: the id `mesh/<crc32(rel) % 1000>/<rel with / → -->`, the shard
`crc32(rel) % N`, and the rig cameras (`object_rig(0, crc32(rel))`, per-object radius/elevations like
G-Objaverse), so shards, resumed runs and machines agree without coordination.
"""
from __future__ import annotations

import csv
import json
import os
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from datasets.meshes.load import MeshAsset
from datasets.meshes.raster import MeshTensors, RasterConfig, render_mesh
from datasets.record import ObjectRecord
from datasets.rig import object_rig
from nsr.cameras import shapenet_rig

CATEGORY = "mesh"
RIGS = ("gobjaverse", "shapenet")


def _crc(rel: str) -> int:
    return zlib.crc32(rel.encode("utf-8"))


def mesh_object_id(rel: str) -> str:
    """`<category>/<dict_id>/<ins_id>` of the mesh at relative path `rel` (ids stay readable and unique per path)."""
    # the suffix stays so that box.obj and box.stl next to each other are two objects with readable ids
    ins = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "--")).strip("._") or "object"
    return f"{CATEGORY}/{_crc(rel) % 1000}/{ins}"


def in_shard(rel: str, shard: int, num_shards: int) -> bool:
    """Whether object `rel` belongs to shard `shard` of `num_shards` (a hash of the path: stable as files are added)."""
    return _crc(rel) % num_shards == shard


def mesh_cameras(rel: str, rig: str, view_ids) -> torch.Tensor:
    """Cameras `(V, 25)` of object `rel`: the randomised G-Objaverse rig, or the ShapeNet spiral (numbered 0..39)."""
    if rig == "gobjaverse":
        cameras = object_rig(0, _crc(rel))
    elif rig == "shapenet":
        cameras = shapenet_rig(40)
    else:
        raise ValueError(f"unknown rig {rig!r}; choose one of {', '.join(RIGS)}")
    return cameras[torch.as_tensor(list(view_ids), dtype=torch.long)]


def read_caption_table(path: str | os.PathLike) -> dict[str, str]:
    """Captions keyed by object name from JSON (`{name: caption}`, or a list of them) or CSV (`name,caption` rows,
    Cap3D's headerless `Cap3D_automated_Objaverse.csv` included)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if isinstance(data, list):  # [{name: caption}, ...]
            return {str(k): str(v) for item in data for k, v in item.items()}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object mapping names to captions")
        return {str(k): str(v) for k, v in data.items()}
    rows = [row for row in csv.reader(text.splitlines()) if len(row) >= 2]
    return {row[0].strip(): row[1].strip() for row in rows}


def caption_for(rel: str, table: dict[str, str] | None) -> str:
    """The caption of object `rel`: the table's entry for its relative path (with or without suffix) or file stem
    (a Cap3D uid), else the file name in words."""
    stem_path = rel.rsplit(".", 1)[0]
    stem = stem_path.rsplit("/", 1)[-1]
    for key in (rel, stem_path, stem, Path(rel).parent.name):
        if table and key in table:
            return table[key]
    return re.sub(r"[_\-.]+", " ", stem).strip()


def render_asset(asset: MeshAsset, cameras: torch.Tensor, resolution: int, device="cpu",
                 config: RasterConfig | None = None) -> dict[str, np.ndarray]:
    """A normalised asset rendered from cameras `(V, 25)`: NumPy color/normal `(V, R, R, 3)`, alpha/depth
    `(V, R, R)` (the `ObjectRecord` layout)."""
    out = render_mesh(MeshTensors(asset, device), cameras.to(device), resolution, config)
    return {"color": out.color.permute(0, 2, 3, 1).float().cpu().numpy(),
            "normal": out.normal.permute(0, 2, 3, 1).float().cpu().numpy(),
            "alpha": out.alpha[:, 0].float().cpu().numpy(), "depth": out.depth[:, 0].float().cpu().numpy()}


def mesh_record(asset: MeshAsset, rel: str, view_ids, resolution: int, rig: str = "gobjaverse", caption: str = "",
                device="cpu", config: RasterConfig | None = None) -> ObjectRecord:
    """The `ObjectRecord` of a normalised asset named `rel` (`normalise(load_mesh(path), up)`), rendered on its rig."""
    view_ids = np.asarray(list(view_ids), dtype=np.int64)
    cameras = mesh_cameras(rel, rig, view_ids)
    images = render_asset(asset, cameras, resolution, device, config)
    labels = {"category": CATEGORY, "source": rel, "captions": [caption]}
    return ObjectRecord(mesh_object_id(rel), view_ids, cameras.numpy(), caption=caption, labels=labels, **images)
