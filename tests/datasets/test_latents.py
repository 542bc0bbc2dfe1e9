"""The stage-2 latent store: round trip, train/eval choices, damaged entries."""
import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.collate import collate_samples
from datasets.errors import BadSampleError
from datasets.latents import LatentDataset, LatentDatasetConfig, LatentStoreWriter
from datasets.stores.codecs import to_uint8


@pytest.fixture
def latent_store(records, tmp_path):
    generator = torch.Generator().manual_seed(0)
    latents = {}
    with LatentStoreWriter(tmp_path / "latents") as writer:
        for record in records:
            sample = torch.randn(12, 32, 32, generator=generator)
            mean = torch.randn(12, 32, 32, generator=generator)
            images = to_uint8(record.rgb_on_white()).transpose(0, 3, 1, 2)
            writer.add(record.object_id, sample, mean, record.caption, record.labels, images, record.cameras)
            latents[record.object_id] = (sample, mean, images)
    return tmp_path / "latents", latents


def test_round_trip_in_eval_mode(latent_store, records):
    root, latents = latent_store
    dataset = LatentDataset(root, LatentDatasetConfig(train=False, eval_view=2))
    assert len(dataset) == 2
    for index in range(2):
        sample = dataset[index]
        record = next(r for r in records if r.object_id == sample["object_id"])
        latent, _, images = latents[record.object_id]
        assert torch.equal(sample["latent"], latent)
        assert sample["caption"] == record.caption == record.labels["captions"][0]
        assert sample["labels"] == record.labels
        assert torch.equal(sample["cond_image"], torch.from_numpy(images[2]).float() / 127.5 - 1.0)
        assert torch.equal(sample["cond_camera"], torch.from_numpy(record.cameras[2]))
    mean_dataset = LatentDataset(root, LatentDatasetConfig(train=False, use_mean=True))
    assert torch.equal(mean_dataset[0]["latent"], latents[mean_dataset[0]["object_id"]][1])


def test_training_draws_views_and_phrasings_reproducibly(latent_store):
    root, _ = latent_store
    dataset = LatentDataset(root, LatentDatasetConfig(train=True, seed=1))
    captions, cameras = set(), set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        again = dataset[0]
        assert sample["caption"] == again["caption"] and torch.equal(sample["cond_image"], again["cond_image"])
        assert sample["caption"] in sample["labels"]["captions"]
        captions.add(sample["caption"])
        cameras.add(tuple(sample["cond_camera"].tolist()))
    assert len(captions) > 1 and len(cameras) > 1
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_samples)))
    assert batch["latent"].shape == (2, 12, 32, 32) and batch["cond_image"].shape == (2, 3, 32, 32)
    assert len(batch["caption"]) == 2 and len(batch["labels"]) == 2


def test_missing_latent_is_named_and_skipped(latent_store, caplog):
    root, _ = latent_store
    dataset = LatentDataset(root, LatentDatasetConfig(train=False))
    broken = dataset.objects[0] / "latent.npy"
    broken.unlink()
    with pytest.raises(BadSampleError) as error:
        dataset[0]
    assert str(error.value) == (f"{broken}: latent store file is missing (rebuild the store, or pass skip_bad=True "
                                "to skip such samples)")
    skipping = LatentDataset(root, LatentDatasetConfig(train=False, skip_bad=True))
    with caplog.at_level(logging.WARNING, logger="ln3diff.datasets"):
        assert skipping[0]["object_id"] == skipping[1]["object_id"]
    assert skipping.skipped == 1 and "skipping bad latent sample 0" in caplog.text


def test_writer_rejects_wrong_shapes(tmp_path):
    writer = LatentStoreWriter(tmp_path / "l")
    with pytest.raises(ValueError, match=r"latent of a/0/1 has shape \(4, 32, 32\), expected \(3·C, h, w\)"):
        writer.add("a/0/1", np.zeros((4, 32, 32)), np.zeros((4, 32, 32)), "x")
    with pytest.raises(ValueError, match=r"latent_mean of a/0/1 has shape \(12, 16, 16\), expected \(12, 32, 32\)"):
        writer.add("a/0/1", np.zeros((12, 32, 32)), np.zeros((12, 16, 16)), "x")
    with pytest.raises(ValueError, match="cond_images of a/0/1 must be uint8"):
        writer.add("a/0/1", np.zeros((12, 32, 32)), np.zeros((12, 32, 32)), "x", {}, np.zeros((1, 3, 8, 8)),
                   np.zeros((1, 25)))
    with pytest.raises(FileNotFoundError, match="not a latent store"):
        LatentDataset(tmp_path / "l")
    small = LatentStoreWriter(tmp_path / "m")
    small.add("b/0/1", np.ones((12, 16, 16)), np.ones((12, 16, 16)), "a smaller latent is fine")
    assert LatentDataset(tmp_path / "m", LatentDatasetConfig(train=False))[0]["latent"].shape == (12, 16, 16)
