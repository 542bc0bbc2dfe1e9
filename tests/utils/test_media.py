"""Video/image/JSON writers: formats read back, atomicity, never overwriting."""

import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from utils.media import (
    VIRIDIS_LUT,
    atomic_output,
    check_writable_folder,
    compose_rgb_depth,
    contact_sheet,
    unique_path,
    viridis,
    write_image,
    write_json_record,
    write_video,
)


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    return [np.full((h, w, 3), 10 * k, dtype=np.uint8) for k in range(n)]


def test_viridis_endpoints_and_midpoint():
    np.testing.assert_array_equal(viridis(np.array([0.0, 0.5, 1.0])), [[68, 1, 84], [33, 145, 140], [253, 231, 37]])
    np.testing.assert_array_equal(viridis(np.array([-1.0, 2.0])), [[68, 1, 84], [253, 231, 37]])
    assert VIRIDIS_LUT.shape == (256, 3) and VIRIDIS_LUT.dtype == np.uint8
    # Perceptually increasing: lightness (here the green channel) rises monotonically.
    assert (np.diff(VIRIDIS_LUT[:, 1].astype(int)) >= 0).all()


def test_compose_rgb_depth():
    rgb = torch.full((3, 4, 6), -1.0)
    rgb[0] = 1.0
    depth = torch.zeros(1, 4, 6)
    depth[0, :, 3:] = 2.0
    frame = compose_rgb_depth(rgb, depth)
    assert frame.shape == (4, 12, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(frame[0, 6], [68, 1, 84])  # depth min → viridis(0)
    np.testing.assert_array_equal(frame[0, 11], [253, 231, 37])  # depth max → viridis(1)
    constant = compose_rgb_depth(rgb, torch.ones(4, 6))
    np.testing.assert_array_equal(constant[:, 6:], np.broadcast_to([68, 1, 84], (4, 6, 3)))


def test_mp4_reads_back_with_frame_count_and_size(tmp_path):
    path = write_video(tmp_path / "turntable.mp4", _frames(24, 64, 128), fps=15)
    reader = imageio.get_reader(path)
    frames = [f for f in reader]
    assert reader.get_meta_data()["fps"] == 15
    reader.close()
    assert len(frames) == 24 and frames[0].shape == (64, 128, 3)
    assert abs(int(frames[5].mean()) - 50) <= 2  # flat grey survives the yuv420p round trip


def test_mp4_odd_size_is_padded_to_even(tmp_path):
    path = write_video(tmp_path / "odd.mp4", _frames(3, 33, 47), fps=15)
    with imageio.get_reader(path) as reader:
        assert reader.get_data(0).shape == (34, 48, 3)


def test_gif_frames(tmp_path):
    path = write_video(tmp_path / "t.gif", _frames(5, 16, 20), fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (20, 16)
        assert gif.info["duration"] == 100 and gif.info["loop"] == 0


def test_unique_path_never_overwrites(tmp_path):
    first = unique_path(tmp_path, "sample", "mp4")
    assert first == tmp_path / "sample.mp4"
    first.write_bytes(b"x")
    assert unique_path(tmp_path, "sample", ".mp4") == tmp_path / "sample-1.mp4"
    (tmp_path / "sample-1.mp4").write_bytes(b"y")
    assert unique_path(tmp_path, "sample", "mp4") == tmp_path / "sample-2.mp4"


def test_writers_refuse_to_overwrite_unless_asked(tmp_path):
    path = write_image(tmp_path / "p.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileExistsError):
        write_image(path, np.ones((4, 4, 3), np.uint8))
    with pytest.raises(FileExistsError):
        write_video(path.with_suffix(".png"), _frames(2, 4, 4))
    write_image(path, np.full((4, 4, 3), 7, np.uint8), overwrite=True)
    assert np.asarray(Image.open(path))[0, 0, 0] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(tmp_path / "a.json") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unsupported video format"):
        write_video(tmp_path / "v.avi", _frames(2, 4, 4))
    write_video(tmp_path / "v.gif", _frames(2, 4, 4))
    write_json_record(tmp_path / "v.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif", "v.json"]


def test_json_record_converts_common_types(tmp_path):
    out = tmp_path / "x.mp4"
    settings = {"seed": np.int64(42), "cfg": 4.0, "out": out, "dtype": torch.bfloat16, "t": torch.ones(2)}
    path = write_json_record(tmp_path / "x.json", settings)
    assert json.loads(path.read_text()) == {
        "seed": 42,
        "cfg": 4.0,
        "out": str(out),
        "dtype": "torch.bfloat16",
        "t": [1.0, 1.0],
    }
    with pytest.raises(TypeError, match="cannot store object"):
        write_json_record(tmp_path / "y.json", {"bad": object()})
    assert not (tmp_path / "y.json").exists()


def test_contact_sheet_layout_and_captions(tmp_path):
    tiles = [np.full((20, 30, 3), 0, np.uint8) for _ in range(5)]
    sheet = contact_sheet(tiles, columns=3, pad=4)
    assert sheet.size == (3 * 34 + 4, 2 * 24 + 4)
    np.testing.assert_array_equal(np.asarray(sheet)[4, 4], [0, 0, 0])  # first tile starts after the padding
    np.testing.assert_array_equal(np.asarray(sheet)[30, 80], [255, 255, 255])  # the empty sixth cell is white
    captioned = contact_sheet(tiles, columns=3, captions=[f"s{k}" for k in range(5)], pad=4, font_size=12)
    assert captioned.size == (3 * 34 + 4, 2 * (20 + 16 + 4) + 4)
    # Caption text is drawn (dark pixels) in the strip below the first tile.
    assert np.asarray(captioned)[4 + 20 : 4 + 20 + 16, 4 : 4 + 30].min() < 128
    path = write_image(tmp_path / "sheet.png", captioned)
    assert Image.open(path).size == captioned.size


def test_json_record_is_standard_json_even_with_non_finite_numbers(tmp_path):
    record = {"latent": {"mean": float("nan"), "std": np.float32("inf")}, "t": torch.tensor([1.0, -float("inf")])}
    text = write_json_record(tmp_path / "x.json", record).read_text()

    def refuse(token):  # Python's reader would accept NaN / Infinity; other readers do not
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(text, parse_constant=refuse) == {"latent": {"mean": "nan", "std": "inf"}, "t": [1.0, "-inf"]}


def test_writable_folder_check_probes_without_leaving_anything(tmp_path):
    check_writable_folder(tmp_path / "new" / "deeper")  # created later, by the writer
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError) as e:
        check_writable_folder(tmp_path / "file.txt" / "out")
    assert str(e.value) == (f"--out {tmp_path / 'file.txt' / 'out'}: {tmp_path / 'file.txt'} is a file, not a "
                            f"folder; pick another --out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=r"is not writable \(Permission denied in "):
            check_writable_folder(tmp_path / "out")
    finally:
        tmp_path.chmod(0o755)
