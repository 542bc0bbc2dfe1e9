"""Side-by-side headline metrics of several `scripts/evaluate.py` runs, e.g. one per sampler, as Markdown tables.

    python scripts/compare_evaluations.py outputs/sweep/t23d_euler_edm250 outputs/sweep/t23d_dpm_solver_pp25 \
        --out outputs/sweep/comparison.md

Each argument is an evaluate.py output folder (its metrics.json). Runs are grouped by task (t23d, i23d, vae); within
a task the first run given is the baseline, and every other run's row also shows its difference to it. A row is
named by the run's sampler, steps and guidance scale. Runs must score the same held-out objects (same
--num-objects, --start-index and --data-seed) to be comparable; the script refuses mixed sets.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

from evaluations.report import markdown_table  # noqa: E402
from utils.media import atomic_output  # noqa: E402

METRICS_FILE = "metrics.json"
# (column, path into the task's metrics, format); higher is better unless the column says otherwise.
HEADLINES = {
    "t23d": [
        ("category %", ("prompt_accuracy", "generated", "category"), "{:.1f}"),
        ("colour %", ("prompt_accuracy", "generated", "colour"), "{:.1f}"),
        ("both %", ("prompt_accuracy", "generated", "both"), "{:.1f}"),
        ("COV %", ("generation", "mean", "cov"), "{:.1f}"),
        ("MMD (lower)", ("generation", "mean", "mmd"), "{:.4f}"),
        ("1-NNA % (lower)", ("generation", "mean", "1-nna"), "{:.1f}"),
        ("s / sample", ("seconds_per_sample",), "{:.2f}"),
    ],
    "i23d": [
        ("novel PSNR", ("mean", "novel_psnr"), "{:.2f}"),
        ("novel SSIM", ("mean", "novel_ssim"), "{:.3f}"),
        ("Chamfer-L1 (lower)", ("mean", "chamfer_l1"), "{:.4f}"),
        ("F-score", ("mean", "f_score"), "{:.3f}"),
        ("COV %", ("generation", "mean", "cov"), "{:.1f}"),
        ("1-NNA % (lower)", ("generation", "mean", "1-nna"), "{:.1f}"),
        ("s / sample", ("seconds_per_sample",), "{:.2f}"),
    ],
    "vae": [
        ("novel PSNR", ("mean", "psnr"), "{:.2f}"),
        ("novel SSIM", ("mean", "ssim"), "{:.3f}"),
        ("Chamfer-L1 (lower)", ("mean", "chamfer_l1"), "{:.4f}"),
        ("F-score", ("mean", "f_score"), "{:.3f}"),
    ],
}
HELD_OUT_KEYS = ("num_objects", "start_index", "data_seed", "samples_per_prompt")


class CompareError(ValueError):
    """A run folder that cannot be compared: missing or unreadable metrics, or a different held-out set."""


def load_run(folder: Path) -> dict:
    path = folder / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path} does not exist: pass folders written by scripts/evaluate.py --out") from None
    except json.JSONDecodeError as err:
        raise CompareError(f"{path} is not valid JSON ({err.msg}); re-run evaluate.py for that folder") from None


def _lookup(metrics: dict, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics if isinstance(metrics, (int, float)) else None


def run_name(task: str, task_metrics: dict) -> str:
    if task == "vae":
        return "vae"
    sampler = task_metrics.get("sampler")
    # dopri5 chooses its own steps; its `steps` only sets the output grid
    steps = "(adaptive)" if sampler == "dopri5" else task_metrics.get("steps")
    return f"{sampler} {steps} · CFG {task_metrics.get('cfg_scale')}"


def compare(runs: dict[str, dict]) -> dict[str, dict[str, dict[str, float | str | None]]]:
    """{folder: metrics.json} → {task: {row name: {column: value}}}, in the order given; rows after a task's first
    also carry "Δ column" entries against it."""
    held_out = {name: tuple(run.get("settings", {}).get(k) for k in HELD_OUT_KEYS) for name, run in runs.items()}
    if len(set(held_out.values())) > 1:
        detail = "; ".join(f"{name}: {dict(zip(HELD_OUT_KEYS, v))}" for name, v in held_out.items())
        raise CompareError(f"the runs scored different held-out objects ({detail}); re-run them with the same "
                           f"--num-objects, --start-index, --data-seed and --samples-per-prompt")
    tables: dict[str, dict[str, dict]] = {}
    for folder, run in runs.items():
        for task, columns in HEADLINES.items():
            task_metrics = run.get(task)
            if not isinstance(task_metrics, dict):
                continue
            rows = tables.setdefault(task, {})
            name = run_name(task, task_metrics)
            if name in rows:
                name = f"{name} ({Path(folder).name})"
            row = {column: _lookup(task_metrics, path) for column, path, _ in columns}
            if rows:
                baseline = next(iter(rows.values()))
                for column, _, _ in columns:
                    if row[column] is not None and baseline[column] is not None:
                        row[f"Δ {column}"] = row[column] - baseline[column]
            rows[name] = row
    return tables


def to_markdown(tables: dict[str, dict[str, dict]]) -> str:
    parts = []
    for task, rows in tables.items():
        columns = [c for c, _, _ in HEADLINES[task]]
        formats = {c: f for c, _, f in HEADLINES[task]}
        formats.update({f"Δ {c}": f.replace("{:", "{:+") for c, f in formats.items()})
        ordered = columns + [f"Δ {c}" for c in columns if any(f"Δ {c}" in row for row in rows.values())]
        first = next(iter(rows))
        parts.append(f"### {task} (Δ against {first})\n\n" + markdown_table(rows, ordered, task, formats))
    return "\n".join(parts)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="evaluate.py output folders; per task the first is the baseline")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        tables = compare({str(folder): load_run(folder) for folder in args.runs})
    except CompareError as err:
        print(f"compare_evaluations.py: {err}", file=sys.stderr)
        return 2
    if not tables:
        print("compare_evaluations.py: none of the runs has t23d, i23d or vae metrics", file=sys.stderr)
        return 2
    text = to_markdown(tables)
    if args.out is None:
        print(text, end="")
        return 0
    try:
        with atomic_output(args.out, args.overwrite) as tmp:
            Path(tmp).write_text(text)
    except FileExistsError:
        print(f"compare_evaluations.py: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    print(f"compare_evaluations.py: {len(tables)} table(s) → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
