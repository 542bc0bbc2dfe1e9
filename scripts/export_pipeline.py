"""Assemble a shippable pipeline folder from a trained VAE and stage-2 runs (how `checkpoints/procedural/` is made).

    python scripts/export_pipeline.py --vae VAE_RUN --t23d T23D_RUN --i23d I23D_RUN --out checkpoints/procedural

Each source is a model folder, a checkpoint-* folder or a training run directory (its newest checkpoint). The
result is what `checkpoints/loader.py` reads as a pipeline:

    <out>/vae/{model.safetensors, config.json}
    <out>/t23d/{model.safetensors, config.json}     (and/or i23d/)
    <out>/model_card.json, <out>/README.md           what each stage is, its training data and steps

Weights are cast to --dtype (fp16 by default). Stage configs lose the training machine's absolute `vae_folder`:
inside a pipeline the VAE is always `<out>/vae`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guided_diffusion.trainer import EXTRACTION_FILE
from utils.checkpoint import (
    CONFIG_FILE,
    EMA_FILE,
    MODEL_FILE,
    STATE_JSON_FILE,
    CheckpointError,
    atomic_write,
    atomic_write_json,
    export_model_folder,
    load_weights,
    read_json,
    resolve_model_folder,
)

TASKS = ("t23d", "i23d")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="VAE model folder, checkpoint or training run")
    p.add_argument("--t23d", help="T23D stage-2 model folder, checkpoint or training run")
    p.add_argument("--i23d", help="I23D stage-2 model folder, checkpoint or training run")
    p.add_argument("--out", required=True, help="new pipeline folder")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="stored weight precision")
    p.add_argument("--ema", action="store_true",
                   help="export the EMA weights of the stage-2 models (and of the VAE when its checkpoint has them)")
    p.add_argument("--name", default=None, help="pipeline name in the model card (default: the --out folder name)")
    args = p.parse_args(argv)
    if not (args.t23d or args.i23d):
        p.error("nothing to export besides the VAE: pass --t23d and/or --i23d")
    return args


def _info(folder: Path) -> dict:
    """trainer_state.json of a training checkpoint (step + training settings); {} for a plain model folder."""
    path = folder / STATE_JSON_FILE
    return read_json(path) if path.is_file() else {}


def _count(folder: Path) -> int:
    return sum(t.numel() for t in load_weights(folder / MODEL_FILE).values())


def _vae_card(src: Path, out: Path, use_ema: bool) -> dict:
    config, info = read_json(src / CONFIG_FILE), _info(src)
    training = info.get("training", {})
    return {"preset": config["preset"], "overrides": config.get("overrides", {}), "source": src.name,
            "steps": info.get("step"), "ema": use_ema, "parameters": _count(out),
            "training": {"data": Path(training["data"]).name if training.get("data") else None,
                         **{k: training[k] for k in ("batch_size", "render_resolution", "patch_size")
                            if k in training}, "world_size": info.get("world_size")}}


def _stage_card(src: Path, out: Path, use_ema: bool) -> dict:
    config, info = read_json(src / CONFIG_FILE), _info(src)
    training = info.get("training", {})
    latents = Path(training["latents"]) if training.get("latents") else None
    extraction = read_json(latents / EXTRACTION_FILE) if latents and (latents / EXTRACTION_FILE).is_file() else {}
    return {"preset": config["stage2"]["name"], "conditioner": config["conditioner"], "source": src.name,
            "steps": info.get("step"), "ema": use_ema, "parameters": _count(out),
            "latent_divider": config["stage2"]["diffusion"]["latent_divider"],
            "training": {"latents": latents.name if latents else None, "num_latents": info.get("num_latents"),
                         "data": Path(extraction["data"]).name if extraction.get("data") else None,
                         **{k: training[k] for k in ("batch_size", "lr", "cfg_dropout") if k in training},
                         "world_size": info.get("world_size")}}


def _check_stage(task: str, src: Path, vae_src: Path) -> None:
    """The stage folder holds a `task` model whose latent shape is the VAE's."""
    from guided_diffusion.config import Stage2Config
    from nsr.config import vae_config

    config = read_json(src / CONFIG_FILE)
    if "stage2" not in config:
        raise CheckpointError(f"{src / CONFIG_FILE} is not a stage-2 config; --{task} takes a train_diffusion.py "
                              f"run or checkpoint")
    if config.get("task") != task:
        raise CheckpointError(f"{src} holds a {config.get('task')} model, but was passed as --{task}")
    den = Stage2Config.from_dict(config["stage2"]).denoiser
    vae = read_json(vae_src / CONFIG_FILE)
    vae_shape = vae_config(vae["preset"], vae.get("overrides")).latent_shape
    shape = (den.planes * den.latent_channels, den.latent_size, den.latent_size)
    if shape != vae_shape:
        raise CheckpointError(f"--{task} {src} denoises {shape} latents but the VAE {vae_src} makes {vae_shape}; "
                              f"pass the VAE it was trained with")
    recorded = config.get("vae_folder")
    if recorded and Path(recorded).exists() and Path(recorded).resolve() != vae_src.resolve():
        raise CheckpointError(f"--{task} {src} was trained on latents of the VAE {recorded}, not {vae_src}; pass "
                              f"that VAE to --vae")


