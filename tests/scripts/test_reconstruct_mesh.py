"""reconstruct.py --mesh: a real mesh file rendered on the rig, reconstructed, and its mesh scored against it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from checkpoints.loader import load_vae_folder
from datasets.meshes.load import load_mesh, normalise
from datasets.meshes.records import mesh_object_id, mesh_record
from nsr.encoding import record_encoder_input
from nsr.mesh import Mesh, MeshStats, chamfer_distance, f_score, mesh_to_points, rotate_to_y_up

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/mesh_files.py (tests/ is not a package)
from mesh_files import position_colored_sphere  # noqa: E402

ENCODER_VIEWS = (25, 0)  # the tiny VAE of vae32_folder encodes the first 2 extraction views


def _surface_points(vertices, faces, n, seed=0):
    mesh = Mesh(np.asarray(vertices), np.asarray(faces), np.zeros((len(vertices), 3), np.uint8),
                MeshStats(0, 0, False, 0.0))
    return mesh_to_points(mesh, n, seed=seed)


def test_mesh_reconstruction_writes_its_record_with_chamfer_and_f_score(script, vae32_folder, tmp_path, capsys):
    path = tmp_path / "ball.ply"
    position_colored_sphere(subdivisions=1).export(path)
    asset = normalise(load_mesh(path))
    record = mesh_record(asset, "ball.ply", range(40), 32, caption="ball")
    vae = load_vae_folder(vae32_folder)
    with torch.no_grad():  # an iso-level the random field crosses: the median density around the object
        triplane = vae.decode(vae.encode(record_encoder_input(record, ENCODER_VIEWS, vae.config)[None]).latent(
            sample=False))
        sigma = vae.query(triplane, torch.rand(1, 4096, 3) * 0.9 - 0.45)["sigma"]
    level = float(sigma.median())
    out = tmp_path / "rec"
    script("reconstruct").main(["--ckpt", str(vae32_folder), "--mesh", str(path), "--out", str(out), "--device",
                                "cpu", "--resolution", "32", "--video-views", "2", "--video-resolution", "32",
                                "--mesh-resolution", "24", "--mesh-level", f"{level:.6f}", "--points", "2000"])
    summary = json.loads((out / "reconstruction.json").read_text())
    (obj,) = summary["objects"]
    assert obj["object_id"] == mesh_object_id("ball.ply") and obj["caption"] == "ball"
    assert obj["views"] == list(ENCODER_VIEWS) and len(obj["eval_views"]) == 38 and np.isfinite(obj["psnr"])
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert json.loads((folder / "metrics.json").read_text())["mesh"] == obj["mesh"]
    # the scores are those of the written (y-up) mesh against the y-up input surface
    written = trimesh.load(folder / "mesh.ply", process=False)
    ours = _surface_points(written.vertices, written.faces, 2000)
    reference = rotate_to_y_up(_surface_points(asset.corners.reshape(-1, 3),
                                               np.arange(asset.num_faces * 3).reshape(-1, 3), 2000))
    assert obj["mesh"]["chamfer"]["l1"] == pytest.approx(chamfer_distance(ours, reference)["l1"], abs=1e-6)
    assert obj["mesh"]["f_score"] == pytest.approx(f_score(ours, reference, 0.02), abs=1e-6)
    assert capsys.readouterr().out.startswith(f"reconstruct.py: 1 object(s) → {out}; mean psnr ")


def test_a_bad_mesh_is_one_line(script, vae32_folder, tmp_path, capsys):
    bad = tmp_path / "nan.off"
    bad.write_text("OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(SystemExit) as exit_info:
        script("reconstruct").main(["--ckpt", str(vae32_folder), "--mesh", str(bad), "--out", str(tmp_path / "x"),
                                    "--device", "cpu"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"reconstruct.py: error: {bad}: 1 vertices are NaN or infinite\n"
