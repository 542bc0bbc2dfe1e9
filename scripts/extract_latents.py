"""Encode a multi-view dataset with a trained VAE into the stage-2 latent store (spec §7.6).

    python scripts/extract_latents.py --ckpt VAE_DIR --data DATA_DIR --out LATENT_DIR [--device cuda] [--resume]

Each object's latent-extraction views (the G-Objaverse rig views 25, 0, 9, 18, 27, 33, or the first few of them
that a smaller VAE trained on) are encoded once; the store keeps the posterior sample (the diffusion target, as
released) and the posterior mean, the caption and labels, and a few condition views (images on white + cameras)
for image-conditioned training (`datasets/latents.py`). The sample noise is seeded per object, so the store does
not depend on batching.

Besides the object folders, --out receives `extraction.json` (settings, the exact VAE checkpoint folder, counts)
and `stats.json` (latent mean / std: the std is the natural `--latent-divider` for train_diffusion.py, which reads
it by default).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from datasets.collate import collate_samples
from datasets.errors import BadSampleError
from datasets.latents import META_FILE, LatentStoreWriter
from datasets.multiview import target_tensors
from datasets.stores import ObjectStore, open_store
from guided_diffusion.trainer import EXTRACTION_FILE, STATS_FILE
from nsr.config import VAEConfig
from nsr.encoding import default_encoder_views, encoder_resolution, parse_view_ids, record_encoder_input
from nsr.posterior import Posterior
from utils.checkpoint import CheckpointError, atomic_write_json, resolve_model_folder
from utils.media import check_writable_folder
from utils.run_folder import differing_settings
from utils.training import derive_seed
from utils.validation import SEED, Limit, check_args

log = logging.getLogger("ln3diff.extract")

DEFAULT_COND_VIEWS = (0, 9, 18, 27, 33)  # the encoder views minus the top view: upper ring 0/135/270°, lower 0/180°


class ExtractionDataset(Dataset):
    """Per object: enc_input `(V, 10, He, He)`, cond_images `(K, 3, Rc, Rc)` uint8 on white, cond_cameras `(K, 25)`,
    object_id, caption, labels. With `skip_bad` an unreadable object yields None (logged) instead of raising."""

    def __init__(self, store: ObjectStore, vae_config: VAEConfig, views: tuple[int, ...],
                 cond_views: tuple[int, ...], cond_resolution: int | None, skip_bad: bool = False):
        self.store, self.vae_config, self.views, self.cond_views = store, vae_config, views, cond_views
        self.cond_resolution, self.skip_bad = cond_resolution, skip_bad
        self.wanted = list(dict.fromkeys(views + cond_views))

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict | None:
        try:
            record = self.store.read(index, lambda available: self.wanted)
        except BadSampleError as error:
            if not self.skip_bad:
                raise
            log.warning("skipping unreadable object %d: %s", index, error)
            return None
        sample = {"object_id": record.object_id, "caption": record.caption, "labels": record.labels,
                  "enc_input": record_encoder_input(record, self.views, self.vae_config)}
        if self.cond_views:
            cond = record.select(self.cond_views)
            rgb = target_tensors(cond, self.cond_resolution or cond.resolution)["target_rgb"]
            sample["cond_images"] = ((rgb + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
            sample["cond_cameras"] = torch.from_numpy(cond.cameras).float()
        return sample


def collate_readable(samples: list[dict | None]) -> tuple[dict | None, int]:
    """(the batch of readable samples or None, how many objects the batch covered)."""
    readable = [s for s in samples if s is not None]
    return (collate_samples(readable) if readable else None), len(samples)


class LatentStats:
    """Running float64 moments of latents `(B, C, h, w)`: overall and per channel."""

    def __init__(self, channels: int):
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sumsq = torch.zeros(channels, dtype=torch.float64)
        self.count = 0

    def add(self, latents: torch.Tensor) -> None:
        x = latents.detach().double().cpu().transpose(0, 1).flatten(1)
        self.sum += x.sum(1)
        self.sumsq += x.pow(2).sum(1)
        self.count += x.shape[1]

    def summary(self) -> dict:
        mean, meansq = self.sum / self.count, self.sumsq / self.count
        overall_mean = mean.mean().item()
        return {"mean": overall_mean, "std": (meansq.mean().item() - overall_mean**2) ** 0.5,
                "per_channel_mean": mean.tolist(), "per_channel_std": (meansq - mean**2).clamp_min(0).sqrt().tolist()}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="VAE model folder, checkpoint-* folder or training run directory")
    p.add_argument("--data", required=True, help="dataset directory of any store format (docs/DATA.md)")
    p.add_argument("--out", required=True, help="new latent store folder")
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument("--batch-size", type=int, default=8, help="objects encoded together")
    p.add_argument("--views", type=parse_view_ids, default=None,
                   help="encoder rig views, comma-separated (default: those the VAE trained on, the first "
                        "encoder num_views of 25,0,9,18,27,33)")
    p.add_argument("--cond-views", type=parse_view_ids, default=DEFAULT_COND_VIEWS,
                   help="rig views stored as I23D condition images, comma-separated, or 'none' (default: "
                        f"{','.join(map(str, DEFAULT_COND_VIEWS))})")
    p.add_argument("--cond-resolution", type=int, default=None,
                   help="side of the stored condition images (default: the dataset's own)")
    p.add_argument("--workers", type=int, default=4, help="data-loading processes")
    p.add_argument("--seed", type=int, default=0, help="seeds each object's posterior sample (with its id)")
    p.add_argument("--skip-bad-samples", action="store_true", help="skip unreadable objects instead of stopping")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted extraction in --out (same flags): its written objects are kept")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {args.batch_size}")
    check_args("extract_latents.py", args, {"--seed": SEED, "--workers": Limit(0, whole=True),
                                            "--cond-resolution": Limit(1, 4096, whole=True)})
    return args


@torch.no_grad()
def extract(args: argparse.Namespace) -> dict:
    from checkpoints.loader import load_vae_folder
    from guided_diffusion.cli import pick_device

    out = Path(args.out)
    previous = json.loads((out / EXTRACTION_FILE).read_text()) if (out / EXTRACTION_FILE).exists() else None
    if previous is not None and previous["complete"]:
        raise FileExistsError(f"{out} already holds a latent store; pass a new --out")
    if previous is not None and not args.resume:
        raise FileExistsError(f"{out} already holds an interrupted extraction; pass --resume to finish it, or a "
                              f"new --out")
    if previous is None and out.is_dir() and any(out.iterdir()):  # the store's files would mix with what is there
        raise FileExistsError(f"{out} is not empty; pass a new (or empty) --out folder")
    check_writable_folder(out)  # before the VAE is loaded and objects encoded
    device = pick_device(args.device)
    vae_folder = resolve_model_folder(args.ckpt).resolve()
    vae = load_vae_folder(vae_folder, device)
    views = args.views or default_encoder_views(vae.config)
    store = open_store(args.data, skip_bad=args.skip_bad_samples)
    record = {"vae": str(vae_folder), "vae_preset": vae.config.preset, "data": str(Path(args.data).resolve()),
              "views": list(views), "cond_views": list(args.cond_views), "cond_resolution": args.cond_resolution,
              "encoder_resolution": encoder_resolution(vae.config), "latent_shape": list(vae.config.latent_shape),
              "seed": args.seed, "stored": "latent.npy = posterior sample, latent_mean.npy = posterior mean"}
    sample_stats, mean_stats = LatentStats(vae.config.latent_shape[0]), LatentStats(vae.config.latent_shape[0])
    done = []  # objects an interrupted extraction finished (meta.json is written last): counted, not re-encoded
    if previous is not None:
        differ = differing_settings(previous, record, may_change=(), flags={"vae": "--ckpt"})
        if differ:
            raise ValueError(f"--resume: {out} was extracted with other settings: {', '.join(differ)}; resume with "
                             f"the same flags or pass a new --out")
        done = [i for i in range(len(store)) if (out / store.object_id(i) / META_FILE).is_file()]
        for i in done:  # the statistics cover the whole store
            folder = out / store.object_id(i)
            sample_stats.add(torch.from_numpy(np.load(folder / "latent.npy"))[None])
            mean_stats.add(torch.from_numpy(np.load(folder / "latent_mean.npy"))[None])
    todo = sorted(set(range(len(store))) - set(done))
    dataset = Subset(ExtractionDataset(store, vae.config, views, args.cond_views, args.cond_resolution,
                                       args.skip_bad_samples), todo)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_readable)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / EXTRACTION_FILE, {**record, "complete": False})

    start, written = time.perf_counter(), len(done)
    with LatentStoreWriter(out) as writer, tqdm(total=len(dataset), desc="latents", unit="obj") as bar:
        for batch, covered in loader:
            bar.update(covered)
            if batch is None:
                continue
            posterior = vae.encode(batch["enc_input"].to(device))
            means = posterior.latent(sample=False)
            samples = torch.cat([
                Posterior(posterior.mean[i:i + 1], posterior.logvar[i:i + 1], posterior.latent_size).latent(
                    sample=True, generator=torch.Generator(device).manual_seed(derive_seed(args.seed, object_id)))
                for i, object_id in enumerate(batch["object_id"])])
            sample_stats.add(samples)
            mean_stats.add(means)
            for i, object_id in enumerate(batch["object_id"]):
                cond = {"cond_images": batch["cond_images"][i], "cond_cameras": batch["cond_cameras"][i]} \
                    if args.cond_views else {}
                writer.add(object_id, samples[i], means[i], batch["caption"][i], batch["labels"][i], **cond)
            written += len(batch["object_id"])
    seconds = time.perf_counter() - start
    if written == 0:
        raise ValueError(f"no object of {args.data} could be read, so no latent was written")
    stats = {**sample_stats.summary(), "posterior_mean": mean_stats.summary(), "num_objects": written,
             "latent_shape": list(vae.config.latent_shape),
             "note": "mean/std over posterior samples (latent.npy), the diffusion training target"}
    atomic_write_json(out / STATS_FILE, stats)
    summary = {**record, "complete": True, "num_objects": written, "skipped": len(store) - written,
               "seconds": round(seconds, 3), "latent_std": stats["std"], "latent_mean": stats["mean"]}
    atomic_write_json(out / EXTRACTION_FILE, summary)
    return summary


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        summary = extract(args)
    except (CheckpointError, BadSampleError, FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"extract_latents.py: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # every written object is complete (meta.json last), so nothing is lost
        print(f"extract_latents.py: interrupted; the objects written so far are kept: run again with --resume to "
              f"finish {args.out}", file=sys.stderr)
        raise SystemExit(130) from None
    print(f"extract_latents.py: {summary['num_objects']} latents → {args.out} ({summary['skipped']} skipped, "
          f"{summary['seconds']:.1f} s); latent std {summary['latent_std']:.5g}, mean {summary['latent_mean']:.3g} "
          f"(std = the default --latent-divider of train_diffusion.py)")


if __name__ == "__main__":
    main()
