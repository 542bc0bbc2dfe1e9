"""Result reporting: metrics.json, Markdown result sections (tables and image links) and simple metric plots.

Everything is written through `utils.media.atomic_output` (temporary file, then a move), so an interrupted evaluation
never leaves a truncated metrics.json or PNG, and, as for every writer in the project, existing files are only
replaced with `overwrite=True`. Plots are drawn with PIL to avoid a plotting dependency.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from utils.media import atomic_output

MISSING = "—"
# Colour-blind-safe qualitative palette (Okabe & Ito), cycled over series.
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0))


def to_jsonable(value: Any) -> Any:
    """Nested metrics → plain JSON values: tensors/arrays become numbers or lists, paths strings, and non-finite
    floats the strings "inf", "-inf", "nan" (JSON has no literal for them; PSNR of a pixel-exact pair is inf)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return to_jsonable(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).tolist())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_metrics_json(path: str | os.PathLike, metrics: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Write nested metrics as indented JSON (keys in the given order), atomically. Returns the path."""
    path = Path(path)
    text = json.dumps(to_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def format_value(value: Any, fmt: str = "{:.4g}") -> str:
    """One table cell: None → "—", floats through `fmt`, non-finite floats as inf/nan, everything else str()."""
    if value is None:
        return MISSING
    if isinstance(value, (torch.Tensor, np.generic)):
        value = value.item()
    if isinstance(value, float):
        return fmt.format(value) if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    row_header: str = "",
    formats: Mapping[str, str] | None = None,
) -> str:
    """A Markdown table from {row name: {column: value}}.

    columns: the column order; default every key in order of first appearance. Missing cells show "—".
    formats: per-column format strings (e.g. {"cov": "{:.1f}"}); others use "{:.4g}".
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows.values() for key in row))
    formats = formats or {}
    escape = lambda text: text.replace("|", "\\|")
    lines = [
        "| " + " | ".join(escape(c) for c in [row_header, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, row in rows.items():
        cells = [format_value(row.get(c), formats.get(c, "{:.4g}")) for c in columns]
        lines.append("| " + " | ".join(escape(c) for c in [str(name), *cells]) + " |")
    return "\n".join(lines) + "\n"


def markdown_section(
    title: str,
    tables: Mapping[str, Mapping[str, Mapping[str, Any]]],
    images: Sequence[tuple[str, str | os.PathLike]] = (),
    notes: str = "",
    relative_to: str | os.PathLike | None = None,
    level: int = 2,
    formats: Mapping[str, str] | None = None,
) -> str:
    """A Markdown section: heading, optional notes, one sub-headed table per entry of `tables` ({table title:
    {row: {column: value}}}), then images as `![caption](path)`. Image paths are written relative to `relative_to`
    (the folder of the Markdown file) when given, with forward slashes, so links work from the file's location."""
    parts = [f"{'#' * level} {title}\n"]
    if notes:
        parts.append(notes.strip() + "\n")
    for table_title, rows in tables.items():
        parts.append(f"{'#' * (level + 1)} {table_title}\n\n" + markdown_table(rows, formats=formats))
    for caption, image in images:
        link = Path(os.path.relpath(image, relative_to)) if relative_to is not None else Path(image)
        parts.append(f"![{caption}]({link.as_posix()})\n")
    return "\n".join(parts)


def write_markdown(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write Markdown text atomically. Returns the path."""
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 × 10^k apart) whose first and last enclose [low, high]."""
    if high <= low:
        pad = abs(low) * 0.1 or 0.5
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    # Rounding to the step's decimal places removes float noise such as 0.30000000000000004.
    digits = max(0, -math.floor(math.log10(step)))
    return [round(k * step, digits) for k in range(first, last + 1)]


def _label(value: float) -> str:
    return f"{value:.6g}"


def plot_area(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixel bounds of the axes in a plot of `size` (width, height): room for tick
    labels on the left and bottom, the title on top."""
    width, height = size
    return 90, 36, width - 20, height - 50


def plot_metric(
    path: str | os.PathLike,
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    size: tuple[int, int] = (640, 400),
    overwrite: bool = False,
) -> Path:
    """Line plot of one or more series {name: [(x, y), ...]} as a PNG (white background, ticks, legend).

    The axes span the enclosing round ticks of all data (`nice_ticks`); the plot area is the rectangle returned by
    `plot_area(size)`, so a data point's pixel is predictable. Returns the path.
    """
    points = [p for values in series.values() for p in values]
    if not points:
        raise ValueError("plot_metric needs at least one point")
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    left, top, right, bottom = plot_area(size)
    to_px = lambda x, y: (
        left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (right - left),
        bottom - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - top),
    )
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    for x in x_ticks:
        px, _ = to_px(x, y_ticks[0])
        draw.line([(px, top), (px, bottom)], fill=(230, 230, 230))
        draw.text((px, bottom + 6), _label(x), fill="black", font=font, anchor="mt")
    for y in y_ticks:
        _, py = to_px(x_ticks[0], y)
        draw.line([(left, py), (right, py)], fill=(230, 230, 230))
        draw.text((left - 6, py), _label(y), fill="black", font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, 10), title, fill="black", font=ImageFont.load_default(size=14), anchor="mt")
    draw.text(((left + right) / 2, size[1] - 8), x_label, fill="black", font=font, anchor="md")
    draw.text((8, top - 4), y_label, fill="black", font=font, anchor="lb")  # above the y axis, clear of tick labels
    for k, (name, values) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        pixels = [to_px(float(x), float(y)) for x, y in sorted(values)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        legend_y = top + 8 + 16 * k
        draw.line([(right - 120, legend_y), (right - 100, legend_y)], fill=colour, width=3)
        draw.text((right - 95, legend_y), name, fill="black", font=font, anchor="lm")
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        image.save(tmp, format="PNG")
    return path
