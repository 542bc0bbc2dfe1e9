#!/usr/bin/env bash
# Text-to-3D with the released T23D model (defaults from the checkpoint: Euler-EDM, 250 steps, CFG 6.5).
# Usage: sample_t23d.sh "a blue plastic chair" [more sample_t23d.py flags, e.g. --num-samples 4 --seed 1]
#        CKPT=path/to/pipeline sample_t23d.sh "..."   (CKPT=released-t23d by default; OUT=outputs/t23d)
set -euo pipefail
cd "$(dirname "$0")/../.."
python scripts/sample_t23d.py --prompt "${1:?prompt}" --ckpt "${CKPT:-released-t23d}" --out "${OUT:-outputs/t23d}" \
  "${@:2}"
