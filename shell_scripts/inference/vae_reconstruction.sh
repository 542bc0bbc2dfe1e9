#!/usr/bin/env bash
# VAE reconstruction (spec §7.6): encode stored objects, render and score novel views, write turntables and meshes.
# Usage: vae_reconstruction.sh VAE_DIR DATA_DIR OUT_DIR [more reconstruct.py flags, e.g. --index 3 --index 7]
set -euo pipefail
cd "$(dirname "$0")/../.."
python scripts/reconstruct.py --ckpt "${1:?VAE folder}" --data "${2:?dataset directory}" --out "${3:?output directory}" \
  "${@:4}"
