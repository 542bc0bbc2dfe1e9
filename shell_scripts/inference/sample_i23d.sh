#!/usr/bin/env bash
# Image-to-3D with the released I23D model (defaults from the checkpoint: dopri5, 250 steps, CFG 4).
# Usage: sample_i23d.sh IMAGE_OR_FOLDER [more sample_i23d.py flags, e.g. --remove-background --num-samples 4]
#        CKPT=path/to/pipeline sample_i23d.sh assets/i23d_examples   (CKPT=released-i23d by default; OUT=outputs/i23d)
set -euo pipefail
cd "$(dirname "$0")/../.."
python scripts/sample_i23d.py --image "${1:?image file or folder}" --ckpt "${CKPT:-released-i23d}" \
  --out "${OUT:-outputs/i23d}" "${@:2}"
