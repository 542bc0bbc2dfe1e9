"""User-image loading, recentring and the conditioning tensor."""

import sys
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from utils.images import (
    ImageLoadError,
    _rembg_session,
    composite_on_white,
    list_images,
    load_image,
    preprocess_image,
    recentre,
    remove_background,
    to_tensor,
)


def _rgba_object(size=(100, 80), box=(10, 20, 40, 60)) -> Image.Image:
    """Transparent canvas (W, H) = size with an opaque red box covering rows box[0]:box[2], cols box[1]:box[3]."""
    array = np.zeros((size[1], size[0], 4), np.uint8)
    top, left, bottom, right = box
    array[top:bottom, left:right] = [200, 0, 0, 255]
    return Image.fromarray(array)


def test_rgba_composited_on_white_exact():
    array = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 128]]], np.uint8)
    out = np.asarray(composite_on_white(Image.fromarray(array)))
    # 128/255 alpha: 200·128/255 + 255·127/255 = 227.39…, 100·… = 177.2…, 0·… = 127
    np.testing.assert_array_equal(out, [[[200, 100, 0], [255, 255, 255], [227, 177, 127]]])


def test_png_jpg_webp_and_odd_modes_load(tmp_path):
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:, :25] = [0, 0, 255]
    for ext in ("png", "jpg", "webp"):
        Image.fromarray(rgb).save(tmp_path / f"a.{ext}")
        image = load_image(tmp_path / f"a.{ext}")
        assert image.mode == "RGB" and image.size == (50, 30)
        assert np.abs(np.asarray(image)[15, 5].astype(int) - [0, 0, 255]).max() < 8, ext
    _rgba_object().save(tmp_path / "b.webp", lossless=True)
    assert load_image(tmp_path / "b.webp").mode == "RGBA"
    gray16 = np.full((8, 8), 65535 // 2, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    assert image.mode == "RGB" and tuple(np.asarray(image)[0, 0]) == (127, 127, 127)
    palette = Image.fromarray(rgb).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    assert load_image(tmp_path / "p.png").mode == "RGBA"
    Image.fromarray(rgb[..., 0]).convert("LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").mode == "RGBA"


def test_corrupt_and_missing_files_give_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError) as err:
        load_image(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:400])
    with pytest.raises(ImageLoadError, match=r"cannot read image .*cut\.jpg"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match="no such file"):
        list_images(tmp_path / "missing.png")


def test_folder_lists_sorted_images(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageLoadError, match="no png/jpg/jpeg/webp images"):
        list_images(tmp_path / "empty")


def test_recentre_puts_bbox_at_85_percent_exactly():
    out = recentre(_rgba_object(size=(300, 200), box=(50, 100, 135, 151)), ratio=0.85)  # object 85 × 51
    assert out.size == (100, 100) and out.mode == "RGBA"
    alpha = np.asarray(out)[..., 3] > 0
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    assert (rows[0], rows[-1] + 1) == (7, 92)  # 85 rows centred in 100
    assert (cols[0], cols[-1] + 1) == (24, 75)  # 51 cols centred
    assert (rows[-1] + 1 - rows[0]) / out.size[0] == 0.85


def test_recentre_white_background_without_alpha():
    array = np.full((120, 200, 3), 255, np.uint8)
    array[10:44, 150:184] = [30, 60, 90]  # 34 × 34 object off-centre
    array[0, 0] = [250, 250, 250]  # JPEG-like near-white noise is background
    out = recentre(Image.fromarray(array), ratio=0.85)
    assert out.size == (40, 40)
    rgb = np.asarray(composite_on_white(out))
    assert (rgb[3:37, 3:37] == [30, 60, 90]).all()
    assert (rgb[:3] == 255).all() and (rgb[37:] == 255).all()
    with pytest.raises(ValueError, match="no foreground"):
        recentre(Image.fromarray(np.full((8, 8, 3), 255, np.uint8)))


def test_to_tensor_range_and_size():
    image = Image.fromarray(np.tile(np.array([[0, 255]], np.uint8)[..., None], (50, 25, 3)))
    t = to_tensor(image, 256)
    assert t.shape == (3, 256, 256) and t.dtype == torch.float32
    exact = to_tensor(Image.fromarray(np.array([[[0, 255, 51]]], np.uint8)), 1)
    torch.testing.assert_close(exact.flatten(), torch.tensor([-1.0, 1.0, -0.6]))
    assert to_tensor(image, (64, 32)).shape == (3, 64, 32)


def test_preprocess_pipeline_white_border(tmp_path):
    _rgba_object(size=(300, 200), box=(50, 100, 135, 151)).save(tmp_path / "obj.png")
    t = preprocess_image(tmp_path / "obj.png", size=100)
    assert t.shape == (3, 100, 100)
    assert t[:, :7].eq(1.0).all() and t[:, 93:].eq(1.0).all()  # white border outside the 85 % frame
    torch.testing.assert_close(t[:, 50, 50], torch.tensor([200 / 127.5 - 1, -1.0, -1.0]))
    assert preprocess_image(tmp_path / "obj.png", size=100, recentre_ratio=None)[:, 0, 0].eq(1.0).all()


def test_background_removal_skips_with_warning_when_unavailable(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "rembg", None)  # import fails as if not installed
    image = Image.new("RGB", (4, 4), "red")
    with pytest.warns(UserWarning, match="background removal skipped: the rembg package is not installed"):
        assert remove_background(image) is image
    cut_out = _rgba_object()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert remove_background(cut_out) is cut_out  # already has transparency: nothing to do


def test_background_removal_uses_local_rembg_model(monkeypatch, tmp_path):
    calls = []
    fake = types.SimpleNamespace(
        new_session=lambda name: calls.append(name) or "session",
        remove=lambda image, session: calls.append(session) or image.convert("RGBA"),
    )
    monkeypatch.setitem(sys.modules, "rembg", fake)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    _rembg_session.cache_clear()
    with pytest.warns(UserWarning, match="never downloaded"):
        remove_background(Image.new("RGB", (4, 4)))
    (tmp_path / "u2net.onnx").write_bytes(b"")
    out = remove_background(Image.new("RGB", (4, 4)))
    assert out.mode == "RGBA" and calls == ["u2net", "session"]
    _rembg_session.cache_clear()
