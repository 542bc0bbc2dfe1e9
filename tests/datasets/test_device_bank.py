"""The device-resident view bank: its batches equal the CPU dataset's samples (up to the bank's 8-bit storage),
resume by batch index, and fill from procedural objects or a store alike."""
import itertools

import numpy as np
import pytest
import torch

from datasets.collate import collate_samples
from datasets.device_bank import DeviceViewBank
from datasets.multiview import MultiViewConfig, MultiViewDataset
from datasets.procedural.pipeline import GenerationConfig, parse_procedural_source
from datasets.procedural.store import ProceduralStore
from datasets.record import foreground_bbox, foreground_boxes
from datasets.stores import InMemoryStore

QUANT = 1 / 255 + 1e-6  # 8-bit RGB/alpha, on the [0, 1] scale


def config(**overrides) -> MultiViewConfig:
    base = dict(encoder_views=(25, 0, 9, 18), encoder_resolution=32, render_resolution=32, num_target_views=3)
    return MultiViewConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def bank(records):
    return DeviceViewBank.from_store(InMemoryStore(records), 32, device="cpu", progress=False)


def test_bank_batch_equals_the_dataset_sample(records, bank):
    cfg = config(target_views=(9, 25, 18))
    sample = collate_samples([MultiViewDataset(InMemoryStore(records), cfg)[i] for i in (1, 0)])
    batch = bank.batch([1, 0], [0, 0], cfg)
    assert set(batch) == set(sample)
    for key in ("enc_input", "target_rgb", "target_alpha", "target_depth", "target_cameras", "enc_cameras",
                "target_bbox"):
        assert batch[key].shape == sample[key].shape, key
    enc, ref = batch["enc_input"], sample["enc_input"]
    assert (enc[:, :, :3] - ref[:, :, :3]).abs().max() <= 2 * QUANT  # [-1, 1]
    assert torch.equal(enc[:, :, 3:9], ref[:, :, 3:9])  # Plücker rays from the same float64 cameras
    assert torch.allclose(enc[:, :, 9], ref[:, :, 9], rtol=1e-3, atol=1e-3)  # float16 depth
    assert (batch["target_rgb"] - sample["target_rgb"]).abs().max() <= 2 * QUANT
    assert (batch["target_alpha"] - sample["target_alpha"]).abs().max() <= QUANT
    assert torch.equal(batch["target_cameras"], sample["target_cameras"])
    assert torch.equal(batch["target_bbox"], sample["target_bbox"])
    assert batch["caption"] == sample["caption"] and batch["object_id"] == sample["object_id"]


def test_random_targets_are_distinct_and_seeded(bank):
    cfg = config()
    a, b = bank.batch([0, 0], [5, 6], cfg), bank.batch([0, 0], [5, 6], cfg)
    assert torch.equal(a["target_cameras"], b["target_cameras"])
    for cams in a["target_cameras"]:
        assert len({tuple(c.tolist()) for c in cams}) == 3
    assert not torch.equal(a["target_cameras"][0], a["target_cameras"][1])  # different seeds, different views


def test_batches_resume_at_a_batch_index(bank):
    cfg = config()
    run = list(itertools.islice(bank.batches(2, seed=3, config=cfg), 4))
    resumed = next(bank.batches(2, seed=3, config=cfg, start_batch=3))
    assert all(torch.equal(run[3][k], resumed[k]) for k in ("enc_input", "target_rgb", "target_cameras"))


def test_foreground_boxes_on_torch_and_numpy():
    alpha = torch.zeros(3, 6, 5)
    alpha[0, 1:4, 2] = 0.5
    alpha[0, 2, 4] = 0.01
    alpha[1, 5, 0] = 1.0
    expected = [[1, 2, 3, 4], [5, 0, 5, 0], [0, 0, 5, 4]]  # the last view has no foreground: the whole image
    assert foreground_boxes(alpha).tolist() == expected
    assert foreground_bbox(alpha.numpy()).tolist() == expected and foreground_bbox(alpha.numpy()).dtype == np.int64


def test_procedural_bank_equals_the_procedural_store(generation_config):
    bank = DeviceViewBank.from_procedural(3, seed=generation_config.seed, resolution=32,
                                          view_ids=generation_config.view_ids, device="cpu", batch_objects=2,
                                          progress=False)
    store = ProceduralStore(3, GenerationConfig(seed=generation_config.seed, resolution=32,
                                                view_ids=generation_config.view_ids))
    reference = DeviceViewBank.from_store(store, 32, device="cpu", progress=False)
    assert bank.object_ids == reference.object_ids  # index order, though rendering groups by category
    assert bank.categories == reference.categories
    assert (bank.rgb.int() - reference.rgb.int()).abs().max() <= 1
    assert torch.equal(bank.cameras, reference.cameras)
    assert bank.nbytes == 3 * 4 * 32 * 32 * 6 + 3 * 4 * 25 * 4


def test_procedural_source_strings():
    assert parse_procedural_source("procedural:10000") == (10000, 0)
    assert parse_procedural_source("procedural:12:3") == (12, 3)
    assert parse_procedural_source("data/proc") is None
    for bad in ("procedural:", "procedural:0", "procedural:x", "procedural:1:2:3"):
        with pytest.raises(ValueError, match="write procedural:N or procedural:N:SEED"):
            parse_procedural_source(bad)


def test_a_store_with_mixed_views_is_refused(records):
    other = records[1].select([25, 0, 9])
    with pytest.raises(ValueError, match="needs the same views for every object"):
        DeviceViewBank.from_store(InMemoryStore([records[0], other]), 32, device="cpu", progress=False)