def export(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    if any((out / name).exists() for name in ("vae", *TASKS, "model_card.json")):
        raise FileExistsError(f"{out} already holds a pipeline; pass a new --out")
    dtype = None if args.dtype == "fp32" else args.dtype
    vae_src = resolve_model_folder(args.vae)
    stages = {task: resolve_model_folder(src) for task, src in (("t23d", args.t23d), ("i23d", args.i23d)) if src}
    for task, src in stages.items():
        _check_stage(task, src, vae_src)
        if args.ema and not (src / EMA_FILE).is_file():
            raise CheckpointError(f"--ema: {src} has no {EMA_FILE} (trained with --no-ema); drop --ema")

    vae_ema = args.ema and (vae_src / EMA_FILE).is_file()
    export_model_folder(vae_src, out / "vae", dtype, use_ema=vae_ema)
    card = {"name": args.name or out.resolve().name, "weights_dtype": args.dtype,
            "vae": _vae_card(vae_src, out / "vae", vae_ema)}
    for task, src in stages.items():
        folder = export_model_folder(src, out / task, dtype, use_ema=args.ema)
        config = read_json(folder / CONFIG_FILE)
        config.pop("vae_folder", None)  # a training-machine path; the pipeline's VAE is <out>/vae
        atomic_write_json(folder / CONFIG_FILE, config)
        card[task] = _stage_card(src, folder, args.ema)
    atomic_write_json(out / "model_card.json", card)
    readme = render_readme(card)
    atomic_write(out / "README.md", lambda p: p.write_text(readme))
    return card


def render_readme(card: dict) -> str:
    rows = []
    for stage in ("vae", *TASKS):
        if stage not in card:
            continue
        c = card[stage]
        conditioner = c["conditioner"]["name"] if "conditioner" in c else "—"
        rows.append(f"| {stage} | {c['preset']} | {conditioner} | {c['parameters'] / 1e6:.2f} M | "
                    f"{c['steps'] or '—'} | {c['training'].get('data') or '—'} | {'EMA' if c['ema'] else 'raw'} |")
    tasks = [t for t in TASKS if t in card]
    return "\n".join([
        f"# LN3Diff pipeline `{card['name']}`",
        "",
        f"A triplane VAE plus {' and '.join(tasks)} latent diffusion, exported by `scripts/export_pipeline.py` "
        f"({card['weights_dtype']} weights). Load it with `--ckpt <this folder>` in `scripts/sample_t23d.py` / "
        f"`scripts/sample_i23d.py`, or `Pipeline.from_checkpoint(<this folder>, task)`.",
        "",
        "| stage | preset | conditioner | parameters | training steps | training data | weights |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "`model_card.json` holds the full record: presets, latent divider, conditioner settings, batch sizes.",
        "",
    ])


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        card = export(args)
    except (CheckpointError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export_pipeline.py: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    stages = ", ".join(f"{s} ({card[s]['parameters'] / 1e6:.2f} M)" for s in ("vae", *TASKS) if s in card)
    print(f"export_pipeline.py: {stages} → {args.out} ({args.dtype})")


if __name__ == "__main__":
    main()
