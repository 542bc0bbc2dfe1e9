"""User images for image-to-3D: loading, optional background removal, recentring, and the conditioning tensor.

The released demo (spec §9) runs rembg, then `resize_foreground(0.85)`, composites on white and resizes with LANCZOS;
the released CLI (§7.2) only composites and resizes. `preprocess_image` does either, and also recentres images that
have no alpha channel by treating near-white pixels as background, so white-background photos are framed the same
way as cut-outs.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
REMBG_MODEL = "u2net"  # the model the released demo uses (rembg.new_session() default)


class ImageLoadError(ValueError):
    """An input image could not be read; the message is one line naming the file."""


def list_images(path: str | os.PathLike) -> list[Path]:
    """A file → [file]; a folder → its png/jpg/jpeg/webp files (not recursive), sorted by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ImageLoadError(f"no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images in folder {path}")
        return files
    if not path.exists():
        raise ImageLoadError(f"cannot read image {path}: no such file or folder")
    return [path]


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Normalise any PIL mode to RGB (no transparency) or RGBA (has an alpha channel or palette transparency)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode.startswith("I"):
        # 16-bit grayscale PNGs open as "I;16"/"I" with values up to 65535; 257 = 65535 / 255.
        array = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.round(np.clip(array, 0, 255)).astype(np.uint8)).convert("RGB")
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read one image (any size; png/jpg/webp, any mode) as RGB, or RGBA when it has transparency.

    JPEG EXIF orientation is applied. A missing, corrupt or truncated file raises ImageLoadError naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now so truncated files fail here, not later
            image = ImageOps.exif_transpose(image)
            return _to_rgb_or_rgba(image)
    except UnidentifiedImageError:
        raise ImageLoadError(f"cannot read image {path}: not a recognised image format or corrupt") from None
    except (OSError, ValueError, SyntaxError) as err:
        # strerror avoids repeating the path that OSError's message already contains.
        reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
        raise ImageLoadError(f"cannot read image {path}: {reason}") from None


def composite_on_white(image: Image.Image) -> Image.Image:
    """RGBA → RGB over white: out = rgb·a + 255·(1 − a), rounded. RGB images are returned unchanged."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    array = np.asarray(image, dtype=np.float64)
    alpha = array[..., 3:] / 255.0
    out = array[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return Image.fromarray(np.round(out).astype(np.uint8))


def foreground_mask(image: Image.Image, white_threshold: int = 240) -> np.ndarray:
    """(H, W) bool: alpha > 0 for RGBA; otherwise pixels with any channel below `white_threshold` (non-white)."""
    array = np.asarray(image)
    if image.mode == "RGBA":
        return array[..., 3] > 0
    return (np.asarray(image.convert("RGB")) < white_threshold).any(axis=-1)


def recentre(image: Image.Image, ratio: float = 0.85, white_threshold: int = 240) -> Image.Image:
    """Crop to the foreground bbox, pad to a square, then pad so the object spans `ratio` of the side (as released).

    The foreground is alpha > 0, or non-white pixels when there is no alpha (see `foreground_mask`). Padding is
    transparent white, so compositing on white afterwards gives a white border either way. The bbox is inclusive
    (the released code drops the last row/column) and the final side is round(size / ratio). Returns RGBA, square.
    """
    mask = foreground_mask(image, white_threshold)
    if not mask.any():
        raise ValueError("recentre: the image has no foreground (fully transparent or all white)")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = np.asarray(image.convert("RGBA"))[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape[:2]
    size = max(h, w)
    side = max(size, round(size / ratio))
    top, left = (side - h) // 2, (side - w) // 2
    out = np.zeros((side, side, 4), dtype=np.uint8)
    out[..., :3] = 255
    out[top : top + h, left : left + w] = crop
    return Image.fromarray(out)


def _rembg_model_path() -> Path:
    # rembg keeps its models in $U2NET_HOME, else $XDG_DATA_HOME/.u2net, else ~/.u2net.
    home = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(home).expanduser() / f"{REMBG_MODEL}.onnx"


def rembg_unavailable_reason() -> str | None:
    """None when rembg and its u2net model are present locally; otherwise why background removal can't run."""
    try:
        import rembg  # noqa: F401
    except ImportError:
        return "the rembg package is not installed"
    if not _rembg_model_path().is_file():
        return f"the rembg model is not at {_rembg_model_path()} (it is never downloaded)"
    return None


def require_rembg(flag: str = "--remove-background") -> None:
    """Raise ImportError (one line: what is missing, how to get it, the alternative) unless background removal
    can run: a step that was asked for must not be skipped silently while the record says it was applied."""
    reason = rembg_unavailable_reason()
    if reason is None:
        return
    fix = ("install it with `pip install 'rembg[cpu]'` (or rembg[gpu])" if "package" in reason else
           f"put the {REMBG_MODEL}.onnx model file there")
    raise ImportError(f"{flag} cannot run: {reason}; {fix}, or drop {flag} and pass cut-out (transparent) or "
                      f"white-background images")


@functools.lru_cache(maxsize=1)
def _rembg_session():
    import rembg

    return rembg.new_session(REMBG_MODEL)


def remove_background(image: Image.Image) -> Image.Image:
    """Cut out the object with rembg (u2net) → RGBA. Skipped with a warning when rembg or its model is missing.

    An image that already has transparency is returned as is: it is already cut out (the released demo meant to do
    this but converted to RGB first, so it always re-ran rembg).
    """
    if image.mode == "RGBA" and np.asarray(image)[..., 3].min() < 255:
        return image
    reason = rembg_unavailable_reason()
    if reason is not None:
        warnings.warn(f"background removal skipped: {reason}", stacklevel=2)
        return image
    import rembg

    return rembg.remove(image.convert("RGB"), session=_rembg_session()).convert("RGBA")


def to_tensor(image: Image.Image, size: int | tuple[int, int] = 256) -> torch.Tensor:
    """Composite on white, resize to `size` (int → square; (H, W) otherwise) with LANCZOS → (3, H, W) in [-1, 1]."""
    height, width = (size, size) if isinstance(size, int) else size
    rgb = composite_on_white(image)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
    array = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy())
    return array.permute(2, 0, 1) / 127.5 - 1.0


def preprocess_image(
    image: str | os.PathLike | Image.Image,
    size: int | tuple[int, int] = 256,
    remove_bg: bool = False,
    recentre_ratio: float | None = 0.85,
) -> torch.Tensor:
    """The whole path from a user image to the conditioning tensor (3, H, W) in [-1, 1].

    remove_bg: run rembg when available (see `remove_background`). recentre_ratio: frame the object at this fraction
    of the side (0.85 as the demo), or None to keep the framing (as the released CLI).
    """
    path = None if isinstance(image, Image.Image) else image
    if path is not None:
        image = load_image(path)
    if remove_bg:
        image = remove_background(image)
    if recentre_ratio is not None:
        try:
            image = recentre(image, recentre_ratio)
        except ValueError as err:  # a file's problem names the file: one folder may hold many images
            if path is None:
                raise
            raise ImageLoadError(f"cannot use image {path}: {str(err).removeprefix('recentre: ')}; use a picture "
                                 f"showing the object") from None
    return to_tensor(image, size)
