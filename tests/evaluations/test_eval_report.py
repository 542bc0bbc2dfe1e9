"""metrics.json, Markdown tables/sections and PIL plots, checked against exact expected output."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from evaluations import report


def test_metrics_json_is_plain_valid_json_and_atomic(tmp_path):
    path = tmp_path / "run" / "metrics.json"
    metrics = {
        "recon": {"psnr": torch.tensor(25.5), "ssim": np.float32(0.75), "perfect_psnr": math.inf},
        "fid": None,
        "fid_skip_reason": "Inception weights not found",
        "per_view": np.array([1, 2]),
        "render_dir": tmp_path / "renders",
    }
    assert report.write_metrics_json(path, metrics) == path
    loaded = json.loads(path.read_text())
    assert loaded == {
        "recon": {"psnr": 25.5, "ssim": 0.75, "perfect_psnr": "inf"},
        "fid": None,
        "fid_skip_reason": "Inception weights not found",
        "per_view": [1, 2],
        "render_dir": str(tmp_path / "renders"),
    }
    assert list(loaded) == list(metrics)  # key order kept
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]  # no temporary left behind
    with pytest.raises(FileExistsError):
        report.write_metrics_json(path, {"x": 1})
    report.write_metrics_json(path, {"x": 1}, overwrite=True)
    assert json.loads(path.read_text()) == {"x": 1}


def test_markdown_table_exact():
    rows = {
        "chair": {"cov": 51.234, "mmd": 0.0031234, "1-nna": 58.0},
        "a|b": {"cov": 40.0, "fid": None},
    }
    expected = (
        "| category | cov | mmd | 1-nna | fid |\n"
        "|---|---|---|---|---|\n"
        "| chair | 51.2 | 0.003123 | 58 | — |\n"
        "| a\\|b | 40.0 | — | — | — |\n"
    )
    assert report.markdown_table(rows, row_header="category", formats={"cov": "{:.1f}"}) == expected
    assert report.markdown_table(rows, columns=["mmd"]).splitlines()[2] == "| chair | 0.003123 |"


def test_markdown_section_with_relative_image_links(tmp_path):
    docs = tmp_path / "docs"
    image = tmp_path / "outputs" / "eval" / "cov.png"
    text = report.markdown_section(
        "Text-to-3D",
        {"Prompt accuracy": {"ours": {"category": 97.5}}},
        images=[("COV over training", image)],
        notes="Procedural validation set.",
        relative_to=docs,
    )
    assert text == (
        "## Text-to-3D\n\n"
        "Procedural validation set.\n\n"
        "### Prompt accuracy\n\n|  | category |\n|---|---|\n| ours | 97.5 |\n\n"
        "![COV over training](../outputs/eval/cov.png)\n"
    )
    path = report.write_markdown(docs / "RESULTS.md", text)
    assert path.read_text() == text


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.0, 1.0, [0.0, 0.5, 1.0]),
        (0.3, 2.7, [0, 1, 2, 3]),
        (0.12, 0.33, [0.1, 0.2, 0.3, 0.4]),
        (5.0, 5.0, [4.5, 5.0, 5.5]),
    ],
)
def test_nice_ticks(low, high, expected):
    assert report.nice_ticks(low, high) == pytest.approx(expected)


def test_plot_puts_points_where_the_axes_say(tmp_path):
    path = report.plot_metric(
        tmp_path / "plot.png",
        {"train": [(0.0, 0.0), (0.5, 0.2), (1.0, 1.0)], "val": [(0.0, 1.0), (1.0, 0.0)]},
        title="COV",
        x_label="step",
        y_label="%",
    )
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (640, 400)
    left, top, right, bottom = report.plot_area((640, 400))
    # Ticks are [0, 0.5, 1] on both axes, so (0, 0) is the bottom-left corner and (0, 1) the top-left one.
    assert image.getpixel((left, bottom)) == report.PALETTE[0]
    assert image.getpixel((left, top)) == report.PALETTE[1]
    assert image.getpixel(((left + right) // 2, round(bottom - 0.2 * (bottom - top)))) == report.PALETTE[0]
    with pytest.raises(ValueError):
        report.plot_metric(tmp_path / "empty.png", {"train": []})
