"""Train the stage-1 triplane VAE.

    python scripts/train_vae.py --preset tiny --data DIR --out DIR --max-steps N [--batch-size B] [--resume]
    torchrun --nproc_per_node G scripts/train_vae.py ...          # DDP, one process per GPU (or CPU process)

Training defaults come from the preset (`nsr.trainer.TRAIN_PRESETS`); every flag left out keeps the preset's value.
`--out` receives checkpoint-<step>/ folders, config.json (all settings), log.jsonl and tensorboard/.
An `--out` that holds a run is only continued (`--resume`, with the run's settings; bookkeeping flags such as
--max-steps may change) and is otherwise refused untouched (utils/run_folder.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json

from nsr.losses import VAELossConfig
from nsr.trainer import TRAIN_PRESETS, VAETrainer, preset_train_config

_LOSS_FIELDS = {f.name for f in dataclasses.fields(VAELossConfig)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=None)
    bool_flag = argparse.BooleanOptionalAction

    run = p.add_argument_group("run")
    run.add_argument("--preset", required=True, choices=sorted(TRAIN_PRESETS), help="VAE preset (nsr/config.py)")
    run.add_argument("--data", required=True,
                     help="dataset directory (scripts/make_dataset.py writes one), or procedural:N[:SEED] for "
                          "procedural objects 0..N-1 rendered without a store")
    run.add_argument("--out", required=True, help="output directory: checkpoints, logs, config.json")
    run.add_argument("--max-steps", type=int, required=True, help="total generator steps (a resume continues to it)")
    run.add_argument("--max-minutes", type=float,
                     help="stop with a checkpoint after this much wall-clock time (resume with --resume); 0: no limit")
    run.add_argument("--batch-size", type=int, help="objects per process per step")
    run.add_argument("--resume", action="store_true", default=None, help="continue from the newest checkpoint in --out")
    run.add_argument("--init-from", help="start from the VAE weights of this model folder or run directory "
                                        "(e.g. checkpoints/procedural/vae), with a fresh optimiser")
    run.add_argument("--vae-overrides", type=json.loads, help='JSON overrides of the preset, e.g. \'{"decoder": '
                                                              '{"depth": 2}}\'')
    run.add_argument("--device", help="auto (default), cpu or cuda")
    run.add_argument("--seed", type=int)
    run.add_argument("--num-workers", type=int, help="data-loading processes per training process")
    run.add_argument("--data-on-device", action=bool_flag,
                     help="render (procedural:N) or load (a store) every view into accelerator memory once and build "
                          "batches there: no loader processes, so a fast step is not data bound")
    run.add_argument("--skip-bad-samples", action="store_true", default=None,
                     help="skip unreadable samples (with a warning) instead of stopping")
    run.add_argument("--bf16", action=bool_flag, help="bf16 autocast on GPU")
    run.add_argument("--tf32", action=bool_flag, help="TF32 matmuls for the float32 renderer MLP on GPU")
    run.add_argument("--triplane-lookup", choices=("auto", "fused", "grid_sample"),
                     help="plane lookup: auto = the fused Triton kernel on CUDA, grid_sample = the release's op")
    run.add_argument("--save-interval", type=int, help="steps between checkpoints")
    run.add_argument("--keep-last", type=int, help="checkpoints to keep")
    run.add_argument("--log-interval", type=int, help="steps between log lines")
    run.add_argument("--max-nonfinite-steps", type=int, help="abort after this many NaN/inf steps in a row")
    run.add_argument("--tensorboard", action=bool_flag)
    run.add_argument("--progress", action=bool_flag, help="tqdm progress bar")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--lr-encoder", type=float, help="encoder learning rate")
    opt.add_argument("--lr-decoder", type=float, help="decoder transformer learning rate")
    opt.add_argument("--lr-conv", type=float, help="latent embedding + conv upsampler + renderer learning rate")
    opt.add_argument("--lr-disc", type=float, help="discriminator learning rate (default: --lr-decoder)")
    opt.add_argument("--wd-encoder", type=float)
    opt.add_argument("--wd-decoder", type=float)
    opt.add_argument("--wd-conv", type=float)
    opt.add_argument("--grad-clip", type=float, help="global gradient-norm clip (0: off; release 5.0)")
    opt.add_argument("--ema-decay", type=float, help="EMA decay (0: no EMA)")

    data = p.add_argument_group("data")
    data.add_argument("--num-encoder-views", type=int, help="views fed to the encoder (default: the preset's)")
    data.add_argument("--random-encoder-views", action=bool_flag,
                      help="draw random encoder views per sample (else the rig's fixed encoder views)")
    data.add_argument("--num-target-views", type=int, help="views rendered (as patches) per object")
    data.add_argument("--encoder-resolution", type=int, help="encoder input side (default: what the preset expects)")

    ren = p.add_argument_group("rendering")
    ren.add_argument("--render-resolution", type=int, help="R: image resolution patches are cut from")
    ren.add_argument("--patch-size", type=int, help="P: rendered patch side (0: whole images)")
    ren.add_argument("--patch-fg-prob", type=float, help="probability a patch is centred in the foreground bbox")
    ren.add_argument("--sample-posterior", action=bool_flag, help="decode a posterior sample (else its mean)")

    loss = p.add_argument_group("loss weights")
    loss.add_argument("--l2-weight", type=float, help="(masked) MSE weight")
    loss.add_argument("--fg-mse", action=bool_flag, help="MSE normalised separately on foreground and background")
    loss.add_argument("--bg-weight", type=float, help="background weight inside the masked MSE")
    loss.add_argument("--l1-weight", type=float)
    loss.add_argument("--lpips-weight", type=float)
    loss.add_argument("--lpips-net", choices=["alex", "vgg", "squeeze"])
    loss.add_argument("--lpips-backbone", help="torchvision backbone weights file (default: torch hub cache)")
    loss.add_argument("--lpips-start-step", type=int)
    loss.add_argument("--kl-weight", type=float, help="KL weight (λ_max of the anneal)")
    loss.add_argument("--kl-anneal", action=bool_flag)
    loss.add_argument("--kl-anneal-start", type=int)
    loss.add_argument("--kl-anneal-length", type=int)
    loss.add_argument("--depth-weight", type=float, help="scale-and-shift-invariant depth loss weight")
    loss.add_argument("--depth-hinge", type=float, help="depth losses above this are dropped")
    loss.add_argument("--depth-gradient-weight", type=float)
    loss.add_argument("--alpha-weight", type=float)
    loss.add_argument("--disc-factor", type=float, help="scale of both adversarial losses")
    loss.add_argument("--disc-weight", type=float, help="generator-side adversarial weight (0: no discriminator)")
    loss.add_argument("--disc-start-step", type=int)
    loss.add_argument("--disc-ndf", type=int)
    loss.add_argument("--disc-layers", type=int)
    return p


def config_from_args(args: argparse.Namespace):
    given = {k: v for k, v in vars(args).items() if v is not None and k != "preset"}
    loss = {k: given.pop(k) for k in list(given) if k in _LOSS_FIELDS}
    return preset_train_config(args.preset, **given, loss=loss)


def main(argv: list[str] | None = None) -> None:
    from datasets.errors import BadSampleError
    from utils import distributed
    from utils.checkpoint import CheckpointError
    from utils.training import NonFiniteLossError, exit_after_stop
    from utils.validation import SEED, check_args

    parser = build_parser()
    args = parser.parse_args(argv)
    check_args("train_vae.py", args, {"--seed": SEED})  # before any set-up: a bad number costs nothing
    try:
        trainer = VAETrainer(config_from_args(args))  # bad settings, data or checkpoints surface here
    except (ValueError, TypeError, CheckpointError, BadSampleError) as e:
        parser.exit(2, f"train_vae.py: error: {e}\n")
    except KeyboardInterrupt:  # Ctrl-C while setting up: no step ran, so there is nothing to save
        parser.exit(130, "train_vae.py: interrupted before the first step; nothing was saved\n")
    try:
        trainer.train()  # a SIGINT / SIGTERM ends it after the current step, with a checkpoint
    except (CheckpointError, NonFiniteLossError, BadSampleError) as e:
        parser.exit(1, f"train_vae.py: error: {e}\n")
    finally:
        distributed.shutdown()
    exit_after_stop("train_vae.py", trainer.stopped)


if __name__ == "__main__":
    main()
