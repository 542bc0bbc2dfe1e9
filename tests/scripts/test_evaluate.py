"""The evaluate.py contract on the random-init tiny pipeline: metrics.json structure and value sanity, the report
and its pictures, one-line errors; and the metric plumbing on known answers (ground truth scored against itself).

One in-process run (3 held-out objects, 2 samples per prompt, 16² renders) serves the structure tests; its numbers
are noise (random weights), so the tests check consistency, not quality.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoints.loader import load_vae_folder
from datasets.multiview import target_tensors
from datasets.procedural import GenerationConfig, render_records
from evaluations.fid import find_inception_weights
from evaluations.image_metrics import psnr
from evaluations.point_distances import prepare
from nsr.encoding import default_encoder_views, record_encoder_input
from nsr.trainer import encoder_resolution

REPO = Path(__file__).resolve().parents[2]
START, RESOLUTION, NOVEL_VIEWS, SAMPLES = 1_000_000, 16, (27, 4), 2


@pytest.fixture(scope="module")
def run(tiny_pipeline_dir, tiny_mesh_level, tmp_path_factory, script, torch_threads):
    """(output folder, metrics) of one evaluation of every task of the tiny pipeline."""
    out = tmp_path_factory.mktemp("eval") / "run"
    with torch_threads(1):  # module-scoped, so the function-scoped single_thread fixture does not cover it
        code = script("evaluate").main([
            "--ckpt", str(tiny_pipeline_dir), "--out", str(out), "--num-objects", "3", "--start-index", str(START),
            "--samples-per-prompt", str(SAMPLES), "--steps", "2", "--render-resolution", str(RESOLUTION),
            "--novel-views", ",".join(map(str, NOVEL_VIEWS)), "--judge-views", "0,27", "--judge-resolution", "16",
            "--mesh-resolution", "16", "--mesh-level", str(tiny_mesh_level), "--points", "32",
            "--surface-points", "400", "--classifier-objects", "12", "--classifier-steps", "3",
            "--figure-rows", "2", "--device", "cpu", "--training-logs", str(REPO / "docs/logs/t23d_small.jsonl")])
    assert code == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_metrics_structure(run):
    out, m = run
    assert m["tasks"] == m["completed_tasks"] == ["vae", "t23d", "i23d"] and m["finished"] is True
    assert len(m["run_id"]) == 32
    assert m["settings"]["num_objects"] == 3 and m["settings"]["start_index"] == START
    timings = m["timings_s"]
    assert set(timings) >= {"ground_truth_s", "vae_s", "judge_s", "t23d_s", "i23d_s", "total_s"}
    # Phases nest: each task's phases sum to at most the task's own time, and the tasks to at most the total.
    for task in ("ground_truth", "vae", "judge", "t23d", "i23d"):
        phases = [v for k, v in timings.items() if k.startswith(f"{task}.")]
        assert len(phases) >= 2 and sum(phases) <= timings[f"{task}_s"] + 1e-6
    assert {"vae.render_s", "vae.mesh_s", "vae.geometry_s", "t23d.sampling_s", "i23d.geometry_s",
            "t23d.generation_metrics_s"} <= set(timings)
    assert sum(timings[f"{t}_s"] for t in ("load_vae", "ground_truth", "vae", "judge", "t23d", "i23d")) \
        <= timings["total_s"]
    assert len(m["vae"]["objects"]) == 3
    assert len(m["t23d"]["samples"]) == len(m["i23d"]["samples"]) == 3 * SAMPLES
    seeds = [s["seed"] for s in m["t23d"]["samples"]]
    assert len(set(seeds)) == len(seeds), "every sample must get its own noise"
    for target in m["targets"]:
        if target["measured"] is None:
            continue
        value, goal = target["measured"], float(target["goal"].split()[1])
        assert target["met"] == ("yes" if (value >= goal if target["goal"].startswith(">=") else value <= goal)
                                 else "no")


def test_vae_psnr_matches_a_recomputation(run, tiny_pipeline_dir):
    _, m = run
    record = m["vae"]["objects"][0]
    assert record["index"] == START and len(record["psnr_views"]) == len(NOVEL_VIEWS)
    assert all(math.isfinite(v) for v in record["psnr_views"])
    assert record["psnr"] == pytest.approx(np.mean(record["psnr_views"]))

    vae = load_vae_folder(tiny_pipeline_dir / "vae")
    views = default_encoder_views(vae.config)
    encoder_views = render_records([START], GenerationConfig(resolution=encoder_resolution(vae.config),
                                                             view_ids=views))[0]
    novel = target_tensors(render_records([START], GenerationConfig(resolution=RESOLUTION,
                                                                    view_ids=NOVEL_VIEWS[:1]))[0], RESOLUTION)
    with torch.no_grad():
        latent = vae.encode(record_encoder_input(encoder_views, views, vae.config)[None]).latent(sample=False)
        rgb = vae.render(vae.decode(latent), novel["target_cameras"][None], RESOLUTION, deterministic=True)["rgb"]
    expected = psnr(rgb[0].clamp(-1, 1), novel["target_rgb"], data_range=2.0).item()
    assert record["psnr_views"][0] == pytest.approx(expected, abs=1e-3)


def test_generation_metrics_are_in_range(run):
    _, m = run
    for task in ("t23d", "i23d"):
        g = m[task]["generation"]
        rows = [*g["per_category"].values(), g["mean"], g["all"]]
        for row in rows:
            assert 0.0 <= row["cov"] <= 100.0 and 0.0 <= row["1-nna"] <= 100.0 and row["mmd"] >= 0.0
        assert g["all"]["num_samples"] + g["failed_samples"] == 3 * SAMPLES
        assert g["all"]["num_references"] == 3


def test_prompt_accuracy_is_the_matching_fraction(run):
    _, m = run
    samples, acc = m["t23d"]["samples"], m["t23d"]["prompt_accuracy"]
    category = [s["pred_category"] == s["category"] for s in samples]
    colour = [s["pred_colour"] == s["colour"] for s in samples]
    assert acc["generated"]["category"] == pytest.approx(100.0 * np.mean(category))
    assert acc["generated"]["colour"] == pytest.approx(100.0 * np.mean(colour))
    assert acc["generated"]["both"] == pytest.approx(100.0 * np.mean([a and b for a, b in zip(category, colour)]))
    for name, row in acc["per_category"].items():
        mine = [a and b for s, a, b in zip(samples, category, colour) if s["category"] == name]
        assert row["both"] == pytest.approx(100.0 * np.mean(mine))
    assert set(acc["ground_truth"]) == {"category", "colour", "both"}


def test_skip_reasons_are_recorded(run):
    _, m = run
    if find_inception_weights()[0] is None:
        for task in ("t23d", "i23d"):
            assert "Inception weights not found" in m[task]["fid"]["skipped"]
    if m["lpips_skipped"] is not None:
        assert "LPIPS" in m["lpips_skipped"] and m["vae"]["mean"]["lpips"] is None


def test_report_links_existing_pictures(run, script, tmp_path):
    out, m = run
    text = (out / "results.md").read_text()
    assert "## Issue targets" in text and "## VAE reconstruction" in text and "## Training logs" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 5 and all((out / link).is_file() for link in links)

    # --report-only re-renders from metrics.json alone, anywhere, with hand-written notes.
    notes = tmp_path / "notes.md"
    notes.write_text("## Discussion\n\nHand-written analysis.\n")
    report = tmp_path / "docs" / "RESULTS.md"
    assert script("evaluate").main(["--out", str(out), "--report-only", "--report-md", str(report),
                                    "--notes", str(notes)]) == 0
    text = report.read_text()
    assert "Hand-written analysis." in text and m["command"] in text
    assert all((report.parent / link).is_file() for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))


def test_errors_are_one_line(run, script, tiny_pipeline_dir, tmp_path, capsys):
    out, _ = run
    cases = [(["--ckpt", str(tmp_path / "missing"), "--out", str(tmp_path / "a")], "not found"),
             (["--ckpt", str(tiny_pipeline_dir), "--out", str(out)], "exists"),
             (["--ckpt", str(tiny_pipeline_dir), "--out", str(tmp_path / "b"), "--tasks", "vae,nerf"], "unknown task"),
             (["--out", str(tmp_path / "c"), "--report-only"], "run the evaluation first")]
    for argv, message in cases:
        assert script("evaluate").main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    result = subprocess.run([sys.executable, str(REPO / "scripts/evaluate.py"), "--ckpt", str(tmp_path / "missing"),
                             "--out", str(tmp_path / "d")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("device", [None, torch.device("cpu")], ids=["kdtree", "brute-force"])
def test_ground_truth_scored_against_itself(script, device):
    """Known answers: the GT as the 'reconstruction' gives PSNR = ∞, SSIM = 1, Chamfer 0, F = 1; a uniform 0.1
    brightening gives PSNR = 10·log10(2² / 0.1²); points shifted by 0.01 give Chamfer-L1 = 0.01, L2 = 0.01², on
    both nearest-neighbour routes (the brute force is CUDA's, run here on the CPU)."""
    evaluate = script("evaluate")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=generator) * 1.6 - 0.8
    grid = np.stack(np.meshgrid(*[np.linspace(-0.4, 0.4, 9)] * 3, indexing="ij"), -1).reshape(-1, 3)

    same = evaluate.image_scores(images, images)
    assert same["psnr"] == math.inf and all(v == math.inf for v in same["psnr_views"])
    assert same["ssim"] == pytest.approx(1.0, abs=1e-6)
    same = evaluate.geometry_scores(grid, grid, threshold=0.01, device=device)
    assert same["chamfer_l1"] == 0.0 and same["chamfer_l2"] == 0.0 and same["f_score"] == 1.0
    assert all(f == 1.0 for f in same["f_curve"].values())

    assert evaluate.image_scores(images + 0.1, images)["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-3)
    truth = prepare(grid, device)  # a prepared truth, as the VAE and I23D branches pass it, scores the same
    shifted = evaluate.geometry_scores(grid + [0.01, 0, 0], truth, threshold=0.005, device=device)
    assert shifted["chamfer_l1"] == pytest.approx(0.01) and shifted["chamfer_l2"] == pytest.approx(1e-4)
    assert shifted["f_score"] == shifted["precision"] == shifted["recall"] == 0.0
    # (0.01 itself sits on the rounding of grid + 0.01, so the curve is only pinned away from it.)
    assert [shifted["f_curve"][t] for t in ("0.005", "0.02", "0.05")] == [0.0, 1.0, 1.0]

    no_mesh = evaluate.geometry_scores(None, grid, threshold=0.01, device=device)
    assert no_mesh["chamfer_l1"] is None and no_mesh["f_score"] is None and no_mesh["f_curve"] is None


def test_a_failed_task_leaves_the_finished_ones(script, tiny_pipeline_dir, tiny_mesh_level, tmp_path, monkeypatch):
    """metrics.json is written after every task: when image-to-3D fails, the VAE results are on disk, marked
    unfinished, and --report-only turns them into a report that says so."""
    evaluate = script("evaluate")

    def fail(*args, **kwargs):
        raise RuntimeError("i23d broke")

    monkeypatch.setattr(evaluate, "evaluate_i23d", fail)
    out = tmp_path / "partial"
    with pytest.raises(RuntimeError, match="i23d broke"):
        evaluate.main(["--ckpt", str(tiny_pipeline_dir), "--out", str(out), "--tasks", "vae,i23d",
                       "--num-objects", "2", "--render-resolution", "16", "--novel-views", "27",
                       "--mesh-resolution", "16", "--mesh-level", str(tiny_mesh_level), "--points", "32",
                       "--surface-points", "200", "--figure-rows", "2", "--device", "cpu"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["finished"] is False and m["completed_tasks"] == ["vae"] and "i23d" not in m
    assert len(m["vae"]["objects"]) == 2 and m["timings_s"]["vae_s"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["figures", "metrics.json"]  # no temporary left behind
    assert evaluate.main(["--out", str(out), "--report-only"]) == 0
    text = (out / "results.md").read_text()
    assert "**Partial run**: it stopped before finishing i23d" in text and "## VAE reconstruction" in text


def test_metrics_file_replaces_only_its_own_run(script, tmp_path):
    evaluate = script("evaluate")
    path = tmp_path / "metrics.json"
    mine, other = evaluate.MetricsFile(path), evaluate.MetricsFile(path)
    mine.write({"step": 1})
    mine.write({"step": 2})  # this run's own file: replaced
    assert json.loads(path.read_text()) == {"step": 2, "run_id": mine.run_id}
    with pytest.raises(FileExistsError, match="not this run's"):
        other.write({"step": 1})
    path.write_text(json.dumps({"run_id": "a previous run"}))  # replaced behind this run's back
    with pytest.raises(FileExistsError, match="not this run's"):
        mine.write({"step": 3})
    assert json.loads(path.read_text()) == {"run_id": "a previous run"}


def test_seeds_out_of_range_are_one_line_each(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        script("evaluate").parse_args(["--out", str(tmp_path / "o"), "--seed", "-5", "--data-seed", str(2**40)])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "evaluate.py: error: --seed must be at least 0, got -5",
        f"evaluate.py: error: --data-seed must be at most 4294967295 (seeds are 32-bit), got {2**40}"]
