"""scripts/compare_evaluations.py on hand-written metrics.json files."""
import json

import pytest

SETTINGS = {"num_objects": 24, "start_index": 1_000_000, "data_seed": 0, "samples_per_prompt": 1}


def _t23d(sampler, steps, category, nna, seconds):
    return {"sampler": sampler, "steps": steps, "cfg_scale": 3.0,
            "prompt_accuracy": {"generated": {"category": category, "colour": 10.0, "both": 5.0}},
            "generation": {"mean": {"cov": 50.0, "mmd": 0.01, "1-nna": nna}}, "seconds_per_sample": seconds}


def _write(folder, **tasks):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"settings": dict(SETTINGS, **tasks.pop("settings", {})),
                                                     **tasks}))
    return folder


def test_rows_deltas_and_markdown(script, tmp_path, capsys):
    edm = _write(tmp_path / "edm", t23d=_t23d("euler_edm", 250, 50.0, 80.0, 16.0))
    dpm = _write(tmp_path / "dpm", t23d=_t23d("dpm_solver_pp", 25, 41.5, 77.0, 1.5),
                 i23d={"sampler": "heun", "steps": 25, "cfg_scale": 4.0,
                       "mean": {"novel_psnr": 16.1, "novel_ssim": 0.78, "chamfer_l1": 0.03, "f_score": 0.2}})
    compare = script("compare_evaluations")
    tables = compare.compare({str(edm): compare.load_run(edm), str(dpm): compare.load_run(dpm)})
    rows = tables["t23d"]
    assert list(rows) == ["euler_edm 250 · CFG 3.0", "dpm_solver_pp 25 · CFG 3.0"]
    fast = rows["dpm_solver_pp 25 · CFG 3.0"]
    assert fast["Δ category %"] == pytest.approx(-8.5) and fast["Δ 1-NNA % (lower)"] == pytest.approx(-3.0)
    assert fast["Δ s / sample"] == pytest.approx(-14.5)
    assert "Δ category %" not in rows["euler_edm 250 · CFG 3.0"]
    assert list(tables["i23d"]) == ["heun 25 · CFG 4.0"] and tables["i23d"]["heun 25 · CFG 4.0"]["COV %"] is None
    dopri5 = {"sampler": "dopri5", "steps": 25, "cfg_scale": 4.0}
    assert compare.run_name("i23d", dopri5) == "dopri5 (adaptive) · CFG 4.0"

    out = tmp_path / "cmp.md"
    assert compare.main([str(edm), str(dpm), "--out", str(out)]) == 0
    text = out.read_text()
    assert "### t23d (Δ against euler_edm 250 · CFG 3.0)" in text
    assert "| dpm_solver_pp 25 · CFG 3.0 | 41.5 | 10.0 | 5.0 | 50.0 | 0.0100 | 77.0 | 1.50 | -8.5 |" in text
    assert compare.main([str(edm), str(dpm), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_refuses_missing_corrupt_and_mismatched_runs(script, tmp_path, capsys):
    compare = script("compare_evaluations")
    good = _write(tmp_path / "a", t23d=_t23d("ddim", 50, 40.0, 70.0, 3.0))
    assert compare.main([str(good), str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing' / 'metrics.json'} does not exist" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{")
    assert compare.main([str(tmp_path / "bad")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    other = _write(tmp_path / "b", t23d=_t23d("ddim", 25, 40.0, 70.0, 3.0), settings={"num_objects": 12})
    assert compare.main([str(good), str(other)]) == 2
    assert "scored different held-out objects" in capsys.readouterr().err
