"""Mesh files → `MeshAsset`: triangles with per-corner colour and UV, through trimesh.

Formats: OBJ (+MTL, diffuse `map_Kd` textures and `Kd`), glTF/GLB (base-colour textures and factors, vertex
colours, node transforms, several meshes per file), PLY (vertex or face colours), OFF/STL (no colour: a flat
`DEFAULT_COLOR`). Every mesh of a file is flattened to world space (the scene graph's transforms applied) and
"unindexed" into per-corner arrays, so vertex, face and texture colours all become the same per-corner layout.

A file that cannot be used raises `MeshError` with a one-line reason: unreadable, no triangles, non-finite or
zero-size vertices, a missing .mtl/.bin/texture file.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

MESH_SUFFIXES = (".obj", ".gltf", ".glb", ".ply", ".off", ".stl")
# a light warm grey: mid-range so lighting stays visible, not white so the silhouette stays visible on white
DEFAULT_COLOR = (0.7, 0.7, 0.7)


class MeshError(ValueError):
    """A mesh file that cannot be rendered; the message is one line: the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class MeshAsset:
    """Triangles of one object, per corner.

    corners `(F, 3, 3)` float64 world positions; colors `(F, 3, 3)` linear multipliers in [0, 1] (vertex colour ×
    material factor); uvs `(F, 3, 2)` texture coordinates (v up, as in OBJ/trimesh); texture_ids `(F,)` int64 index
    into `textures` or -1 (untextured); textures: `(H, W, 3)` float32 images in [0, 1], row 0 at the top;
    closed `(F,)` bool or None: the face belongs to a closed, outward-wound surface, so the renderer may skip it
    where it faces away from the camera (it is hidden by the rest of that surface).
    """

    corners: np.ndarray
    colors: np.ndarray
    uvs: np.ndarray
    texture_ids: np.ndarray
    textures: list[np.ndarray] = field(default_factory=list)
    source: str = ""
    closed: np.ndarray | None = None

    @property
    def num_faces(self) -> int:
        return len(self.corners)


def find_meshes(root: str | os.PathLike) -> list[Path]:
    """Every mesh file under `root` (recursively, sorted by relative path), or [root] if it is a mesh file.

    Each file is one object; a folder holding one .gltf with its .bin and textures (or an .obj with its .mtl and
    images) is therefore one object.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is neither a mesh file nor a folder")
    return sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES),
                  key=lambda p: p.relative_to(root).as_posix())


def _check_referenced_files(path: Path) -> None:
    """MeshError for a missing .mtl, texture or .bin that the file names (trimesh only warns and drops them)."""
    suffix = path.suffix.lower()
    if suffix == ".obj":
        text = path.read_text(errors="replace")
        for mtl_name in re.findall(r"^\s*mtllib\s+(.+?)\s*$", text, flags=re.MULTILINE):
            mtl = path.parent / mtl_name
            if not mtl.is_file():
                raise MeshError(path, f"material file {mtl_name} is missing")
            for image in re.findall(r"^\s*map_Kd\s+(?:-\S+\s+\S+\s+)*(.+?)\s*$", mtl.read_text(errors="replace"),
                                    flags=re.MULTILINE):
                if (mtl.parent / image).is_file():
                    continue
                posix = image.replace("\\", "/")
                if (mtl.parent / posix).is_file():  # Windows exporters write .\name.jpg; trimesh drops those
                    raise MeshError(path, f"texture {image} named by {mtl_name} is a Windows path that trimesh "
                                          f"does not resolve (write {posix} in the .mtl)")
                raise MeshError(path, f"texture {image} named by {mtl_name} is missing")
    elif suffix == ".gltf":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise MeshError(path, f"not valid glTF JSON ({error})") from None
        if not isinstance(data, dict):
            raise MeshError(path, "not a glTF file (the JSON is not an object)")
        for kind in ("buffers", "images"):
            items = data.get(kind, [])
            for item in items.values() if isinstance(items, dict) else items:  # glTF 1.0 keeps them by name
                uri = item.get("uri", "") if isinstance(item, dict) else ""
                if (uri and not uri.startswith("data:") and not (path.parent / uri).is_file()
                        and not (path.parent / unquote(uri)).is_file()):  # URIs may be percent-encoded
                    raise MeshError(path, f"{kind[:-1]} file {uri} is missing")


def _rgb(color, default=DEFAULT_COLOR) -> np.ndarray:
    """A trimesh colour (uint8 or float, RGB or RGBA, or None) → float RGB `(3,)` in [0, 1]."""
    if color is None:
        return np.asarray(default, dtype=np.float64)
    color = np.asarray(color, dtype=np.float64).reshape(-1)[:3]
    return color / 255.0 if color.max() > 1.0 else color


def _image(image) -> np.ndarray | None:
    if image is None:
        return None
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _mesh_part(mesh, textures: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """One trimesh.Trimesh → corners, colors, uvs `(F, 3, k)` and texture ids `(F,)` (textures appended)."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    corners = np.asarray(mesh.vertices, dtype=np.float64)[faces]
    count = len(faces)
    colors = np.broadcast_to(_rgb(None), (count, 3, 3)).copy()
    uvs = np.zeros((count, 3, 2))
    texture_ids = np.full(count, -1, dtype=np.int64)
    visual = mesh.visual
    if visual.kind == "texture":
        material = visual.material
        if hasattr(material, "baseColorFactor"):  # glTF PBR: the factor multiplies the texture
            image = material.baseColorTexture
            colors[:] = _rgb(material.baseColorFactor, default=(1.0, 1.0, 1.0))
        else:
            # OBJ: Blender's importer (the G-Objaverse renders) takes map_Kd alone and Kd only without a texture
            image = getattr(material, "image", None)
            colors[:] = 1.0 if image is not None else _rgb(getattr(material, "diffuse", None))
        texture = _image(image)
        if texture is not None and texture.shape[:2] == (2, 2) and np.all(texture == np.float32(100 / 255)):
            # trimesh's placeholder for UVs without an image (trimesh.visual.material.color_image): no colour
            texture = None
            colors[:] = _rgb(None)
        if texture is not None and visual.uv is not None and len(visual.uv) == len(mesh.vertices):
            uvs = np.asarray(visual.uv, dtype=np.float64)[faces]
            texture_ids[:] = len(textures)
            textures.append(texture)
        if "color" in getattr(visual, "vertex_attributes", {}):  # glTF COLOR_0 next to a texture multiplies it
            colors = colors * _colors01(visual.vertex_attributes["color"])[faces]
    elif visual.kind == "vertex":
        colors = _colors01(visual.vertex_colors)[faces]
    elif visual.kind == "face":
        colors = np.repeat(_colors01(visual.face_colors)[:, None], 3, axis=1)
    return corners, colors, uvs, texture_ids, np.full(count, _closed_outward(mesh))


