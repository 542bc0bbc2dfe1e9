#!/usr/bin/env bash
# Stage-1 VAE-XL on Objaverse multi-view data (spec §2.9, `ln3diff-vae-175K_debug.sh` recipe via the preset).
# Usage: objaverse.sh DATA_DIR OUT_DIR [more train_vae.py flags, e.g. --resume]   (NUM_GPUS=8 for DDP)
set -euo pipefail
cd "$(dirname "$0")/../../.."
torchrun --standalone --nproc_per_node "${NUM_GPUS:-8}" scripts/train_vae.py --preset objaverse \
  --data "${1:?dataset directory}" --out "${2:?output directory}" --max-steps "${MAX_STEPS:-5000000}" \
  --batch-size "${BATCH_SIZE:-1}" "${@:3}"
