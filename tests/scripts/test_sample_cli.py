"""The sample_t23d / sample_i23d contract on a random-init tiny pipeline: outputs, JSON records, no overwriting,
determinism, every flag taking effect, and one-line errors with exit code 2.

Most runs call `main(argv)` in-process (the model loads in well under a second once its libraries are imported);
one real subprocess per CLI checks the script entry points and exit codes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import trimesh

from guided_diffusion.pipeline import GenerationSettings
from scripts import sample_i23d, sample_t23d

REPO = Path(__file__).resolve().parents[2]


EXAMPLE_IMAGE = REPO / "assets" / "i23d_examples" / "white_mug_with_a_black_handle.png"
PROMPT = "a red chair with a blue seat"
MESH_OUTPUTS = ("glb", "obj", "ply")
ALL_OUTPUTS = ("mp4", "gif", "png", *MESH_OUTPUTS, "json")
STAGE_TIMINGS = {"sampling_s", "decode_s", "render_s", "video_write_s", "mesh_s", "mesh_write_s"}


@pytest.fixture
def small_settings(tiny_mesh_level) -> list[str]:
    return ["--steps", "2", "--seed", "0", "--device", "cpu", "--video-resolution", "32", "--video-views", "4",
            "--mesh-resolution", "32", "--mesh-level", str(tiny_mesh_level)]


@pytest.fixture
def fast(tiny_pipeline_dir, small_settings) -> list[str]:
    return ["--ckpt", str(tiny_pipeline_dir), *small_settings]


def run_t23d(out: Path, fast: list[str], *extra: str) -> dict:
    """Run sample_t23d in-process into `out`; returns the JSON record of the one object it wrote."""
    before = set(out.glob("*.json"))
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(out), *fast, *extra]) == 0
    (new,) = set(out.glob("*.json")) - before
    return json.loads(new.read_text())


def stems(folder: Path) -> set[str]:
    return {p.name.split(".")[0] for p in folder.iterdir()}


def mp4_frames(path: Path) -> list[np.ndarray]:
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return list(reader.iter_data())  # len(reader) is inf for an mp4, which list(reader) chokes on


def check_outputs(out: Path, record: dict, task: str) -> None:
    stem = record["files"]["mp4"].removesuffix(".mp4")
    for ext in ALL_OUTPUTS:
        assert (out / f"{stem}.{ext}").stat().st_size > 0, ext
    assert record["task"] == task and record["acceleration"] == "eager" and "acceleration_fallback" not in record
    assert record["checkpoint"] == str(Path(record["checkpoint"]))
    assert set(record["settings"]) == {f.name for f in fields(GenerationSettings)}
    assert record["settings"]["steps"] == 2 and record["settings"]["seed"] == 0
    assert STAGE_TIMINGS <= set(record["timings_s"]) and record["load_s"] > 0
    assert all(v >= 0 for v in record["timings_s"].values())
    assert record["mesh"]["surface"] and record["mesh"]["faces"] > 0
    assert record["latent"]["shape"] == [12, 16, 16]


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_t23d_script_writes_every_output(tmp_path, fast, tiny_pipeline_dir):
    out = tmp_path / "t23d"
    proc = subprocess.run([sys.executable, "scripts/sample_t23d.py", "--prompt", PROMPT, "--out", str(out), *fast],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (json_file,) = out.glob("*.json")
    record = json.loads(json_file.read_text())
    check_outputs(out, record, "t23d")
    assert record["checkpoint"] == str(tiny_pipeline_dir)
    assert record["label"] == PROMPT and record["inputs"]["prompts"] == [PROMPT]
    assert json_file.name == "a_red_chair_with_a_blue_seat_seed0.json"
    assert f"wrote {out / 'a_red_chair_with_a_blue_seat_seed0.mp4'} (" in proc.stdout


def test_i23d_script_writes_every_output(tmp_path, fast):
    out = tmp_path / "i23d"
    proc = subprocess.run([sys.executable, "scripts/sample_i23d.py", "--image", str(EXAMPLE_IMAGE), "--out", str(out),
                           *fast], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (json_file,) = out.glob("*.json")
    record = json.loads(json_file.read_text())
    check_outputs(out, record, "i23d")
    assert record["label"] == EXAMPLE_IMAGE.stem
    assert record["inputs"] == {"images": [str(EXAMPLE_IMAGE)], "remove_background": False, "recentre": True,
                                "condition_size": 256}
    assert record["settings"]["sampler"] == "dopri5"  # the flow-matching default


def test_runs_never_overwrite(tmp_path, fast):
    out = tmp_path / "out"
    first = run_t23d(out, fast)
    first_bytes = {p.name: p.read_bytes() for p in out.iterdir()}
    second = run_t23d(out, fast)
    assert first["files"]["mp4"] == "a_red_chair_with_a_blue_seat_seed0.mp4"
    assert second["files"]["mp4"] == "a_red_chair_with_a_blue_seat_seed0-1.mp4"
    assert stems(out) == {"a_red_chair_with_a_blue_seat_seed0", "a_red_chair_with_a_blue_seat_seed0-1"}
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in first_bytes} == first_bytes


def test_same_seed_same_latent_and_mesh(tmp_path, fast):
    out = tmp_path / "out"
    a, b = run_t23d(out, fast), run_t23d(out, fast)
    c = run_t23d(out, fast, "--seed", "1")
    assert a["latent"] == b["latent"]
    assert c["latent"]["sha256"] != a["latent"]["sha256"] and c["seed"] == 1
    mesh_a, mesh_b = (trimesh.load(out / r["files"]["ply"], process=False) for r in (a, b))
    np.testing.assert_array_equal(mesh_a.vertices, mesh_b.vertices)
    np.testing.assert_array_equal(mesh_a.faces, mesh_b.faces)
    assert (out / a["files"]["png"]).read_bytes() == (out / b["files"]["png"]).read_bytes()


def test_every_flag_takes_effect(tmp_path, fast):
    out = tmp_path / "out"
    base = run_t23d(out, fast)
    frames = mp4_frames(out / base["files"]["mp4"])
    assert len(frames) == 4 and frames[0].shape == (32, 64, 3)  # [RGB | depth] side by side

    views = run_t23d(out, fast, "--video-views", "6", "--video-resolution", "24")
    frames = mp4_frames(out / views["files"]["mp4"])
    assert len(frames) == 6 and frames[0].shape == (24, 48, 3)
    assert views["latent"] == base["latent"]

    coarse = run_t23d(out, fast, "--mesh-resolution", "20")
    assert coarse["settings"]["mesh_resolution"] == 20 and coarse["mesh"]["faces"] < base["mesh"]["faces"]
    decimated = run_t23d(out, fast, "--mesh-faces", "100")
    assert decimated["mesh"]["faces"] <= 100
    level = run_t23d(out, fast, "--mesh-level", str(base["settings"]["mesh_level"] + 0.02))
    assert level["mesh"]["vertices"] != base["mesh"]["vertices"]

    steps = run_t23d(out, fast, "--steps", "3")
    assert steps["settings"]["steps"] == 3 and steps["latent"] != base["latent"]
    sampler = run_t23d(out, fast, "--sampler", "ddim")
    assert base["settings"]["sampler"] == "euler_edm" and sampler["settings"]["sampler"] == "ddim"
    assert sampler["latent"] != base["latent"]
    cfg = run_t23d(out, fast, "--cfg-scale", "1.5")
    assert base["settings"]["cfg_scale"] == 6.5 and cfg["settings"]["cfg_scale"] == 1.5
    assert cfg["latent"] != base["latent"]

    fps = run_t23d(out, fast, "--video-fps", "5")
    with imageio.get_reader(out / fps["files"]["mp4"], format="FFMPEG") as reader:
        assert reader.get_meta_data()["fps"] == 5

    only = run_t23d(tmp_path / "only", fast, "--video-formats", "GIF", "--mesh-formats", ".glb, glb")
    assert only["settings"]["video_formats"] == ["gif"] and only["settings"]["mesh_formats"] == ["glb"]
    assert set(only["files"]) == {"gif", "png", "glb"}
    assert sorted(p.suffix for p in (tmp_path / "only").iterdir()) == [".gif", ".glb", ".json", ".png"]


def test_unknown_output_format_is_one_line_exit_2(tmp_path, fast, capsys):
    argv = ["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast, "--video-formats", "mp4,avi"]
    assert sample_t23d.main(argv) == 2
    assert one_error_line(capsys) == "error: unknown --video-formats entry 'avi'; choose from mp4, gif"


def test_missing_ffmpeg_plugin_is_one_line_exit_2(tmp_path, fast, capsys, monkeypatch):
    import utils.media

    def no_plugin(*args, **kwargs):
        raise ImportError("The `FFMPEG` plugin is not installed.")

    monkeypatch.setattr(utils.media.imageio, "get_writer", no_plugin)
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar the run had started
    assert line.startswith("error: writing a_red_chair") and line.endswith(
        ".mp4 needs the imageio-ffmpeg package: run `bash scripts/install.sh` or `pip install imageio-ffmpeg`, "
        "or write only GIFs (--video-formats gif)")


def test_num_samples_use_consecutive_seeds(tmp_path, fast):
    out = tmp_path / "out"
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(out), *fast, "--num-samples", "2", "--seed", "5"]) == 0
    records = {r["seed"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))}
    assert set(records) == {5, 6} and records[5]["latent"] != records[6]["latent"]
    assert stems(out) == {"a_red_chair_with_a_blue_seat_seed5", "a_red_chair_with_a_blue_seat_seed6"}
    alone = run_t23d(tmp_path / "alone", fast, "--seed", "6")
    # A sample does not depend on the others in its batch (up to float rounding of batched kernels).
    for key in ("mean", "std"):
        assert alone["latent"][key] == pytest.approx(records[6]["latent"][key], rel=1e-5)


def test_i23d_input_flags_take_effect(tmp_path, fast):
    out = tmp_path / "out"

    def run(*extra: str) -> dict:
        before = set(out.glob("*.json"))
        assert sample_i23d.main(["--image", str(EXAMPLE_IMAGE), "--out", str(out), *fast, *extra]) == 0
        (new,) = set(out.glob("*.json")) - before
        return json.loads(new.read_text())

    base = run()
    kept = run("--no-recentre")
    assert kept["inputs"]["recentre"] is False and kept["latent"] != base["latent"]
    small = run("--condition-size", "128")
    assert small["inputs"]["condition_size"] == 128


def test_no_surface_still_writes_video_and_record(tmp_path, fast, capsys):
    out = tmp_path / "out"
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(out), *fast, "--mesh-level", "10"]) == 0
    (json_file,) = out.glob("*.json")
    record = json.loads(json_file.read_text())
    assert record["mesh"]["surface"] is False
    assert record["mesh"]["error"].startswith("no surface: sigma spans [")
    assert record["mesh"]["error"].endswith("and never crosses level 10")
    assert set(record["files"]) == {"mp4", "gif", "png"} and not list(out.glob("*.glb"))
    captured = capsys.readouterr()
    assert "(no mesh)" in captured.out
    assert f"warning: {record['mesh']['error']}; try a --mesh-level inside that range\n" in captured.err


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err.rstrip("\n")


def test_empty_prompt_is_one_line_exit_2(tmp_path, fast, capsys):
    assert sample_t23d.main(["--prompt", "  ", "--out", str(tmp_path / "out"), *fast]) == 2
    assert one_error_line(capsys) == ("error: empty prompt: prompt(s) at position 0 of 1 are empty or whitespace "
                                      "only; describe the object to generate, e.g. 'a blue plastic chair'")
    assert not (tmp_path / "out").exists()


def test_no_prompt_is_one_line_exit_2(tmp_path, fast, capsys):
    assert sample_t23d.main(["--out", str(tmp_path / "out"), *fast]) == 2
    assert one_error_line(capsys) == 'error: no prompt given: pass --prompt "..." (repeatable) or --prompt-file FILE'


def test_unreadable_image_is_one_line_exit_2(tmp_path, fast, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert sample_i23d.main(["--image", str(broken), "--out", str(tmp_path / "out"), *fast]) == 2
    assert one_error_line(capsys) == f"error: cannot read image {broken}: not a recognised image format or corrupt"
    missing = tmp_path / "missing.png"
    assert sample_i23d.main(["--image", str(missing), "--out", str(tmp_path / "out"), *fast]) == 2
    assert one_error_line(capsys) == f"error: cannot read image {missing}: no such file or folder"
    assert sample_i23d.main(["--out", str(tmp_path / "out"), *fast]) == 2
    assert one_error_line(capsys) == "error: no image given: pass --image PATH (a file or a folder; repeatable)"
    assert not (tmp_path / "out").exists()


def test_unknown_sampler_is_one_line_exit_2(tmp_path, fast, capsys):
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast, "--sampler", "nope"]) == 2
    assert one_error_line(capsys) == ("error: unknown sampler 'nope' for this t23d checkpoint; "
                                      "choose one of euler_edm, ddim, dpm_solver_pp")
    assert sample_i23d.main(["--image", str(EXAMPLE_IMAGE), "--out", str(tmp_path / "out"), *fast,
                             "--sampler", "ddim"]) == 2
    assert one_error_line(capsys) == ("error: unknown sampler 'ddim' for this i23d checkpoint; "
                                      "choose one of dopri5, euler, heun, euler_maruyama")


def test_cuda_graphs_without_cuda_is_one_line_exit_2(tmp_path, fast, capsys):
    argv = ["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast, "--device", "cpu", "--compile", "cudagraphs"]
    assert sample_t23d.main(argv) == 2
    assert one_error_line(capsys) == ("error: --compile cudagraphs needs a CUDA device, not cpu; "
                                      "use --compile eager or reduce-overhead")
    assert not (tmp_path / "out").exists()


def test_list_samplers(tmp_path, fast, capsys):
    assert sample_i23d.main(["--out", str(tmp_path / "out"), *fast, "--list-samplers"]) == 0
    assert capsys.readouterr().out == "dopri5 euler heun euler_maruyama\n"


def test_missing_checkpoint_is_one_line_exit_2(tmp_path, fast, capsys):
    missing = tmp_path / "no_such_checkpoint"
    argv = ["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast, "--ckpt", str(missing)]
    assert sample_t23d.main(argv) == 2
    assert one_error_line(capsys) == (f"error: checkpoint '{missing}' not found: pass an existing folder or file to "
                                      f"--ckpt, or one of released-i23d, released-t23d for the authors' released "
                                      f"weights")


def test_checkpoint_without_task_is_one_line_exit_2(tmp_path, fast, tiny_pipeline_dir, capsys):
    text_only = tmp_path / "text_only"
    text_only.mkdir()
    for part in ("vae", "t23d"):
        (text_only / part).symlink_to(tiny_pipeline_dir / part)
    argv = ["--image", str(EXAMPLE_IMAGE), "--out", str(tmp_path / "out"), *fast, "--ckpt", str(text_only)]
    assert sample_i23d.main(argv) == 2
    assert one_error_line(capsys) == f"error: {text_only} has no i23d/ model; available: ['t23d']"


def test_launcher_passes_its_arguments(tmp_path, tiny_pipeline_dir, small_settings):
    out = tmp_path / "out"
    env = {**subprocess_env(), "CKPT": str(tiny_pipeline_dir), "OUT": str(out),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `python` is this interpreter
    proc = subprocess.run(["shell_scripts/inference/sample_i23d.sh", str(EXAMPLE_IMAGE), *small_settings], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / f"{EXAMPLE_IMAGE.stem}_seed0.json").read_text())
    assert record["checkpoint"] == str(tiny_pipeline_dir) and record["settings"]["video_views"] == 4
    for name in ("sample_t23d.sh", "gradio_app.sh"):
        assert subprocess.run(["bash", "-n", f"shell_scripts/inference/{name}"], cwd=REPO).returncode == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_give_the_eager_latent(tmp_path, fast):
    eager = run_t23d(tmp_path / "eager", fast, "--device", "cuda")
    graphed = run_t23d(tmp_path / "graphs", fast, "--device", "cuda", "--compile", "cudagraphs")
    assert graphed["acceleration"] == "cudagraphs" and "acceleration_fallback" not in graphed
    assert graphed["latent"]["sha256"] == eager["latent"]["sha256"]


def test_bad_numbers_are_refused_before_any_work(tmp_path, fast, capsys):
    """Non-finite or certainly-wrong numbers: one line each, exit 2, before the prompt file is read or the model is
    loaded (the missing checkpoint and prompt file are never reached), nothing written."""
    argv = ["--prompt-file", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "out"), *fast,
            "--ckpt", str(tmp_path / "missing"), "--cfg-scale", "nan", "--seed", "99999999999999999999",
            "--mesh-resolution", "5000", "--video-fps", "inf", "--steps", "0"]
    assert sample_t23d.main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --seed must be at most 4294967295 (seeds are 32-bit; sample j uses seed + j), got 99999999999999999999",
        "error: --steps must be at least 1, got 0",
        "error: --cfg-scale must be a finite number, got nan",
        "error: --video-fps must be a finite number, got inf",
        "error: --mesh-resolution must be at most 1024 (the density grid grows with its cube: 1024³ is a billion "
        "field queries), got 5000"]
    assert sample_i23d.main(["--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"), *fast,
                             "--condition-size", "0", "--mesh-level=-inf"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --mesh-level must be a finite number, got -inf",
                                                    "error: --condition-size must be at least 16, got 0"]
    assert not (tmp_path / "out").exists()


def test_weights_with_nan_are_refused_at_load_naming_the_tensor(tmp_path, fast, tiny_pipeline_dir, capsys):
    from utils.checkpoint import load_weights, save_weights

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_pipeline_dir, damaged)
    weights = load_weights(damaged / "t23d" / "model.safetensors")
    name = sorted(k for k in weights if k.startswith("denoiser."))[0]
    weights[name].view(-1)[0] = float("nan")
    save_weights(damaged / "t23d" / "model.safetensors", weights)
    argv = ["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast, "--ckpt", str(damaged)]
    assert sample_t23d.main(argv) == 2
    assert one_error_line(capsys) == (
        f"error: {damaged / 't23d' / 'model.safetensors'}: tensor {name.removeprefix('denoiser.')} holds 1 NaN/inf "
        f"values of {weights[name].numel()}; the weights are damaged (a diverged run or a bad copy): use an earlier "
        f"checkpoint or download the file again")
    assert not (tmp_path / "out").exists()


def test_a_non_finite_latent_stops_that_object_only(tmp_path, fast, capsys, monkeypatch):
    from guided_diffusion.pipeline import Pipeline

    sample_latents = Pipeline.sample_latents

    def first_is_nan(self, conditions, settings):
        latents = sample_latents(self, conditions, settings)
        latents[0] = float("nan")
        return latents

    monkeypatch.setattr(Pipeline, "sample_latents", first_is_nan)
    out = tmp_path / "out"
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(out), *fast, "--num-samples", "2"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {PROMPT!r} sample 0: the sampled latent holds NaN/inf, so nothing was written for it; the likely "
        f"cause is the checkpoint (a diverged run) or an extreme --cfg-scale / --steps")
    assert stems(out) == {"a_red_chair_with_a_blue_seat_seed1"}  # the good sample is written


def test_a_bad_prompt_file_names_the_real_problem(tmp_path, fast, capsys):
    binary = tmp_path / "prompts.bin"
    binary.write_bytes(b"a chair\n\xff\xfe")
    for path, message in ((tmp_path, f"--prompt-file {tmp_path} is a folder; pass a text file with one prompt per "
                                     f"line"),
                          (tmp_path / "missing.txt", f"prompt file {tmp_path / 'missing.txt'} does not exist"),
                          (binary, f"--prompt-file {binary} is not UTF-8 text (byte 8); save it as plain UTF-8 text "
                                   f"with one prompt per line")):
        assert sample_t23d.main(["--prompt-file", str(path), "--out", str(tmp_path / "out"), *fast]) == 2
        assert one_error_line(capsys) == f"error: {message}"


def test_an_unwritable_out_is_found_before_the_model_loads(tmp_path, fast, capsys):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "out"
    # the missing checkpoint is never reached: the output check comes first
    assert sample_t23d.main(["--prompt", PROMPT, "--out", str(out), *fast, "--ckpt", str(tmp_path / "none")]) == 2
    assert one_error_line(capsys) == (f"error: --out {out}: {tmp_path / 'file.txt'} is a file, not a folder; pick "
                                      f"another --out")


def test_an_image_folder_names_every_bad_file_and_generates_the_good_ones(tmp_path, fast, capsys):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(EXAMPLE_IMAGE, folder / "good.png")
    (folder / "broken.png").write_bytes(b"not a png")
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(folder / "clear.png")
    out = tmp_path / "out"
    assert sample_i23d.main(["--image", str(folder), "--image", str(tmp_path / "missing.png"), "--out", str(out),
                             *fast]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert lines == [
        f"error: cannot read image {tmp_path / 'missing.png'}: no such file or folder",
        f"error: cannot read image {folder / 'broken.png'}: not a recognised image format or corrupt",
        f"error: cannot use image {folder / 'clear.png'}: the image has no foreground (fully transparent or all "
        f"white); use a picture showing the object",
        "error: 3 of 4 inputs could not be used (named above); the others were generated"]
    assert stems(out) == {"good_seed0"}


def test_remove_background_without_rembg_fails_before_any_work(tmp_path, fast, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rembg", None)  # import fails as if not installed
    argv = ["--image", str(EXAMPLE_IMAGE), "--out", str(tmp_path / "out"), *fast, "--remove-background"]
    assert sample_i23d.main(argv) == 2
    assert one_error_line(capsys) == (
        "error: --remove-background cannot run: the rembg package is not installed; install it with "
        "`pip install 'rembg[cpu]'` (or rembg[gpu]), or drop --remove-background and pass cut-out (transparent) or "
        "white-background images")
    assert not (tmp_path / "out").exists()


def test_a_mesh_the_device_cannot_hold_is_refused_before_any_work(tmp_path, fast, capsys, monkeypatch):
    import guided_diffusion.pipeline

    monkeypatch.setattr(guided_diffusion.pipeline, "available_memory", lambda device: 2**30)  # 1 GiB free
    argv = ["--prompt", PROMPT, "--out", str(tmp_path / "out"), *fast, "--ckpt", str(tmp_path / "none"),
            "--mesh-resolution", "1024"]
    assert sample_t23d.main(argv) == 2  # the missing checkpoint is never reached
    assert one_error_line(capsys) == ("error: --mesh-resolution 1024 needs about 7.1 GiB for mesh extraction, but "
                                      "the cpu device has 1.0 GiB free; pass --mesh-resolution 469 or less (or a "
                                      "smaller --chunk-size)")
    assert not (tmp_path / "out").exists()