def _closed_outward(mesh) -> bool:
    """Whether the mesh is one closed surface wound outwards (positive volume), judged after merging vertices by
    position (STL and UV seams duplicate them)."""
    import trimesh

    merged = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=True)
    return bool(merged.is_watertight and merged.is_winding_consistent and merged.volume > 0)


def _colors01(colors) -> np.ndarray:
    """uint8 RGBA colours `(N, 4)` → float RGB `(N, 3)` in [0, 1]."""
    colors = np.asarray(colors)
    scale = 255.0 if colors.dtype == np.uint8 or colors.max() > 1.0 else 1.0
    return colors[:, :3].astype(np.float64) / scale


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def load_mesh(path: str | os.PathLike) -> MeshAsset:
    """The triangles of a mesh file in its own coordinates (all meshes, node transforms applied); MeshError if
    the file is unusable."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise MeshError(path, "file not found")
    _check_referenced_files(path)
    try:
        with np.errstate(all="ignore"):  # NaN vertices are reported below, not as numpy warnings
            scene = trimesh.load(str(path), force="scene", process=False)
            geometries = scene.dump(concatenate=False)
    except MeshError:
        raise
    except Exception as error:  # trimesh raises anything from ValueError to struct.error on broken files
        message = _first_line(error)
        raise MeshError(path, f"cannot be read ({type(error).__name__}{': ' + message if message else ''})") from None
    meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        raise MeshError(path, "no triangles (empty mesh, point cloud or lines only)")
    for mesh in meshes:
        faces = np.asarray(mesh.faces)
        if faces.min() < 0 or faces.max() >= len(mesh.vertices):
            raise MeshError(path, f"face indices out of range (up to {int(faces.max())} for "
                                  f"{len(mesh.vertices)} vertices)")
    # the geometry is checked before colours and closedness are worked out from it
    points = np.concatenate([np.asarray(mesh.vertices, dtype=np.float64)[np.unique(mesh.faces)] for mesh in meshes])
    if not np.isfinite(points).all():
        raise MeshError(path, f"{int((~np.isfinite(points)).any(axis=-1).sum())} vertices are NaN or infinite")
    if not (points.max(axis=0) - points.min(axis=0)).max() > 0.0:
        raise MeshError(path, "all vertices coincide (zero size)")
    textures: list[np.ndarray] = []
    try:
        parts = [_mesh_part(mesh, textures) for mesh in meshes]
    except Exception as error:  # malformed colour/UV/texture data of a file that otherwise parsed
        raise MeshError(path, f"unusable colours or textures ({type(error).__name__}: {_first_line(error)})") from None
    corners, colors, uvs, texture_ids, closed = (np.concatenate(x) for x in zip(*parts))
    return MeshAsset(corners, np.clip(colors, 0.0, 1.0), uvs, texture_ids, textures, str(path), closed)


def normalise(asset: MeshAsset, up: str = "z", half_extent: float = 0.45) -> MeshAsset:
    """The asset centred on its bounding box and scaled so its longest side spans [-half_extent, half_extent], in
    the z-up world of the procedural data (`up="y"` rotates y-up sources, glTF's convention, by +90° about x:
    (x, y, z) → (x, -z, y), so +y becomes +z and the front (+z) faces -y)."""
    if up not in ("z", "y"):
        raise ValueError(f"up must be 'z' or 'y', got {up!r}")
    corners = asset.corners
    if up == "y":
        corners = np.stack([corners[..., 0], -corners[..., 2], corners[..., 1]], axis=-1)
    points = corners.reshape(-1, 3)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = 2.0 * half_extent / (high - low).max()
    corners = (corners - (low + high) / 2.0) * scale
    # a rotation and a positive scale: outward winding stays outward, so `closed` carries over
    return MeshAsset(corners, asset.colors, asset.uvs, asset.texture_ids, asset.textures, asset.source, asset.closed)
