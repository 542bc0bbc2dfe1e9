#!/usr/bin/env bash
# Stage-1 VAE on one ShapeNet category (spec §3.1 recipe via the preset).
# Usage: shapenet.sh DATA_DIR OUT_DIR [more train_vae.py flags, e.g. --resume]   (NUM_GPUS=8 for DDP)
set -euo pipefail
cd "$(dirname "$0")/../../.."
torchrun --standalone --nproc_per_node "${NUM_GPUS:-8}" scripts/train_vae.py --preset shapenet \
  --data "${1:?dataset directory}" --out "${2:?output directory}" --max-steps "${MAX_STEPS:-5000000}" \
  --batch-size "${BATCH_SIZE:-8}" "${@:3}"
