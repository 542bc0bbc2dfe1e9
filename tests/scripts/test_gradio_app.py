"""The gradio app on the random-init tiny pipeline: served in a subprocess, driven through its API with
gradio_client and through headless Chromium with playwright; plus the per-task availability logic in-process."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# environment.md: the flags under which Debian's chromium runs headless in these containers.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
ARTIFACTS = REPO / "outputs" / "test-artifacts"
EXAMPLE_IMAGE = REPO / "assets" / "i23d_examples" / "white_mug_with_a_black_handle.png"
PROMPT = "a red chair with a blue seat"


def load_app():
    spec = importlib.util.spec_from_file_location("script_gradio_app", REPO / "scripts" / "gradio_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer at {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def app(tiny_pipeline_dir, tmp_path_factory):
    """The app serving the tiny pipeline on a free port: yields (url, output dir)."""
    port = free_port()
    output_dir = tmp_path_factory.mktemp("gradio_outputs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "scripts/gradio_app.py", "--ckpt", str(tiny_pipeline_dir), "--device", "cpu",
               "--port", str(port), "--output-dir", str(output_dir), "--video-views", "4", "--video-resolution", "64"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_served(url, proc)
        yield url, output_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def record_of(files: list[str]) -> dict:
    (record,) = [f for f in files if f.endswith(".json")]
    return json.loads(Path(record).read_text())


def test_api_text_and_image_to_3d(app, tiny_mesh_level):
    from gradio_client import Client, handle_file

    url, output_dir = app
    client = Client(url, verbose=False)
    video, model, files, status = client.predict(PROMPT, 3, 2.5, 2, "ddim", 24, tiny_mesh_level, api_name="/t23d")
    assert Path(video).suffix == ".mp4" and Path(model).suffix == ".glb"
    assert sorted(Path(f).suffix for f in files) == [".glb", ".json", ".obj", ".ply"]
    record = record_of(files)
    settings = record["settings"]
    assert (settings["seed"], settings["cfg_scale"], settings["steps"], settings["sampler"]) == (3, 2.5, 2, "ddim")
    assert (settings["mesh_resolution"], settings["mesh_level"]) == (24, tiny_mesh_level)
    assert record["task"] == "t23d" and record["label"] == PROMPT
    assert status.startswith("seed 3 · ddim · 2 steps · CFG 2.5 · ") and "faces at resolution 24" in status

    video, model, files, status = client.predict(handle_file(str(EXAMPLE_IMAGE)), False, False, 1, 3.0, 2, "euler",
                                                 24, 10.0, api_name="/i23d")
    record = record_of(files)
    assert model is None and [Path(f).suffix for f in files] == [".json"]  # level 10: no surface, still a video
    assert Path(video).suffix == ".mp4" and "**No mesh:** no surface: sigma spans [" in status
    assert record["task"] == "i23d" and record["settings"]["sampler"] == "euler"
    assert record["inputs"]["recentre"] is False and record["inputs"]["remove_background"] is False
    assert len([p for p in output_dir.iterdir() if p.is_dir()]) == 2  # one folder per request


def test_api_concurrent_requests_each_get_their_own_outputs(app, tiny_mesh_level):
    from gradio_client import Client

    url, _ = app
    client = Client(url, verbose=False)
    jobs = [client.submit(PROMPT, seed, 6.5, 2, "euler_edm", 16, tiny_mesh_level, api_name="/t23d")
            for seed in (10, 11)]
    results = [job.result(timeout=120) for job in jobs]
    records = [record_of(files) for _, _, files, _ in results]
    assert sorted(r["seed"] for r in records) == [10, 11]
    assert records[0]["latent"]["sha256"] != records[1]["latent"]["sha256"]


def test_api_errors_are_one_line(app, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, _ = app
    client = Client(url, verbose=False)
    with pytest.raises(AppError) as err:
        client.predict("   ", 0, 6.5, 2, "ddim", 16, 0.0, api_name="/t23d")
    assert str(err.value) == "empty prompt: describe the object to generate, e.g. 'a blue plastic chair'"
    with pytest.raises(AppError) as err:
        client.predict(None, False, True, 0, 4.0, 2, "euler", 16, 0.0, api_name="/i23d")
    assert str(err.value) == "no image: upload one or pick an example"
    # the CLIs' checks (docs/RELIABILITY.md) hold for the demo too
    with pytest.raises(AppError) as err:
        client.predict(PROMPT, 2**40, 6.5, 2, "ddim", 16, 0.0, api_name="/t23d")
    assert str(err.value) == (f"--seed must be at most 4294967295 (seeds are 32-bit; sample j uses seed + j), got "
                              f"{2**40}")
    from gradio_client import handle_file
    from PIL import Image

    clear = tmp_path / "clear.png"
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(clear)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(clear)), False, True, 0, 4.0, 2, "euler", 16, 0.0, api_name="/i23d")
    assert str(err.value).startswith("cannot use image ") and str(err.value).endswith(
        "clear.png: the image has no foreground (fully transparent or all white); use a picture showing the object")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                  "(apt-get install -y chromium)")
def test_browser_generates_video_and_model(app, tiny_mesh_level, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, _ = app
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "gradio_t23d.png"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                       args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 1000})
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.goto(url)
            page.fill("#t23d-prompt textarea", PROMPT)
            for control, value in (("steps", "2"), ("mesh-resolution", "32"), ("mesh-level", str(tiny_mesh_level))):
                page.fill(f"#t23d-{control} input[type=number]", value)  # typed, then Generate: no Enter needed
            page.click("#t23d-generate")
            video = page.locator("#t23d-video video")
            expect(video).to_have_attribute("src", re.compile(r"\.mp4"), timeout=60_000)
            page.locator("#t23d-model canvas").wait_for(state="attached", timeout=30_000)
            expect(page.locator("#t23d-status")).to_contain_text("faces at resolution 32", timeout=10_000)
            page.wait_for_timeout(1000)  # let the model viewer draw a frame before the screenshot
            page.screenshot(path=str(screenshot), full_page=True)
            assert video.get_attribute("src")
            assert page.locator("#t23d-model canvas").count() == 1

            # An empty prompt is refused in the page with the one-line message, no traceback.
            page.fill("#t23d-prompt textarea", "")
            page.click("#t23d-generate")
            expect(page.get_by_text("empty prompt: describe the object to generate")).to_be_visible(timeout=20_000)
            assert "Traceback" not in page.content()
        finally:
            browser.close()
    print(f"screenshot: {screenshot}")


def test_tab_says_when_the_checkpoint_lacks_its_task(tiny_pipeline_dir, tmp_path):
    app = load_app()
    text_only = tmp_path / "text_only"
    text_only.mkdir()
    for part in ("vae", "t23d"):
        (text_only / part).symlink_to(tiny_pipeline_dir / part)
    available = app.task_availability(str(text_only))
    assert available["t23d"].name == "t23d-tiny"
    assert available["i23d"] == f"this checkpoint ({text_only}) has no i23d model"
    demo = app.build_demo(app.Backend(str(text_only), "cpu", tmp_path / "out", 4, 32), available)
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert "i23d-notice" in blocks and "t23d-notice" not in blocks
    assert blocks["i23d-generate"].interactive is False and blocks["t23d-generate"].interactive is True
    assert [value for _, value in blocks["t23d-sampler"].choices] == ["euler_edm", "ddim", "dpm_solver_pp"]
    assert blocks["t23d-sampler"].value == "euler_edm" and blocks["t23d-steps"].value == 50  # the preset's


def test_missing_checkpoint_stops_the_app_with_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_checkpoint"
    assert load_app().main(["--ckpt", str(missing), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: checkpoint '{missing}' not found: pass an existing folder or file to --ckpt, or one of "
                   f"released-i23d, released-t23d for the authors' released weights\n")


def test_released_file_offers_only_its_task(tmp_path):
    import torch
    from safetensors.torch import save_file

    released = tmp_path / "model_joint_denoise_rec_model2990000.safetensors"
    save_file({"ddpm_model.cap_embedder.0.weight": torch.zeros(1)}, str(released))  # the I23D marker key
    available = load_app().task_availability(str(released))
    assert available["i23d"].name == "i23d"
    assert available["t23d"] == f"this checkpoint ({released.name}) is the released i23d model"


def test_non_finite_controls_are_refused_by_name():
    app = load_app()
    with pytest.raises(ValueError, match=r"^CFG scale must be a finite number, got nan$"):
        app._number(float("nan"), "CFG scale")
    with pytest.raises(ValueError, match=r"^seed must be a finite number, got inf$"):
        app._integer(float("inf"), "seed")
