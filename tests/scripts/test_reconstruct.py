"""reconstruct: per object the views, turntable, mesh, latent and metrics files, with metrics equal to the
deterministic render of the posterior mean scored against the stored novel views."""
from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import trimesh

from checkpoints.loader import load_vae_folder
from datasets.multiview import target_tensors
from datasets.stores import open_store
from evaluations.image_metrics import psnr, ssim
from nsr.encoding import record_encoder_input
from nsr.mesh import density_grid

ENCODER_VIEWS = (25, 0)  # the tiny VAE encodes (and trains on) the first 2 extraction views
NOVEL_VIEWS = [4, 9, 18, 26, 27, 33]  # the other stored views, in store order


@pytest.fixture(scope="module")
def expected(procedural_data, vae32_folder):
    """Per object: posterior-mean latent, PSNR / SSIM of its novel views, and an iso-level its field crosses."""
    vae = load_vae_folder(vae32_folder)
    store = open_store(procedural_data)
    out = {}
    with torch.no_grad():
        for index in range(len(store)):
            record = store.read(index)
            latent = vae.encode(record_encoder_input(record, ENCODER_VIEWS, vae.config)[None]).latent(sample=False)
            triplane = vae.decode(latent)
            target = target_tensors(record.select(NOVEL_VIEWS), 32)
            pred = vae.render(triplane, target["target_cameras"][None], 32, deterministic=True)["rgb"][0].clamp(-1, 1)
            sigma = density_grid(lambda p, t=triplane: {"sigma": vae.query(t, p[None])["sigma"][0]}, 16, (-0.45, 0.45))
            out[record.object_id] = {"latent": latent[0], "psnr": psnr(pred, target["target_rgb"], 2.0).item(),
                                     "ssim": ssim(pred, target["target_rgb"], (-1.0, 1.0)).item(),
                                     "level": float(np.median(sigma))}
    return out


def test_reconstruction_writes_files_and_metrics(script, procedural_data, vae32_folder, expected, tmp_path, capsys):
    ids = sorted(expected)
    out = tmp_path / "rec"
    script("reconstruct").main(["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out", str(out),
                                "--index", "0", "--object-id", ids[1], "--device", "cpu", "--video-views", "4",
                                "--video-resolution", "32", "--mesh-resolution", "24",
                                "--mesh-level", f"{expected[ids[0]]['level']:.6f}"])
    summary = json.loads((out / "reconstruction.json").read_text())
    assert [o["object_id"] for o in summary["objects"]] == ids
    for obj in summary["objects"]:
        want = expected[obj["object_id"]]
        folder = out / obj["object_id"].replace("/", "_")
        assert obj["eval_views"] == NOVEL_VIEWS and obj["views"] == list(ENCODER_VIEWS) and obj["resolution"] == 32
        assert obj["psnr"] == pytest.approx(want["psnr"], abs=1e-4)
        assert obj["ssim"] == pytest.approx(want["ssim"], abs=1e-5)
        assert json.loads((folder / "metrics.json").read_text())["psnr"] == obj["psnr"]
        np.testing.assert_allclose(np.load(folder / "latent.npy"), want["latent"].numpy(), atol=1e-5)
        with imageio.get_reader(folder / "turntable.mp4", format="FFMPEG") as reader:
            frames = list(reader.iter_data())
        assert len(frames) == 4 and frames[0].shape == (32, 64, 3)  # [RGB | depth]
        sheet = imageio.imread(folder / "views.png")
        assert sheet.shape[0] > 2 * 32 and sheet.shape[1] > 6 * 32  # 2 rows (truth, reconstruction) × 6 views
        if obj["object_id"] == ids[0]:  # the level came from this object's own field, so it has a surface
            mesh = trimesh.load(folder / "mesh.ply")
            assert len(mesh.faces) == obj["mesh"]["faces"] > 0
    assert summary["mean"]["psnr"] == pytest.approx(np.mean([expected[i]["psnr"] for i in ids]), abs=1e-4)
    assert capsys.readouterr().out.startswith(f"reconstruct.py: 2 object(s) → {out}; mean psnr ")


def test_unknown_object_is_one_line(script, procedural_data, vae32_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script("reconstruct").main(["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out",
                                    str(tmp_path / "x"), "--object-id", "sofa/9/9", "--device", "cpu"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("reconstruct.py: error: object 'sofa/9/9' is not in ") and err.count("\n") == 1


def test_bad_numbers_are_refused_before_any_work(script, tmp_path, capsys):
    """One line per bad flag, exit 2, before the checkpoint (which does not even exist here) is read."""
    with pytest.raises(SystemExit) as exit_info:
        script("reconstruct").main(["--ckpt", str(tmp_path / "missing"), "--data", str(tmp_path), "--out",
                                    str(tmp_path / "out"), "--mesh-resolution", "5000", "--video-fps", "nan",
                                    "--seed", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert "reconstruct.py: error: --video-fps must be a finite number, got nan" in err
    assert any(line.startswith("reconstruct.py: error: --mesh-resolution must be at most 1024") for line in err)
    assert "reconstruct.py: error: --seed must be at least 0, got -1" in err
    assert not (tmp_path / "out").exists()
