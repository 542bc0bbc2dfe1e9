"""Writing outputs: turntable videos (mp4/gif), preview images, contact sheets and JSON records.

Every writer goes through `atomic_output`: the file is written under a hidden temporary name in the destination folder
and moved into place only when complete, so a crash never leaves a half-written mp4/png/json behind. Writers refuse to
replace an existing file unless called with `overwrite=True`; `unique_path` picks a fresh name instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Viridis (matplotlib's default colour map) at evenly spaced positions k/7 plus 0.25 and 0.75 — the widely published
# sRGB stops. Linear interpolation between them stays within a few 1/255 of the full 256-entry table, which is enough
# for a depth preview and avoids a matplotlib dependency.
_VIRIDIS_STOPS = (
    (0.0, 0x440154),
    (1 / 7, 0x46337E),
    (0.25, 0x3B528B),
    (2 / 7, 0x365C8D),
    (3 / 7, 0x277F8E),
    (0.5, 0x21918C),
    (4 / 7, 0x1FA187),
    (5 / 7, 0x4AC16D),
    (0.75, 0x5EC962),
    (6 / 7, 0x9FDA3A),
    (1.0, 0xFDE725),
)


def _build_viridis_lut() -> np.ndarray:
    pos = np.array([p for p, _ in _VIRIDIS_STOPS])
    rgb = np.array([[(c >> 16) & 255, (c >> 8) & 255, c & 255] for _, c in _VIRIDIS_STOPS], dtype=np.float64)
    x = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(x, pos, rgb[:, ch]) for ch in range(3)], axis=-1)
    return np.round(lut).astype(np.uint8)


VIRIDIS_LUT = _build_viridis_lut()  # (256, 3) uint8


def viridis(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape S; clipped) to viridis colours (S..., 3) uint8."""
    idx = np.round(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * 255).astype(np.int64)
    return VIRIDIS_LUT[idx]


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float32).numpy()
    return np.asarray(x)


