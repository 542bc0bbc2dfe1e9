#!/usr/bin/env bash
# Stage-2 T23D DiT-L/2 on Objaverse latents (spec §5.2): DDPM ε-loss, frozen CLIP-L text, lr 1e-4, 32 per GPU.
# Usage: t23d_objaverse.sh LATENT_DIR OUT_DIR [more train_diffusion.py flags, e.g. --resume]   (NUM_GPUS=7 as released)
set -euo pipefail
cd "$(dirname "$0")/../../.."
torchrun --standalone --nproc_per_node "${NUM_GPUS:-8}" scripts/train_diffusion.py --task t23d --preset t23d \
  --latents "${1:?latent store}" --out "${2:?output directory}" --max-steps "${MAX_STEPS:-5000000}" "${@:3}"
