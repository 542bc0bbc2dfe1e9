"""scripts/render_meshes.py: a folder of real mesh files → a store the stage-1 Dataset and train_vae.py read."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from datasets.meshes.load import load_mesh, normalise
from datasets.meshes.records import mesh_object_id, mesh_record
from datasets.rig import default_view_ids
from datasets.stores import open_store
from nsr.cameras import shapenet_rig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/mesh_files.py (tests/ is not a package)
from mesh_files import write_bad_meshes, write_good_meshes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOOD = ["box.off", "box.stl", "quad.glb", "quad/quad.obj", "sphere.ply", "two.glb"]


@pytest.fixture(scope="module")
def mesh_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meshes")
    write_good_meshes(folder)
    bad = write_bad_meshes(folder / "bad")
    return folder, {f"bad/{rel}": phrase for rel, phrase in bad.items()}


def _args(meshes, out, *extra):
    return ["--meshes", str(meshes), "--out", str(out), "--views", "6", "--resolution", "32", "--workers", "1",
            "--no-progress", *extra]


def _bad_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bad mesh: ")]


def test_skip_bad_renders_the_good_files_and_reports_each_bad_one_in_a_line(script, mesh_folder, tmp_path, capsys):
    folder, bad = mesh_folder
    summary = script("render_meshes").main(_args(folder, tmp_path / "out", "--skip-bad"))
    assert (summary["objects"], summary["views"], summary["failures"]) == (len(GOOD), 6 * len(GOOD), len(bad))
    captured = capsys.readouterr()
    lines = _bad_lines(captured.err)
    assert len(lines) == len(bad)
    for rel, phrase in bad.items():
        assert sum(str(folder / rel) + ":" in line and phrase in line for line in lines) == 1, rel
    assert f"{len(GOOD)} objects × 6 views" in captured.out and f"{len(bad)} failures" in captured.out
    store = open_store(tmp_path / "out")
    ids = [store.object_id(i) for i in range(len(store))]
    assert sorted(ids) == sorted(mesh_object_id(r) for r in GOOD)
    record = store.read(ids.index(mesh_object_id("sphere.ply")))
    assert record.caption == "sphere" and list(record.view_ids) == [0, 9, 18, 25, 27, 33]  # the tree sorts them
    assert record.color.shape == (6, 32, 32, 3) and 0.2 < record.alpha.mean() < 0.9
    assert ((record.depth > 0) == (record.alpha > 0)).all()
    # the sphere's vertex colours run from (0.5 ± 0.5): red-dominant where +x faces the first ring camera (view 0)
    front = record.color[0][record.alpha[0] == 1]
    assert front[:, 0].mean() > front[:, 1].mean() + 0.1

    again = script("render_meshes").main(_args(folder, tmp_path / "out", "--skip-bad"))
    assert (again["objects"], again["already_complete"], again["failures"]) == (0, len(GOOD), len(bad))


def test_without_skip_bad_it_stops_at_the_first_bad_file_and_keeps_what_it_wrote(script, mesh_folder, tmp_path,
                                                                                   capsys):
    folder, bad = mesh_folder
    with pytest.raises(SystemExit, match="stopped at a bad mesh"):
        script("render_meshes").main(_args(folder, tmp_path / "out"))
    assert len(_bad_lines(capsys.readouterr().err)) == 1
    # bad/ sorts first, so nothing is rendered yet; a good folder then writes and a re-run resumes
    good = tmp_path / "good"
    write_good_meshes(good)
    (good / "zz_broken.off").write_text("OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(SystemExit):
        script("render_meshes").main(_args(good, tmp_path / "out2"))
    assert len(open_store(tmp_path / "out2")) == len(GOOD)
    summary = script("render_meshes").main(_args(good, tmp_path / "out2", "--skip-bad"))
    assert (summary["objects"], summary["already_complete"], summary["failures"]) == (0, len(GOOD), 1)


def test_shards_partition_the_objects_into_their_own_parts(script, tmp_path, monkeypatch):
    folder = tmp_path / "meshes"
    write_good_meshes(folder)
    ids = []
    for k in range(2):
        script("render_meshes").main(_args(folder, tmp_path / "out", "--format", "chunks", "--shard", f"{k}/2"))
        store = open_store(tmp_path / "out" / f"part-{k:05d}-of-00002")
        ids.append({store.object_id(i) for i in range(len(store))})
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {mesh_object_id(r) for r in GOOD}
    # under torchrun, rank r of W refines shard K/N into K·W + r of N·W
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    summary = script("render_meshes").main(_args(folder, tmp_path / "out", "--format", "chunks", "--shard", "0/1"))
    assert summary["shard"] == "1/2" and summary["already_complete"] == len(ids[1]) and summary["objects"] == 0


def test_captions_from_a_cap3d_csv_and_wds_parts_resume(script, tmp_path):
    folder = tmp_path / "meshes"
    write_good_meshes(folder)
    captions = tmp_path / "Cap3D_automated_Objaverse.csv"
    captions.write_text('sphere,"a ball, red and green"\ntwo,a cube beside a ball\n', encoding="utf-8")
    out = tmp_path / "wds"
    summary = script("render_meshes").main(_args(folder, out, "--format", "wds", "--captions", str(captions)))
    assert summary["objects"] == len(GOOD)
    store = open_store(out)
    captions_by_id = {store.object_id(i): store.read(i).caption for i in range(len(store))}
    assert captions_by_id[mesh_object_id("sphere.ply")] == "a ball, red and green"
    assert captions_by_id[mesh_object_id("two.glb")] == "a cube beside a ball"
    assert captions_by_id[mesh_object_id("quad/quad.obj")] == "quad"
    again = script("render_meshes").main(_args(folder, out, "--format", "wds"))
    assert (again["objects"], again["already_complete"]) == (0, len(GOOD))
    (folder / "late.stl").write_bytes((folder / "box.stl").read_bytes())  # a file added after the part was done
    with pytest.raises(SystemExit, match="finished wds part without 1 of these objects"):
        script("render_meshes").main(_args(folder, out, "--format", "wds"))


def test_an_interrupted_lmdb_part_is_set_aside_and_redone(script, tmp_path):
    folder = tmp_path / "meshes"
    write_good_meshes(folder)
    out = tmp_path / "lmdb"
    script("render_meshes").main(_args(folder, out, "--format", "lmdb"))
    (out / "render_meshes.json").unlink()  # as if the run had died before finishing
    summary = script("render_meshes").main(_args(folder, out, "--format", "lmdb"))
    assert summary["objects"] == len(GOOD)
    assert len(open_store(out)) == len(GOOD) and len(open_store(tmp_path / "lmdb.incomplete-0")) == len(GOOD)


def test_the_rendered_store_trains_two_vae_steps(script, tmp_path):
    folder = tmp_path / "meshes"
    write_good_meshes(folder)
    data = tmp_path / "data"
    script("render_meshes").main(["--meshes", str(folder), "--out", str(data), "--views", "12", "--resolution",
                                  "64", "--workers", "1", "--no-progress"])
    out = tmp_path / "run"
    light = {"decoder": {"depth": 1}, "renderer": {"depth_samples": 8, "importance_samples": 8}}
    cmd = [sys.executable, "scripts/train_vae.py", "--preset", "tiny", "--data", str(data), "--out", str(out),
           "--max-steps", "2", "--vae-overrides", json.dumps(light), "--no-progress", "--num-target-views", "1"]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=300)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"step"' in line]
    assert [entry["step"] for entry in log][-1] == 2
    assert all(np.isfinite(v) for entry in log for k, v in entry.items() if k.startswith("loss"))


def test_shapenet_rig_and_y_up_sources(script, tmp_path):
    folder = tmp_path / "meshes"
    folder.mkdir()
    trimesh.creation.box(extents=(0.2, 1.0, 0.4)).export(folder / "tall.glb")  # tallest along y
    out = tmp_path / "out"
    script("render_meshes").main(_args(folder, out, "--rig", "shapenet", "--up", "y", "--views", "2"))
    record = open_store(out).read(0)
    expected = shapenet_rig(40)[torch.tensor(default_view_ids(2))].numpy()
    order = np.argsort(default_view_ids(2))  # the tree returns views sorted by id
    np.testing.assert_allclose(record.cameras, expected[order], atol=1e-6)
    # --up reaches the normalisation: the stored silhouettes are those of the y-up reading, not of the z-up one
    rendered = {up: mesh_record(normalise(load_mesh(folder / "tall.glb"), up=up), "tall.glb",
                                record.view_ids, 32, rig="shapenet").alpha for up in ("y", "z")}
    np.testing.assert_array_equal(record.alpha, rendered["y"])
    assert (record.alpha != rendered["z"]).mean() > 0.05


def test_a_missing_folder_or_a_broken_caption_file_is_one_line(script, tmp_path):
    with pytest.raises(SystemExit, match=f"render_meshes.py: error: {tmp_path / 'nowhere'} is neither"):
        script("render_meshes").main(_args(tmp_path / "nowhere", tmp_path / "out"))
    (tmp_path / "meshes").mkdir()
    (tmp_path / "captions.json").write_text("{not json")
    with pytest.raises(SystemExit, match=f"render_meshes.py: error: {tmp_path / 'captions.json'}: not valid JSON"):
        script("render_meshes").main(_args(tmp_path / "meshes", tmp_path / "out", "--captions",
                                           str(tmp_path / "captions.json")))
