"""Real files from Debian's assimp-testmodels (`apt-get install assimp-testmodels`, /usr/share/assimp/models):
the good ones render, the broken ones give one line each and --skip-bad goes past them. Skipped where the
package is not installed."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.meshes.load import MeshError, load_mesh, normalise
from datasets.meshes.records import mesh_record

MODELS = Path("/usr/share/assimp/models")
pytestmark = pytest.mark.skipif(not MODELS.is_dir(), reason="needs the assimp-testmodels Debian package")

GOOD = ["OBJ/box.obj", "glTF2/BoxTextured-glTF/BoxTextured.gltf", "glTF2/BoxTextured-glTF-Binary/BoxTextured.glb",
        "glTF2/2CylinderEngine-glTF-Binary/2CylinderEngine.glb", "PLY/cube.ply", "PLY/cube_uv.ply",
        "OFF/Cube.off", "STL/Spider_binary.stl"]
BAD = {"invalid/empty.obj": "no triangles", "invalid/malformed.obj": "cannot be read",
       "invalid/OutOfMemory.off": "cannot be read", "invalid/empty.ply": "cannot be read",
       "OBJ/testpoints.obj": "no triangles", "glTF2/MissingBin/BoxTextured.gltf": "BoxTextured0.bin is missing",
       "glTF2/IndexOutOfRange/IndexOutOfRange.gltf": "face indices out of range",
       "glTF2/BoxWithInfinites-glTF-Binary/BoxWithInfinites.glb": "NaN or infinite",
       "OBJ/spider.obj": "Windows path"}


@pytest.mark.parametrize("rel", GOOD)
def test_good_models_render_in_every_view(rel):
    asset = normalise(load_mesh(MODELS / rel), up="y")
    record = mesh_record(asset, rel, (25, 0, 9, 18, 27, 33), 32)
    assert (record.alpha.reshape(6, -1).max(axis=1) == 1).all()
    assert ((record.depth > 0) == (record.alpha > 0)).all()


def test_the_textured_gltf_box_shows_its_texture():
    asset = normalise(load_mesh(MODELS / "glTF2/BoxTextured-glTF/BoxTextured.gltf"), up="y")
    assert len(asset.textures) == 1 and (asset.texture_ids == 0).all()
    record = mesh_record(asset, "box.gltf", (0,), 64)
    lit = record.color[0][record.alpha[0] == 1]
    # the Cesium logo: blue and green areas, far from the flat grey an untextured mesh gets
    assert lit.std(axis=0).mean() > 0.05 and np.ptp(lit[:, 2] - lit[:, 1]) > 0.2


def test_float_vertex_colours_and_uvs_without_an_image():
    np.testing.assert_array_equal(load_mesh(MODELS / "PLY/float-color.ply").colors, [[[0, 0, 1]] * 3])  # float RGBA
    # UVs without a texture: trimesh's 2×2 placeholder image is not taken for a texture, the default grey is used
    asset = load_mesh(MODELS / "PLY/cube_uv.ply")
    assert asset.textures == [] and np.allclose(asset.colors, 0.7)


@pytest.mark.parametrize("rel", sorted(BAD))
def test_broken_models_give_one_line(rel):
    with pytest.raises(MeshError) as error:
        load_mesh(MODELS / rel)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(MODELS / rel)) and BAD[rel] in message, message


def test_skip_bad_renders_the_good_models_past_the_broken_ones(script, tmp_path, capsys):
    folder = tmp_path / "models"
    for rel in GOOD + sorted(BAD):
        source = MODELS / rel
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # a glTF or OBJ comes with the files beside it (.bin, .mtl, textures)
        for sibling in source.parent.iterdir() if source.suffix in (".gltf", ".obj") else [source]:
            if sibling.is_file() and not (target.parent / sibling.name).exists():
                shutil.copy(sibling, target.parent / sibling.name)
    # the copied siblings of OBJ/ and glTF2/ folders hold more mesh files than listed: count what is there
    with torch.no_grad():
        summary = script("render_meshes").main(["--meshes", str(folder), "--out", str(tmp_path / "out"), "--views",
                                                "2", "--resolution", "16", "--workers", "1", "--no-progress",
                                                "--skip-bad", "--up", "y"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bad mesh: ")]
    assert summary["failures"] == len(lines) >= len(BAD)
    for rel in BAD:
        assert sum(line.startswith(f"bad mesh: {folder / rel}: ") for line in lines) == 1, rel
    assert summary["objects"] >= len(GOOD)
