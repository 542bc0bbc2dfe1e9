"""Procedural renders → every store → reader and stage-1 loader, within each format's quantisation; damaged data."""
import logging
import shutil

import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.collate import collate_samples
from datasets.errors import BadSampleError
from datasets.multiview import MultiViewConfig, MultiViewDataset
from datasets.stores import FORMATS, InMemoryStore, detect_format, make_writer, open_store
from datasets.stores.cap3d import CAPTION_FILE, read_captions
from datasets.stores.chunks import erode_cross

U8 = 1.0 / 255.0
# Worst-case error each format implies for colour on white and alpha (straight RGBA PNG: colour ±½ code scaled by
# alpha plus alpha ±½ code; chunks: JPEG alpha ±3 codes, snapped to 0/255 within 3 codes of them).
RGB_TOL = {"gobjaverse": U8, "lmdb": U8, "wds": U8, "chunks": 4 * U8}
ALPHA_TOL = {"gobjaverse": 0.5 * U8, "lmdb": 0.5 * U8, "wds": 0.5 * U8, "chunks": 4 * U8}
LOADER = MultiViewConfig(encoder_views=(25, 0, 9), encoder_resolution=32, render_resolution=32, num_target_views=2)


def write_store(records, fmt, path):
    with make_writer(fmt, path, workers=2) as writer:
        for record in records:
            writer.add(record)
    return path


