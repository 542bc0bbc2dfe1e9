#!/usr/bin/env bash
# One time-limited chunk of the embedded VAE's training campaign (docs/TRAINING.md): procedural objects rendered
# straight into GPU memory, training from the given weights with a fresh optimiser for MINUTES, an fp16 export, and
# the held-out VAE evaluation. Usage:
#   procedural_chunk.sh INIT_WEIGHTS OUT_DIR [MINUTES] [more train_vae.py flags]
# Environment: NUM_OBJECTS (10000), EVAL_OBJECTS (48), DEVICE (cuda), EVAL_FLAGS (more evaluate.py flags).
# e.g. procedural_chunk.sh checkpoints/procedural/vae /tmp/chunk 6 ; then copy OUT_DIR/pipeline/vae/model.safetensors
# into checkpoints/procedural/vae/ when OUT_DIR/eval/metrics.json says it is better.
set -euo pipefail
cd "$(dirname "$0")/../../.."
init=${1:?weights to start from (a model folder or run directory)}
out=${2:?output directory}
minutes=${3:-6}
python scripts/train_vae.py --preset small --data "procedural:${NUM_OBJECTS:-10000}" --data-on-device \
  --init-from "$init" --out "$out/run" --max-steps 1000000 --max-minutes "$minutes" --save-interval 1000000 \
  --log-interval 50 --tf32 --no-tensorboard --device "${DEVICE:-cuda}" "${@:4}"
# the shipped pipeline with this chunk's VAE (fp16) in place of its own: what evaluate.py reads
rm -rf "$out/pipeline" && cp -r checkpoints/procedural "$out/pipeline" && rm -r "$out/pipeline/vae"
python -c "import sys; from utils.checkpoint import export_model_folder as e, latest_checkpoint as l; \
e(l(sys.argv[1]), sys.argv[2], dtype='fp16')" "$out/run" "$out/pipeline/vae"
# shellcheck disable=SC2086  # EVAL_FLAGS is a list of flags
python scripts/evaluate.py --ckpt "$out/pipeline" --out "$out/eval" --tasks vae --num-objects "${EVAL_OBJECTS:-48}" \
  --device "${DEVICE:-cuda}" ${EVAL_FLAGS:-}