def compose_rgb_depth(rgb: np.ndarray | torch.Tensor, depth: np.ndarray | torch.Tensor) -> np.ndarray:
    """One video frame as released: [RGB | depth in viridis], the depth min-max normalised over this frame.

    rgb: (3, H, W) in [-1, 1] (the renderer's output); depth: (1, H, W) or (H, W).
    Returns (H, 2W, 3) uint8.
    """
    rgb = _to_numpy(rgb).astype(np.float64)
    depth = _to_numpy(depth).astype(np.float64).reshape(rgb.shape[1:])
    rgb8 = np.round((np.clip(rgb, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    lo, hi = depth.min(), depth.max()
    # A constant depth map (e.g. an empty render) would divide by zero; show it as the low end of the map.
    norm = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    return np.concatenate([rgb8, viridis(norm)], axis=1)


def unique_path(directory: str | os.PathLike, stem: str, ext: str) -> Path:
    """`directory/stem.ext`, or the first free `stem-1.ext`, `stem-2.ext`, … if it exists. `ext` with or without dot."""
    directory = Path(directory)
    ext = ext if ext.startswith(".") else f".{ext}"
    candidate = directory / f"{stem}{ext}"
    n = 0
    while candidate.exists():
        n += 1
        candidate = directory / f"{stem}-{n}{ext}"
    return candidate


def check_writable_folder(folder: str | os.PathLike, flag: str = "--out") -> None:
    """Raise ValueError (one line) unless files can be created in `folder`, or in the nearest existing folder
    above it (the rest is created later). Run before any slow work, so an unwritable output costs seconds, not
    the run. It probes with a real temporary file: permission bits say nothing for root or on a read-only mount."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {folder}: {existing} is a file, not a folder; pick another {flag}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag} {folder} is not writable ({e.strerror} in {existing}); pick a writable folder") \
            from None


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success move it to `path`, on failure delete it.

    The temporary name keeps the suffix so writers that pick the format from the extension still work. Without
    `overwrite`, an existing `path` raises FileExistsError before anything is written, and the final move uses a hard
    link, which fails rather than replaces if another writer got there first.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite {path} (pass overwrite=True or use unique_path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer produced no file for {path}")
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"refusing to overwrite {path}: it appeared while writing") from None
            except OSError:
                # Filesystems without hard links: fall back to check-then-replace (a small race window).
                if path.exists():
                    raise FileExistsError(f"refusing to overwrite {path}") from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _frame_uint8(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 from (H, W, 3) uint8 or float in [0, 1]."""
    frame = _to_numpy(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (H, W, 3), got {frame.shape}")
    if frame.dtype == np.uint8:
        return frame
    return np.round(np.clip(frame.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height; replicate the last row/column rather than rescale."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(
    path: str | os.PathLike,
    frames: Sequence[np.ndarray | torch.Tensor] | np.ndarray,
    fps: float = 15.0,
    overwrite: bool = False,
) -> Path:
    """Write frames (each (H, W, 3) uint8, or float in [0, 1]) as .mp4 (libx264, yuv420p) or .gif, by suffix.

    Odd mp4 dimensions are padded to even by edge replication. The gif loops forever. Returns the path.
    """
    path = Path(path)
    frames = [_frame_uint8(f) for f in frames]
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError(f"frames for {path} differ in size: {sorted({f.shape for f in frames})}")
    suffix = path.suffix.lower()
    with atomic_output(path, overwrite) as tmp:
        if suffix == ".mp4":
            # macro_block_size=1 stops imageio from rescaling to multiples of 16; we already made the size even.
            try:
                writer = imageio.get_writer(
                    tmp,
                    format="FFMPEG",
                    mode="I",
                    fps=fps,
                    codec="libx264",
                    pixelformat="yuv420p",
                    macro_block_size=1,
                    ffmpeg_log_level="error",
                )
            except ImportError:
                raise ImportError(
                    f"writing {path.name} needs the imageio-ffmpeg package: run `bash scripts/install.sh` or "
                    "`pip install imageio-ffmpeg`, or write only GIFs (--video-formats gif)"
                ) from None
            with writer:
                for frame in frames:
                    writer.append_data(_pad_even(frame))
        elif suffix == ".gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
            )
        else:
            raise ValueError(f"unsupported video format {path.suffix!r} for {path} (use .mp4 or .gif)")
    return path


def _as_pil(image: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = _to_numpy(image)
    if array.ndim == 3 and array.shape[-1] == 3:
        return Image.fromarray(_frame_uint8(array))
    if array.ndim == 2 and array.dtype == np.uint8:
        return Image.fromarray(array)
    raise ValueError(f"expected an (H, W, 3) image or (H, W) uint8, got shape {array.shape} {array.dtype}")


def write_image(
    path: str | os.PathLike, image: Image.Image | np.ndarray | torch.Tensor, overwrite: bool = False
) -> Path:
    """Write a PIL image or (H, W, 3) array (uint8, or float in [0, 1]) as png/jpg/webp, by suffix."""
    path = Path(path)
    image = _as_pil(image)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported image format {path.suffix!r} for {path}")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    with atomic_output(path, overwrite) as tmp:
        image.save(tmp, format=fmt)
    return path


def contact_sheet(
    images: Sequence[Image.Image | np.ndarray | torch.Tensor],
    columns: int | None = None,
    captions: Sequence[str] | None = None,
    pad: int = 4,
    font_size: int = 14,
) -> Image.Image:
    """Grid of images on white, each cell the size of the largest image, optional caption under each cell.

    `columns` defaults to ceil(sqrt(n)). Returns an RGB PIL image.
    """
    tiles = [_as_pil(im).convert("RGB") for im in images]
    if not tiles:
        raise ValueError("contact_sheet needs at least one image")
    if captions is not None and len(captions) != len(tiles):
        raise ValueError(f"{len(captions)} captions for {len(tiles)} images")
    columns = columns or int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / columns))
    cell_w = max(t.width for t in tiles)
    cell_h = max(t.height for t in tiles)
    font = ImageFont.load_default(size=font_size)
    caption_h = font_size + pad if captions is not None else 0
    sheet = Image.new("RGB", (columns * (cell_w + pad) + pad, rows * (cell_h + caption_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for n, tile in enumerate(tiles):
        x = pad + (n % columns) * (cell_w + pad)
        y = pad + (n // columns) * (cell_h + caption_h + pad)
        sheet.paste(tile, (x + (cell_w - tile.width) // 2, y + (cell_h - tile.height) // 2))
        if captions is not None:
            draw.text((x, y + cell_h + pad // 2), captions[n], fill="black", font=font)
    return sheet


def _json_default(obj):
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return _to_numpy(obj).tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a JSON record")


def finite_json(obj):
    """`obj` with NaN / ±inf floats as the strings "nan" / "inf" / "-inf" (as log.jsonl writes them): standard
    JSON has no such numbers, so Python's bare `NaN` token makes the file unreadable to most other readers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json_record(path: str | os.PathLike, settings: dict, overwrite: bool = False) -> Path:
    """Write the settings that produced an output as indented JSON beside it (e.g. `sample.mp4` → `sample.json`).

    Paths, devices, dtypes, numpy/torch values and dataclasses are converted; anything else raises TypeError.
    """
    path = Path(path)
    plain = json.loads(json.dumps(settings, default=_json_default))  # numpy / torch / paths → JSON types
    text = json.dumps(finite_json(plain), indent=2, allow_nan=False) + "\n"
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
