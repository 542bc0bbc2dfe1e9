"""scripts/benchmark.py on the CPU with tiny random networks: the JSON layout, exact network-evaluation counts of
every sampler, the time budget, and the eager fallback of a failing optimised denoiser."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

TINY = ["--device", "cpu", "--preset-size", "tiny", "--repeats", "1", "--warmup", "0", "--mesh-resolution", "16",
        "--render-resolution", "16", "--render-views", "2", "--train-steps", "1"]
# (calls, evaluations per object) for N steps under CFG, read off the sampler implementations: one guided call per
# step doubles the batch (unconditional + conditional rows); Heun evaluates twice per step.
FIXED_STEP_COUNTS = {"euler_edm:3": (3, 6), "ddim:2": (2, 4), "dpm_solver_pp:3": (3, 6), "euler:3": (3, 6),
                     "heun:2": (4, 8)}


@pytest.fixture(scope="module")
def full_run(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [*TINY, "--out", str(out / "bench.json"), "--plot", str(out / "bench.png"), "--batch-sizes", "1",
            "--samplers", ",".join([*FIXED_STEP_COUNTS, "dopri5"]), "--compile", "cudagraphs"]
    # module-scoped, so it runs before the per-test single_thread fixture: set one thread here as well
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert script("benchmark").main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return json.loads((out / "bench.json").read_text()), out


def results(data: dict, stage: str) -> list[dict]:
    return [r for r in data["results"] if r["stage"] == stage]


def test_json_records_the_machine_and_every_stage(full_run):
    data, out = full_run
    assert data["status"] == "complete"
    meta = data["meta"]
    for key in ("command", "date", "device_name", "torch", "dtype", "preset_size"):
        assert meta[key]
    assert meta["dtype"] == "fp32"  # the pipeline never autocasts on a CPU
    assert meta["command"].startswith("python scripts/benchmark.py ")
    assert {"vae", "t23d", "i23d"} <= set(data["models"])
    assert [s for s in ("vae-decode", "render", "mesh", "train-dit", "train-vae", "t23d", "i23d")
            if results(data, s)] == ["vae-decode", "render", "mesh", "train-dit", "train-vae", "t23d", "i23d"]
    for r in data["results"]:
        if r["config"].get("variant") == "cudagraphs":
            assert r["status"] == "skipped" and "CUDA" in r["reason"]
        else:
            assert r["status"] == "ok", r
            assert r["headline_s"] > 0
    train = {r["name"]: r["metrics"] for r in results(data, "train-dit") + results(data, "train-vae")}
    assert all(m["samples_per_s"] > 0 and m["steps"] == 1 for m in train.values())
    mesh = results(data, "mesh")[0]["metrics"]
    assert mesh["faces"] > 0 and mesh["glb_mib"] > 0  # the analytic object gives random weights a surface
    assert Image.open(out / "bench.png").size[0] > 0


def test_end_to_end_times_add_up(full_run):
    data, _ = full_run
    for r in results(data, "t23d") + results(data, "i23d"):
        if r["status"] != "ok":
            continue
        m = r["metrics"]
        parts = m["conditioning_s"] + m["sampling_s"] + m["decode_s"] + m["mesh_s"] + m["glb_write_s"]
        assert parts == pytest.approx(m["total_s"], rel=0.05, abs=0.02)
        assert m["per_object_s"] == pytest.approx(m["total_s"] / r["config"]["batch_size"], rel=1e-3)
        assert m["mesh_faces"] > 0 and m["empty_meshes"] == 0


@pytest.mark.parametrize("token", list(FIXED_STEP_COUNTS))
def test_fixed_step_samplers_count_evaluations_exactly(full_run, token):
    data, _ = full_run
    name = token.split(":")[0]
    calls, evaluations = FIXED_STEP_COUNTS[token]
    runs = [r for r in data["results"] if r["config"].get("sampler") == name and r["config"]["variant"] == "eager"]
    assert len(runs) == 1 and runs[0]["config"]["cfg_scale"] > 1
    assert runs[0]["metrics"]["denoiser_calls"] == calls
    assert runs[0]["metrics"]["network_evaluations_per_object"] == evaluations


def test_adaptive_dopri5_counts_its_own_evaluations(full_run):
    data, _ = full_run
    for r in [r for r in results(data, "i23d") if r["config"]["sampler"] == "dopri5" and r["status"] == "ok"]:
        calls = r["metrics"]["denoiser_calls"]
        # torchdiffeq's dopri5: two calls choose the first step, then six per attempted step (FSAL)
        assert calls >= 8 and (calls - 2) % 6 == 0
        assert r["metrics"]["network_evaluations_per_object"] == 2 * calls


def test_time_budget_skips_the_remaining_configurations(script, tmp_path, monkeypatch):
    bench = script("benchmark")
    checks = []

    def spent(self):  # checked once for the stage, then per configuration: runs out after two configurations
        checks.append(1)
        return len(checks) > 3

    monkeypatch.setattr(bench.Budget, "spent", spent)
    out = tmp_path / "bench.json"
    argv = [*TINY, "--out", str(out), "--stages", "t23d,i23d", "--batch-sizes", "1,2", "--samplers",
            "euler_edm:2,ddim:2,heun:2", "--time-budget", "100"]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    assert [r["status"] for r in data["results"]] == ["ok", "ok", "skipped", "skipped", "skipped"]
    assert all("time budget of 100 s spent" in r["reason"] for r in data["results"][2:])
    assert [r["config"].get("sampler") for r in data["results"][2:]] == ["ddim", "ddim", None]
    assert data["results"][-1]["stage"] == "i23d"  # a stage the budget never reached is skipped whole
    assert data["skipped"] == 3 and data["status"] == "complete"
    # a batch of two shares the denoiser calls: the count per object does not depend on the batch size
    one, two = (r["metrics"] for r in data["results"][:2])
    assert one["denoiser_calls"] == two["denoiser_calls"] == 2
    assert one["network_evaluations_per_object"] == two["network_evaluations_per_object"] == 4


def test_failing_compile_falls_back_to_eager_and_says_why(script, tmp_path, monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler on this machine")

    monkeypatch.setattr(torch, "compile", broken_compile)
    out = tmp_path / "bench.json"
    argv = [*TINY, "--out", str(out), "--stages", "t23d", "--batch-sizes", "1", "--samplers", "euler_edm:2",
            "--compile"]
    assert script("benchmark").main(argv) == 0
    eager, compiled = json.loads(out.read_text())["results"]
    assert compiled["config"]["variant"] == "reduce-overhead" and compiled["status"] == "ok"
    assert "no compiler on this machine" in compiled["metrics"]["fallback_to_eager"]
    assert "fallback_to_eager" not in eager["metrics"]
    assert compiled["metrics"]["denoiser_calls"] == eager["metrics"]["denoiser_calls"] == 2
    assert compiled["metrics"]["latent_rel_diff_vs_eager"] == 0  # eager ran in its place, on the same seeds


def test_bad_arguments_exit_with_usage(script, tmp_path):
    with pytest.raises(SystemExit) as err:
        script("benchmark").main(["--out", str(tmp_path / "x.json"), "--stages", "t23d,warp"])
    assert err.value.code == 2


def test_golden_style_fill_matches_the_fixture_recipe(script):
    from torch import nn

    bench = script("benchmark")
    model = bench.random_network(lambda: nn.Sequential(nn.Linear(400, 300), nn.LayerNorm(300)), torch.device("cpu"),
                                 seed=0)
    linear, norm = model
    assert linear.weight.std().item() == pytest.approx(400**-0.5, rel=0.05)
    assert linear.bias.std().item() == pytest.approx(0.02, rel=0.2)
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)


def test_compilation_is_not_started_without_the_budget_for_it(script, tmp_path, monkeypatch):
    bench = script("benchmark")
    monkeypatch.setattr(bench.Budget, "left", lambda self: 60.0)
    out = tmp_path / "bench.json"
    argv = [*TINY, "--out", str(out), "--stages", "t23d", "--batch-sizes", "1", "--samplers", "euler_edm:2",
            "--compile", "--time-budget", "1000"]
    assert bench.main(argv) == 0
    eager, compiled = json.loads(out.read_text())["results"]
    assert eager["status"] == "ok"
    assert compiled["status"] == "skipped" and "60 s of the time budget left" in compiled["reason"]
