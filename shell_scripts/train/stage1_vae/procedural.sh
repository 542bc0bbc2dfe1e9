#!/usr/bin/env bash
# Stage-1 VAE on a procedural set (scripts/make_dataset.py); the `small` preset carries the embedded model's recipe
# (docs/TRAINING.md). Usage: procedural.sh DATA_DIR OUT_DIR [more train_vae.py flags, e.g. --resume]   (NUM_GPUS=8 DDP)
set -euo pipefail
cd "$(dirname "$0")/../../.."
torchrun --standalone --nproc_per_node "${NUM_GPUS:-1}" scripts/train_vae.py --preset small \
  --data "${1:?dataset directory}" --out "${2:?output directory}" --max-steps "${MAX_STEPS:-4000}" \
  --num-workers "${NUM_WORKERS:-14}" "${@:3}"