@pytest.fixture(scope="module")
def stores(records, tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return {fmt: open_store(write_store(records, fmt, root / fmt)) for fmt in FORMATS}


def by_id(store):
    return {store.object_id(i): i for i in range(len(store))}


def assert_depth_within_format(fmt, ours, reference, near_far=None):
    if fmt in ("lmdb", "wds"):
        assert np.array_equal(ours, reference)
    elif fmt == "gobjaverse":  # float16: 11 significant bits
        assert np.all(np.abs(ours - reference) <= reference * 2.0**-11 + 1e-7)
    else:  # chunks: 8-bit inverse depth (±½ code) plus JPEG rounding (±2 codes), kept only on the eroded interior
        kept = ours > 0
        step = (near_far[1] - near_far[0])[:, None, None] / 255.0
        bound = reference**2 * 2.5 * step * 1.01
        assert np.all((np.abs(ours - reference) <= bound)[kept])
        assert np.all(ours[~kept] == 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_restores_records_within_quantisation(fmt, stores, records):
    store = stores[fmt]
    assert detect_format(store.location) == fmt and len(store) == len(records)
    index = by_id(store)
    for record in records:
        ours = store.read(index[record.object_id])
        reference = record.select(ours.view_ids)
        assert sorted(ours.view_ids.tolist()) == sorted(record.view_ids.tolist())
        assert np.max(np.abs(ours.cameras - reference.cameras)) <= 1.2e-7
        assert np.max(np.abs(ours.rgb_on_white() - reference.rgb_on_white())) <= RGB_TOL[fmt] + 1e-6
        assert np.max(np.abs(ours.alpha - reference.alpha)) <= ALPHA_TOL[fmt] + 1e-6
        near_far = None
        if fmt == "chunks":
            near_far = np.load(f"{store.location}/{record.object_id.split('/', 1)[1]}/d_near_far.npy")
            interior = erode_cross(reference.alpha == 1)
            assert np.all(ours.depth[interior] > 0)
        assert_depth_within_format(fmt, ours.depth, reference.depth, near_far)
        if fmt == "gobjaverse":
            assert np.max(np.abs(ours.normal - reference.normal)) <= 1e-3
        assert ours.caption == record.caption and ours.labels == record.labels
        assert ours.category == record.category


@pytest.mark.parametrize("fmt", FORMATS)
def test_loader_gives_the_same_tensors_from_every_store(fmt, stores, records):
    reference = MultiViewDataset(InMemoryStore(records), LOADER)
    loaded = MultiViewDataset(stores[fmt], LOADER)
    index = by_id(stores[fmt])
    for ref_index, record in enumerate(records):
        a, b = reference[ref_index], loaded[index[record.object_id]]
        assert (a["caption"], a["category"], a["object_id"]) == (b["caption"], b["category"], b["object_id"])
        for key in ("enc_cameras", "target_cameras"):
            assert torch.allclose(a[key], b[key], atol=1.2e-7, rtol=0)
        assert torch.allclose(a["enc_input"][:, 3:9], b["enc_input"][:, 3:9], atol=1e-6, rtol=0)
        rgb_tol = RGB_TOL[fmt] + 1e-6
        assert (a["enc_input"][:, :3] - b["enc_input"][:, :3]).abs().max() <= 2 * rgb_tol  # [-1, 1] encoder RGB
        assert (a["target_rgb"] - b["target_rgb"]).abs().max() <= 2 * rgb_tol
        assert (a["target_alpha"] - b["target_alpha"]).abs().max() <= ALPHA_TOL[fmt] + 1e-6
        if fmt == "chunks":  # JPEG alpha near zero may be snapped off: the box shrinks by at most a pixel
            assert (a["target_bbox"] - b["target_bbox"]).abs().max() <= 1
        else:
            assert torch.equal(a["target_bbox"], b["target_bbox"])
        depths = ((a["target_depth"], b["target_depth"]), (a["enc_input"][:, 9:], b["enc_input"][:, 9:]))
        for depth_a, depth_b in depths:
            if fmt == "chunks":
                kept = depth_b > 0
                assert ((depth_a - depth_b).abs()[kept] <= 0.03).all() and (depth_b[~kept] == 0).all()
            elif fmt == "gobjaverse":
                assert ((depth_a - depth_b).abs() <= depth_a * 2.0**-11 + 1e-7).all()
            else:
                assert torch.equal(depth_a, depth_b)


def test_cap3d_captions_and_gobjaverse_layout(stores, records):
    root = stores["gobjaverse"].location
    captions = read_captions(f"{root}/{CAPTION_FILE}")
    assert captions == {f"0/{k}": r.caption for k, r in enumerate(records)}
    category = records[0].category
    assert sorted(p.name for p in (stores["gobjaverse"].root / category / "0" / "0" / "campos_512_v4").iterdir()) == \
        ["00000", "00009", "00018", "00025"]


def test_wds_shards_are_reproducible(records, tmp_path):
    first = write_store(records, "wds", tmp_path / "a")
    second = write_store(records, "wds", tmp_path / "b")
    assert (first / "wds-000000.tar").read_bytes() == (second / "wds-000000.tar").read_bytes()


def test_writers_refuse_to_overwrite_lmdb_and_wds(records, tmp_path):
    write_store(records[:1], "lmdb", tmp_path / "l")
    with pytest.raises(FileExistsError, match="already exists"):
        make_writer("lmdb", tmp_path / "l")
    write_store(records[:1], "wds", tmp_path / "w")
    with pytest.raises(FileExistsError, match="already holds .tar shards"):
        make_writer("wds", tmp_path / "w")


def test_truncated_shard_is_named_and_can_be_skipped(records, tmp_path, caplog):
    root = write_store(records, "wds", tmp_path / "wds")
    shard = root / "wds-000000.tar"
    data = shard.read_bytes()
    second = data.index(b"00000001.sample.pyd")
    shard.write_bytes(data[:second + 512 + 600])  # header of the second sample and part of its data
    with pytest.raises(BadSampleError) as error:
        open_store(root)
    assert str(error.value) == (f"{shard}: truncated tar shard (member '00000001.sample.pyd' ends past the end of the "
                                "file) after 1 intact samples (rebuild the store, or pass skip_bad=True to skip such "
                                "samples)")
    with caplog.at_level(logging.WARNING, logger="ln3diff.datasets"):
        store = open_store(root, skip_bad=True)
    assert len(store) == 1 and store.skipped == 1
    assert "skipping the damaged end of" in caplog.text
    assert store.read(0).object_id == records[0].object_id


def test_missing_view_is_named(records, tmp_path):
    root = write_store(records, "gobjaverse", tmp_path / "g")
    first, second = (root / r.object_id / "campos_512_v4" for r in records)
    shutil.rmtree(first / "00009")
    (second / "00018" / "00018.png").unlink()
    dataset = MultiViewDataset(open_store(root), MultiViewConfig(encoder_views=(25, 0, 9), encoder_resolution=32,
                                                                 render_resolution=32, target_views=(18, 25),
                                                                 num_target_views=2))
    with pytest.raises(BadSampleError) as error:
        dataset[0]
    assert str(error.value) == (f"{first}: view 9 is missing (stored views: [0, 18, 25]) (rebuild the store, or pass "
                                "skip_bad=True to skip such samples)")
    with pytest.raises(BadSampleError) as error:
        dataset[1]
    assert str(error.value) == (f"{second / '00018' / '00018.png'}: view file is missing (rebuild the store, or pass "
                                "skip_bad=True to skip such samples)")


def test_corrupt_lmdb_entry_is_named_and_skipped(records, tmp_path, caplog):
    root = write_store(records, "lmdb", tmp_path / "l")
    env = lmdb.open(str(root), subdir=True)
    with env.begin(write=True) as txn:
        txn.put(b"0-25-raw_img", b"not a png")
    env.close()
    dataset = MultiViewDataset(open_store(root), LOADER)
    with pytest.raises(BadSampleError) as error:
        dataset[0]
    assert str(error.value) == (f"{root} key '0-25-raw_img': not a decodable image (UnidentifiedImageError) (rebuild "
                                "the store, or pass skip_bad=True to skip such samples)")
    skipping = MultiViewDataset(open_store(root), MultiViewConfig(**{**LOADER.__dict__, "skip_bad": True}))
    with caplog.at_level(logging.WARNING, logger="ln3diff.datasets"):
        sample = skipping[0]
    assert sample["object_id"] == records[1].object_id and skipping.skipped == 1
    assert "skipping bad sample 0" in caplog.text


@pytest.mark.parametrize("fmt", ["lmdb", "wds"])
def test_dataloader_with_two_workers(fmt, stores):
    dataset = MultiViewDataset(stores[fmt], LOADER)
    expected = collate_samples([dataset[0], dataset[1]])
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_samples)
    (batch,) = list(loader)
    assert batch["object_id"] == expected["object_id"]
    for key in ("enc_input", "target_rgb", "target_depth", "target_alpha", "target_bbox"):
        assert torch.equal(batch[key], expected[key]), key


def test_exr_views_and_unknown_folders_are_reported(records, tmp_path):
    root = write_store(records[:1], "gobjaverse", tmp_path / "g")
    view = root / records[0].object_id / "campos_512_v4" / "00000"
    (view / "00000_nd.npz").unlink()
    (view / "00000_nd.exr").write_bytes(b"not an exr")
    with pytest.raises(BadSampleError) as error:
        open_store(root).read(0)
    assert str(error.value).startswith(f"{view / '00000_nd.exr'}: EXR is not supported (it needs libraries outside our "
                                       "dependencies); convert it to _nd.npz holding array 'nd', float16 (H, W, 4)")
    with pytest.raises(ValueError, match="is not a store: expected data.mdb"):
        open_store(tmp_path)
