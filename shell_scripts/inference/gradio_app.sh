#!/usr/bin/env bash
# The web demo on http://127.0.0.1:${PORT:-7860} (text and image tabs; each tab needs its model in CKPT).
# Usage: gradio_app.sh [more gradio_app.py flags, e.g. --share --host 0.0.0.0]
#        CKPT=released-i23d gradio_app.sh   (default: the embedded procedural model)
set -euo pipefail
cd "$(dirname "$0")/../.."
python scripts/gradio_app.py ${CKPT:+--ckpt "$CKPT"} --port "${PORT:-7860}" "$@"
