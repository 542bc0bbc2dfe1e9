#!/usr/bin/env bash
# One-command set-up: a virtualenv at .venv with every dependency (CPU torch 2.13.0 by default).
#   bash scripts/install.sh          # runtime + tests
#   bash scripts/install.sh --test   # also Debian's chromium for the browser test (needs root or sudo)
#   LN3DIFF_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash scripts/install.sh   # GPU machines
# Re-running is cheap: it reinstalls only when requirements.txt or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_browser=0
for arg in "$@"; do
  case "$arg" in
    --test) want_browser=1 ;;
    *) echo "install.sh: unknown option '$arg' (use --test or nothing)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ln3diff-install-stamp
digest=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  export PIP_CONSTRAINT="$PWD/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
  extra=()
  if [ -n "${LN3DIFF_TORCH_INDEX:-}" ]; then extra=(--extra-index-url "$LN3DIFF_TORCH_INDEX"); fi
  .venv/bin/python -m pip install -q "${extra[@]}" -r requirements.txt 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e . 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, utils, timm, open_clip, mcubes, trimesh" \
    || { echo "install.sh: the environment did not import; see the pip output above" >&2; exit 1; }
  echo "$digest" > "$stamp"
fi
if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null) \
    || echo "install.sh: chromium could not be installed; the browser test will be skipped" >&2
fi
echo "install.sh: environment ready in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
