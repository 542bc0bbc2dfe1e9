"""Small real mesh files written with trimesh's exporters (so the loaders see genuine OBJ/MTL, GLB, PLY, OFF, STL
bytes), and broken ones, for tests/datasets/test_meshes.py and tests/scripts/test_render_meshes.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# the quad's 2×2 texture: rows top→bottom (image order), as uint8 RGB
QUADRANTS = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]]], dtype=np.uint8)
TEXELS = 16  # texels per quadrant


def textured_quad(factor=(255, 255, 255, 255)):
    """The square [-1, 1]² in the z = 0 plane, UV (0, 0) at (-1, -1), textured with QUADRANTS; `factor` (uint8
    RGBA) is the material's diffuse colour: the glTF exporter writes it as baseColorFactor, which multiplies."""
    import trimesh
    from PIL import Image

    image = Image.fromarray(QUADRANTS.repeat(TEXELS, 0).repeat(TEXELS, 1))
    vertices = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float64)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    material = trimesh.visual.material.SimpleMaterial(image=image, diffuse=factor)
    return trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))


def position_colored_sphere(subdivisions: int = 2):
    """An icosphere of radius 0.45 whose vertex colours are the linear function p / 0.9 + 0.5 of the position."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.45)
    rgb = np.rint((sphere.vertices / 0.9 + 0.5) * 255).clip(0, 255).astype(np.uint8)
    sphere.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return sphere


def write_good_meshes(folder: Path) -> list[Path]:
    """One file of each format: quad/quad.obj (+MTL, PNG), quad.glb, sphere.ply (vertex colours), two.glb (two
    meshes under node transforms), box.off, box.stl."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quad").mkdir(exist_ok=True)
    quad = textured_quad()
    quad.export(folder / "quad" / "quad.obj")
    quad.export(folder / "quad.glb")
    position_colored_sphere().export(folder / "sphere.ply")
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    scene = trimesh.Scene()
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([2.0, 0.0, 0.0]))
    scene.add_geometry(trimesh.creation.icosphere(subdivisions=1, radius=0.5))
    scene.export(folder / "two.glb")
    box.export(folder / "box.off")
    box.export(folder / "box.stl")
    return [folder / "quad" / "quad.obj", folder / "quad.glb", folder / "sphere.ply", folder / "two.glb",
            folder / "box.off", folder / "box.stl"]


def write_bad_meshes(folder: Path) -> dict[str, str]:
    """Broken files → a phrase their MeshError must contain."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.glb").write_bytes(b"glTF\x02\x00\x00\x00 truncated binary header")
    (folder / "empty.obj").write_text("# nothing\n")
    (folder / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")  # vertices, no faces
    (folder / "nan.off").write_text("OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (folder / "flat.off").write_text("OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n")
    (folder / "notex").mkdir(exist_ok=True)
    textured_quad().export(folder / "notex" / "notex.obj")
    next((folder / "notex").glob("*.png")).unlink()
    (folder / "nobin").mkdir(exist_ok=True)
    files = trimesh.creation.box().export(file_type="gltf")
    for name, data in files.items():
        (folder / "nobin" / name).write_bytes(data)
    gltf = json.loads((folder / "nobin" / "model.gltf").read_text())
    (folder / "nobin" / gltf["buffers"][0]["uri"]).unlink()
    return {"garbage.glb": "cannot be read", "empty.obj": "no triangles", "points.obj": "no triangles",
            "nan.off": "NaN or infinite", "flat.off": "zero size", "notex/notex.obj": "texture",
            "nobin/model.gltf": "missing"}
