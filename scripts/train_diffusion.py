"""Train the stage-2 latent diffusion model (T23D: DDPM on captions; I23D: flow matching on images).

    python scripts/train_diffusion.py --task t23d --preset t23d-tiny --latents DIR --out DIR --max-steps N [--resume]
    torchrun --nproc_per_node G scripts/train_diffusion.py ...      # DDP, one process per GPU (or CPU process)

`--latents` is a latent store written by scripts/extract_latents.py. Training defaults come from the preset
(`guided_diffusion.trainer.TRAIN_PRESETS`); every flag left out keeps the preset's value. `--out` receives
checkpoint-<step>/ folders (each loads through checkpoints/loader.py), config.json, log.jsonl and tensorboard/.
An `--out` that holds a run is only continued (`--resume`, with the run's settings; bookkeeping flags such as
--max-steps may change) and is otherwise refused untouched (utils/run_folder.py).
"""
from __future__ import annotations

import argparse
import json
import sys

from guided_diffusion.trainer import TASK_ARCH, TRAIN_PRESETS, DiffusionTrainer, preset_train_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=None)
    bool_flag = argparse.BooleanOptionalAction

    run = p.add_argument_group("run")
    run.add_argument("--task", required=True, choices=sorted(TASK_ARCH))
    run.add_argument("--preset", required=True, choices=sorted(TRAIN_PRESETS),
                     help="stage-2 preset (guided_diffusion/config.py)")
    run.add_argument("--latents", required=True, help="latent store (scripts/extract_latents.py writes one)")
    run.add_argument("--out", required=True, help="output directory: checkpoints, logs, config.json")
    run.add_argument("--max-steps", type=int, required=True, help="total steps (a resume continues to it)")
    run.add_argument("--vae", help="VAE model or run folder the latents came from (default: the one the latent "
                                   "store records); checkpoints name it so they load on their own")
    run.add_argument("--resume", action="store_true", default=None, help="continue from the newest checkpoint in --out")
    run.add_argument("--stage2-overrides", type=json.loads,
                     help='JSON overrides of the preset, e.g. \'{"denoiser": {"depth": 2}}\'')
    run.add_argument("--batch-size", type=int, help="latents per process per step")
    run.add_argument("--device", help="auto (default), cpu or cuda")
    run.add_argument("--seed", type=int)
    run.add_argument("--workers", type=int, help="data-loading processes per training process")
    run.add_argument("--skip-bad-samples", action="store_true", default=None,
                     help="skip unreadable latents (with a warning) instead of stopping")
    run.add_argument("--bf16", action=bool_flag, help="bf16 autocast on GPU (default on)")
    run.add_argument("--save-every", type=int, help="steps between checkpoints")
    run.add_argument("--keep-last", type=int, help="checkpoints to keep")
    run.add_argument("--log-every", type=int, help="steps between log lines")
    run.add_argument("--max-nonfinite-steps", type=int, help="abort after this many NaN/inf steps in a row")
    run.add_argument("--tensorboard", action=bool_flag)
    run.add_argument("--progress", action=bool_flag, help="tqdm progress bar")

    cond = p.add_argument_group("conditioning")
    cond.add_argument("--conditioner", help="conditioner name (ldm/registry.py); default: offline-text / "
                                            "offline-image, or clip-text / clip-dino-image for release presets")
    cond.add_argument("--conditioner-preset", help="size preset of an offline conditioner (tiny, small)")
    cond.add_argument("--conditioner-options", type=json.loads,
                      help='JSON keywords of the conditioner, e.g. \'{"width": 64}\'')
    cond.add_argument("--cfg-dropout", type=float,
                      help="classifier-free-guidance dropout: per caption (t23d, 0.1) or per stream (i23d, 0.19)")

    diff = p.add_argument_group("diffusion")
    diff.add_argument("--latent-divider", type=float,
                      help="diffusion latent = VAE latent / this (default: the store's latent std, else the preset)")
    diff.add_argument("--use-latent-mean", action=bool_flag,
                      help="train on the posterior mean instead of the stored sample (release: sample)")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--lr", type=float, help="denoiser learning rate")
    opt.add_argument("--conditioner-lr-scale", type=float,
                     help="trainable conditioner lr = lr × this (default 1.0: offline ones start from scratch)")
    opt.add_argument("--weight-decay", type=float, help="AdamW weight decay (release 0.05)")
    opt.add_argument("--grad-clip", type=float, help="global gradient-norm clip (0: off; release 5.0)")
    opt.add_argument("--ema", action=bool_flag, help="keep an EMA of the weights (default on; the release had none)")
    opt.add_argument("--ema-decay", type=float)
    return p


def config_from_args(args: argparse.Namespace):
    given = {k: v for k, v in vars(args).items() if v is not None and k != "preset"}
    return preset_train_config(args.preset, **given)


def main(argv: list[str] | None = None) -> None:
    from datasets.errors import BadSampleError
    from utils.checkpoint import CheckpointError
    from utils.training import NonFiniteLossError, exit_after_stop
    from utils.validation import SEED, check_args

    parser = build_parser()
    args = parser.parse_args(argv)
    check_args("train_diffusion.py", args, {"--seed": SEED})  # before any set-up: a bad number costs nothing
    try:
        cfg = config_from_args(args)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    try:
        trainer = DiffusionTrainer(cfg)  # set-up errors are bad input: latent store, VAE, preset/conditioner fit
    except (ValueError, FileNotFoundError, CheckpointError, BadSampleError) as e:
        fail(e)
    except KeyboardInterrupt:  # Ctrl-C while setting up: no step ran, so there is nothing to save
        parser.exit(130, "train_diffusion.py: interrupted before the first step; nothing was saved\n")
    try:
        trainer.train()  # a SIGINT / SIGTERM ends it after the current step, with a checkpoint
    except (CheckpointError, NonFiniteLossError, BadSampleError) as e:
        fail(e)
    exit_after_stop("train_diffusion.py", trainer.stopped)


def fail(error: Exception) -> None:
    print(f"train_diffusion.py: error: {error}", file=sys.stderr)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
