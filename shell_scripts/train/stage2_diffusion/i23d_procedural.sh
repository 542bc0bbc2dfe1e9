#!/usr/bin/env bash
# Stage-2 I23D on a procedural latent store (scripts/extract_latents.py): `i23d-small` + tiny offline image
# conditioner, the embedded model's recipe (docs/TRAINING.md); the store names its VAE.
# Usage: i23d_procedural.sh LATENT_DIR OUT_DIR [more train_diffusion.py flags, e.g. --resume]   (NUM_GPUS=8 for DDP)
set -euo pipefail
cd "$(dirname "$0")/../../.."
torchrun --standalone --nproc_per_node "${NUM_GPUS:-1}" scripts/train_diffusion.py --task i23d --preset i23d-small \
  --latents "${1:?latent store}" --out "${2:?output directory}" --max-steps "${MAX_STEPS:-100000}" \
  --workers "${WORKERS:-6}" "${@:3}"
