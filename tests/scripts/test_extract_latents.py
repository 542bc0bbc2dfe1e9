"""extract_latents: the stored latents are the VAE's posterior (mean and per-object seeded sample) of the encoder
views, with captions, labels, condition views and the latent statistics; the store does not depend on batching."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from checkpoints.loader import load_vae_folder
from datasets.latents import LatentDataset, LatentDatasetConfig
from datasets.stores import open_store
from datasets.stores.codecs import decode_image, to_uint8
from nsr.encoding import record_encoder_input
from nsr.posterior import Posterior
from utils.training import derive_seed

COND_VIEWS = (0, 27)
ENCODER_VIEWS = (25, 0)  # the tiny VAE encodes (and trains on) the first 2 extraction views


@pytest.fixture(scope="module")
def extracted(script, procedural_data, vae32_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("latents") / "store"
    script("extract_latents").main(["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out", str(out),
                                    "--device", "cpu", "--workers", "0", "--batch-size", "2", "--seed", "5",
                                    "--cond-views", ",".join(map(str, COND_VIEWS))])
    return out


def test_stored_latents_are_the_vae_posterior_of_the_encoder_views(extracted, procedural_data, vae32_folder):
    vae = load_vae_folder(vae32_folder)
    store = open_store(procedural_data)
    means = []
    for index in range(len(store)):
        record = store.read(index)
        folder = extracted / record.object_id
        with torch.no_grad():
            posterior = vae.encode(record_encoder_input(record, ENCODER_VIEWS, vae.config)[None])
        mean = torch.from_numpy(np.load(folder / "latent_mean.npy"))
        torch.testing.assert_close(mean, posterior.latent(sample=False)[0], atol=1e-5, rtol=1e-5)
        generator = torch.Generator().manual_seed(derive_seed(5, record.object_id))
        sample = Posterior(posterior.mean, posterior.logvar, posterior.latent_size).latent(True, generator)[0]
        torch.testing.assert_close(torch.from_numpy(np.load(folder / "latent.npy")), sample, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(sample, mean)
        means.append(mean)

        meta = json.loads((folder / "meta.json").read_text())
        assert meta["caption"] == record.caption and meta["labels"] == record.labels
        cond = record.select(COND_VIEWS)
        np.testing.assert_array_equal(np.load(folder / "cond_cameras.npy"), cond.cameras)
        for k in range(len(COND_VIEWS)):
            stored = decode_image((folder / f"cond_{k:02d}.png").read_bytes())[..., :3]
            assert np.abs(stored.astype(int) - to_uint8(cond.rgb_on_white()[k]).astype(int)).max() <= 1
    assert (means[0] - means[1]).abs().mean() > 1e-3  # the encoder sees the objects, not just their cameras


def test_statistics_and_record_describe_the_store(extracted, procedural_data, vae32_folder):
    samples = np.stack([np.load(p) for p in sorted(extracted.rglob("latent.npy"))]).astype(np.float64)
    stats = json.loads((extracted / "stats.json").read_text())
    assert stats["num_objects"] == 2 and stats["latent_shape"] == [12, 32, 32]
    assert stats["std"] == pytest.approx(samples.std(), rel=1e-6)
    assert stats["mean"] == pytest.approx(samples.mean(), abs=1e-6)
    np.testing.assert_allclose(stats["per_channel_std"], samples.transpose(1, 0, 2, 3).reshape(12, -1).std(1),
                               rtol=1e-6)
    record = json.loads((extracted / "extraction.json").read_text())
    assert record["complete"] and record["num_objects"] == 2 and record["skipped"] == 0
    assert record["vae"] == str(vae32_folder.resolve()) and record["data"] == str(procedural_data.resolve())
    assert record["views"] == list(ENCODER_VIEWS) and record["cond_views"] == list(COND_VIEWS)
    dataset = LatentDataset(extracted, LatentDatasetConfig(train=False))
    assert dataset[0]["cond_image"].shape == (3, 32, 32)


def test_store_does_not_depend_on_batching(script, extracted, procedural_data, vae32_folder, tmp_path, capsys):
    out = tmp_path / "one_by_one"
    script("extract_latents").main(["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out", str(out),
                                    "--device", "cpu", "--workers", "0", "--batch-size", "1", "--seed", "5",
                                    "--cond-views", "none"])
    line = capsys.readouterr().out
    std = json.loads((out / "stats.json").read_text())["std"]
    assert f"2 latents → {out} (0 skipped" in line and f"latent std {std:.5g}" in line
    for path in sorted(extracted.rglob("latent.npy")):
        again = out / path.relative_to(extracted)
        np.testing.assert_allclose(np.load(again), np.load(path), atol=1e-5)
    assert not list(out.rglob("cond_*.png"))


def test_bad_input_is_one_line(script, extracted, procedural_data, vae32_folder, tmp_path, capsys):
    args = ["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--device", "cpu", "--workers", "0"]
    with pytest.raises(SystemExit) as exit_info:
        script("extract_latents").main([*args, "--out", str(extracted)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"extract_latents.py: error: {extracted} already holds a latent store; pass a " \
                                      f"new --out\n"
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        script("extract_latents").main([*args, "--out", str(tmp_path / "used")])
    assert capsys.readouterr().err == f"extract_latents.py: error: {tmp_path / 'used'} is not empty; pass a new " \
                                      f"(or empty) --out folder\n"
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]
    for expected in ("view 7 is missing (stored views: [0, 4, 9, 18, 25, 26, 27, 33])",
                     "already holds an interrupted extraction; pass --resume to finish it, or a new --out"):
        with pytest.raises(SystemExit):
            script("extract_latents").main([*args, "--out", str(tmp_path / "x"), "--views", "25,7"])
        error = capsys.readouterr().err.splitlines()[-1]
        assert error.startswith("extract_latents.py: error: ") and expected in error


def test_skip_bad_samples_extracts_the_readable_objects(script, procedural_data, vae32_folder, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(procedural_data, data)
    ids = sorted("/".join(p.relative_to(data).parts[:3]) for p in data.glob("*/*/*/campos_512_v4"))
    broken = data / ids[0] / "campos_512_v4" / "00009" / "00009.png"  # an encoder view of store index 0
    broken.write_bytes(b"not a png")
    out = tmp_path / "latents"
    script("extract_latents").main(["--ckpt", str(vae32_folder), "--data", str(data), "--out", str(out), "--device",
                                    "cpu", "--workers", "0", "--skip-bad-samples"])
    record = json.loads((out / "extraction.json").read_text())
    assert record["num_objects"] == 1 and record["skipped"] == 1
    assert [p.parent.relative_to(out).as_posix() for p in out.rglob("latent.npy")] == [ids[1]]
    assert f"skipping unreadable object 0: {broken}: not a decodable image" in caplog.text


def test_bad_numbers_are_one_line_each(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        script("extract_latents").main(["--ckpt", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                        "--seed", str(2**64), "--workers", "-1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"extract_latents.py: error: --seed must be at most 4294967295 (seeds are 32-bit), got {2**64}",
        "extract_latents.py: error: --workers must be at least 0, got -1"]


def test_resume_finishes_an_interrupted_extraction_as_one_run_would(script, extracted, procedural_data, vae32_folder,
                                                                   tmp_path, capsys):
    """An extraction stopped after its first object: --resume keeps that object, encodes the rest, and the
    store and its statistics equal the uninterrupted run's; other flags on --resume are named."""
    out = tmp_path / "store"
    shutil.copytree(extracted, out)
    record = json.loads((out / "extraction.json").read_text())
    (out / "extraction.json").write_text(json.dumps({**record, "complete": False}))
    (out / "stats.json").unlink()
    first, second = sorted(p.parent for p in out.rglob("meta.json"))
    kept = (first / "latent.npy").stat().st_mtime_ns
    shutil.rmtree(second)
    args = ["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out", str(out), "--device", "cpu",
            "--workers", "0", "--batch-size", "2", "--cond-views", ",".join(map(str, COND_VIEWS))]
    with pytest.raises(SystemExit):
        script("extract_latents").main([*args, "--seed", "6", "--resume"])
    assert capsys.readouterr().err == (f"extract_latents.py: error: --resume: {out} was extracted with other "
                                       f"settings: --seed 5 (now 6); resume with the same flags or pass a new --out\n")
    script("extract_latents").main([*args, "--seed", "5", "--resume"])
    assert (first / "latent.npy").stat().st_mtime_ns == kept  # not encoded again
    np.testing.assert_allclose(np.load(second / "latent.npy"), np.load(extracted / second.relative_to(out) /
                                                                       "latent.npy"), atol=1e-5)
    stats, expected = (json.loads((root / "stats.json").read_text()) for root in (out, extracted))
    assert stats["num_objects"] == expected["num_objects"] == 2
    assert stats["std"] == pytest.approx(expected["std"], rel=1e-6)
    assert json.loads((out / "extraction.json").read_text())["complete"] is True


def test_ctrl_c_keeps_the_written_objects_for_resume(script, procedural_data, vae32_folder, tmp_path, capsys,
                                                    monkeypatch):
    from datasets.latents import LatentStoreWriter

    add = LatentStoreWriter.add

    def interrupted_after_one(self, *args, **kwargs):
        if self.count == 1:
            raise KeyboardInterrupt
        add(self, *args, **kwargs)

    out = tmp_path / "store"
    args = ["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out", str(out), "--device", "cpu",
            "--workers", "0", "--batch-size", "1"]
    monkeypatch.setattr(LatentStoreWriter, "add", interrupted_after_one)
    with pytest.raises(SystemExit) as e:
        script("extract_latents").main(args)
    assert e.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"extract_latents.py: interrupted; the objects written so far are kept: run again with --resume to finish "
        f"{out}")
    assert len(list(out.rglob("meta.json"))) == 1
    monkeypatch.setattr(LatentStoreWriter, "add", add)
    script("extract_latents").main([*args, "--resume"])
    assert json.loads((out / "stats.json").read_text())["num_objects"] == 2
