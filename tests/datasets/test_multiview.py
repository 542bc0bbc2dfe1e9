"""The stage-1 sample: channel contents, target views, resizing, seeded view choices, on-the-fly procedural store."""
import numpy as np
import pytest
import torch

from datasets.collate import collate_samples
from datasets.multiview import IMAGENET_MEAN, IMAGENET_STD, MultiViewConfig, MultiViewDataset
from datasets.procedural.store import ProceduralStore
from datasets.record import foreground_bbox
from datasets.stores import InMemoryStore
from nsr.cameras import plucker_image

ARCHITECTURE_KEYS = {"enc_input", "enc_cameras", "target_rgb", "target_depth", "target_alpha", "target_cameras",
                     "target_bbox", "caption", "category", "object_id"}


def config(**overrides) -> MultiViewConfig:
    base = dict(encoder_views=(25, 0, 9, 18), encoder_resolution=32, render_resolution=32, num_target_views=3)
    return MultiViewConfig(**{**base, **overrides})


def test_sample_channels_hold_what_the_contract_says(records):
    dataset = MultiViewDataset(InMemoryStore(records), config())
    sample = dataset[1]
    record = records[1].select([25, 0, 9, 18])
    assert set(sample) == ARCHITECTURE_KEYS
    assert sample["enc_input"].shape == (4, 10, 32, 32) and sample["enc_input"].dtype == torch.float32
    rgb = torch.from_numpy(record.rgb_on_white()).permute(0, 3, 1, 2)
    assert torch.allclose(sample["enc_input"][:, :3], rgb * 2 - 1, atol=1e-6)  # default: [-1, 1] like the fixture
    cameras = torch.from_numpy(record.cameras)
    assert torch.equal(sample["enc_cameras"], cameras)
    assert torch.equal(sample["enc_input"][:, 3:9], plucker_image(cameras.double(), 32).float())
    assert torch.equal(sample["enc_input"][:, 9], torch.from_numpy(record.depth))
    assert (sample["caption"], sample["category"], sample["object_id"]) == \
        (record.caption, record.category, record.object_id)

    imagenet = MultiViewDataset(InMemoryStore(records), config(encoder_rgb="imagenet"))[1]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(imagenet["enc_input"][:, :3] * std + mean, rgb, atol=1e-6)


def test_targets_are_distinct_views_with_matching_images(records):
    sample = MultiViewDataset(InMemoryStore(records), config())[0]
    record = records[0]
    chosen = [int(np.flatnonzero((record.cameras == c.numpy()).all(1))[0]) for c in sample["target_cameras"]]
    assert len(set(chosen)) == 3
    rgb = torch.from_numpy(record.rgb_on_white()[chosen]).permute(0, 3, 1, 2)
    assert torch.allclose(sample["target_rgb"], rgb * 2 - 1, atol=1e-6)
    assert torch.equal(sample["target_alpha"][:, 0], torch.from_numpy(record.alpha[chosen]))
    assert torch.equal(sample["target_depth"][:, 0], torch.from_numpy(record.depth[chosen]))
    assert torch.equal(sample["target_bbox"], torch.from_numpy(foreground_bbox(record.alpha[chosen])))
    top, left, bottom, right = sample["target_bbox"][0].tolist()
    alpha = record.alpha[chosen[0]]
    assert alpha[top].max() > 0 and alpha[bottom].max() > 0 and alpha[:, left].max() > 0 and alpha[:, right].max() > 0
    assert alpha[:top].max(initial=0) == 0 and alpha[bottom + 1:].max(initial=0) == 0


def test_resizing_to_other_resolutions(records):
    sample = MultiViewDataset(InMemoryStore(records), config(encoder_resolution=48, render_resolution=16,
                                                             target_views=(25, 0, 9)))[0]
    record = records[0].select([25, 0, 9])
    assert sample["enc_input"].shape == (4, 10, 48, 48) and sample["target_rgb"].shape == (3, 3, 16, 16)
    # depth is resized with nearest neighbour: every value is one of the source values
    source = set(np.unique(record.depth).tolist())
    assert set(np.unique(sample["target_depth"].numpy()).tolist()) <= source
    # antialiased bilinear keeps the mean colour
    full = torch.from_numpy(record.rgb_on_white()).mean(dim=(1, 2))
    assert torch.allclose((sample["target_rgb"].mean(dim=(2, 3)) + 1) / 2, full, atol=0.02)
    assert sample["target_bbox"].max() <= 15


def test_random_views_are_reproducible_and_vary_with_the_epoch(records):
    dataset = MultiViewDataset(InMemoryStore(records), config(encoder_views=(25, 0), random_encoder_views=True,
                                                              num_target_views=2, seed=3))
    first, again = dataset[0], dataset[0]
    assert torch.equal(first["enc_cameras"], again["enc_cameras"])
    assert torch.equal(first["target_cameras"], again["target_cameras"])
    choices = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        assert not torch.equal(sample["enc_cameras"][0], sample["enc_cameras"][1])
        choices.add(tuple(sample["enc_cameras"][:, 3].tolist()))
    assert len(choices) > 1


def test_procedural_store_renders_the_same_views(records, generation_config):
    on_the_fly = MultiViewDataset(ProceduralStore(2, generation_config), config())
    stored = MultiViewDataset(InMemoryStore(records), config())
    assert on_the_fly.store.object_id(1) == records[1].object_id
    for index in range(2):
        a, b = on_the_fly[index], stored[index]
        for key in ("enc_input", "target_rgb", "target_depth", "target_alpha"):
            assert torch.allclose(a[key], b[key], atol=1e-4), key
        assert torch.equal(a["target_cameras"], b["target_cameras"])


def test_collate_and_config_validation(records):
    dataset = MultiViewDataset(InMemoryStore(records), config())
    batch = collate_samples([dataset[0], dataset[1]])
    assert batch["enc_input"].shape == (2, 4, 10, 32, 32)
    assert batch["target_bbox"].shape == (2, 3, 4)
    assert batch["caption"] == [r.caption for r in records]
    with pytest.raises(ValueError, match="encoder_rgb must be"):
        config(encoder_rgb="raw")
    with pytest.raises(ValueError, match="target_views lists 2 views but num_target_views is 3"):
        config(target_views=(0, 9))
