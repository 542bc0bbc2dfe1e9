#!/usr/bin/env bash
# Stage-2 I23D DiT-PixArt-L/2 on Objaverse latents (spec §5.3): flow matching, frozen CLIP + DINOv2, 40 per GPU.
# Usage: i23d_objaverse.sh LATENT_DIR OUT_DIR [more train_diffusion.py flags, e.g. --resume]   (NUM_GPUS=7 as released)
set -euo pipefail
cd "$(dirname "$0")/../../.."
torchrun --standalone --nproc_per_node "${NUM_GPUS:-8}" scripts/train_diffusion.py --task i23d --preset i23d \
  --latents "${1:?latent store}" --out "${2:?output directory}" --max-steps "${MAX_STEPS:-5000000}" "${@:3}"
