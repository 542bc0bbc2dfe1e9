"""Multi-GPU check of one training run under torchrun: train, then compare every rank's weights and report speed.

    torchrun --standalone --nproc_per_node G scripts/multi_gpu_check.py {vae,dit} DATA OUT STEPS BATCH_PER_RANK PRESET
        [resume]

DATA is a dataset folder (vae) or a latent store (dit). Rank 0 prints one JSON line: whether every rank ends with
bit-identical weights (a SHA-256 over the state dict), samples/s over the last two thirds of the run (global batch =
BATCH_PER_RANK × G) and the logged losses. `shell_scripts/train/multi_gpu_check.sh` runs the whole comparison of
docs/BENCHMARKS.md (1 vs 2 GPUs, resume on another GPU count, small and release sizes).
"""
import hashlib
import json
import sys
import time

import torch.distributed as dist

stage, data, out, steps, batch, preset = sys.argv[1:7]
resume = len(sys.argv) > 7
common = dict(out=out, max_steps=int(steps), batch_size=int(batch), resume=resume, device="cuda", progress=False,
              tensorboard=False, bf16=True)
t0 = time.time()
if stage == "vae":
    from nsr.trainer import preset_train_config, train
    over = dict(data=data, num_workers=6, save_interval=10**6, log_interval=10, **common)
    cfg = preset_train_config(preset, **over)
    cfg.loss.lpips_weight = 0.0
    trainer = train(cfg)
    model = trainer.vae
else:
    from guided_diffusion.trainer import preset_train_config, train
    # release-size denoisers need pretrained CLIP/DINO, which cannot be had here: time them with the offline ones
    released = {"t23d": "offline-text", "i23d": "offline-image"}
    extra = dict(conditioner=released[preset], conditioner_preset="small") if preset in released else {}
    cfg = preset_train_config(preset, latents=data, workers=4, save_every=10**6, log_every=10, **extra, **common)
    trainer = train(cfg)
    model = trainer.model
elapsed = time.time() - t0
digest = hashlib.sha256()
for _, p in sorted(model.state_dict().items()):
    digest.update(p.detach().float().cpu().numpy().tobytes())
rank = dist.get_rank() if dist.is_initialized() else 0
digests = [None] * (dist.get_world_size() if dist.is_initialized() else 1)
if dist.is_initialized():
    dist.all_gather_object(digests, digest.hexdigest())
else:
    digests = [digest.hexdigest()]
if rank == 0:
    log = [json.loads(line) for line in open(f"{out}/log.jsonl")]
    steps_logged = [r for r in log if "step" in r and "time" in r]
    a, b = steps_logged[len(steps_logged) // 3], steps_logged[-1]
    world = len(digests)
    rate = (b["step"] - a["step"]) / (b["time"] - a["time"]) * int(batch) * world
    loss_key = "total" if stage == "vae" else "loss"
    print(json.dumps({"stage": stage, "preset": preset, "world": world, "batch_per_rank": int(batch),
                      "ranks_identical": len(set(digests)) == 1, "samples_per_s": round(rate, 2),
                      "final_step": b["step"], "wall_s": round(elapsed, 1),
                      "losses": [round(r.get(loss_key, float("nan")), 5) for r in steps_logged]}))
if dist.is_initialized():
    dist.destroy_process_group()
