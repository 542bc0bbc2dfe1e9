"""Where checkpoints come from: the embedded default, our own folders, and the authors' released files.

`resolve_checkpoint(spec)` turns what a user passes as `--ckpt` into a local path:
  * a local file or folder: used as is;
  * a released alias (`released-t23d`, `released-i23d`) or a path inside the `yslan/LN3Diff` hub repo: looked up in
    the local Hugging Face cache first, then downloaded with `hf_hub_download` unless `HF_HUB_OFFLINE=1`.
Nothing is ever left random: a checkpoint that cannot be found raises `CheckpointNotFoundError` with one line that
names what was looked for and how to provide it.
"""
from __future__ import annotations

import os
from pathlib import Path

RELEASED_REPO = "yslan/LN3Diff"
RELEASED_FILES = {
    "released-t23d": "checkpoints/objaverse/objaverse-dit/t23d/model_joint_denoise_rec_model3910000.safetensors",
    "released-i23d": "checkpoints/objaverse/objaverse-dit/i23d/model_joint_denoise_rec_model2990000.safetensors",
}
EMBEDDED_DEFAULT = Path(__file__).resolve().parent / "procedural"


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally and could not be downloaded."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def resolve_checkpoint(spec: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Local path of the checkpoint named by `spec` (None → the embedded default model)."""
    if spec is None:
        spec = EMBEDDED_DEFAULT
    path = Path(spec).expanduser()
    if path.exists():
        return path
    spec = str(spec)
    filename = RELEASED_FILES.get(spec, spec if spec.startswith("checkpoints/objaverse/") else None)
    if filename is None:
        raise CheckpointNotFoundError(
            f"checkpoint '{spec}' not found: pass an existing folder or file to --ckpt, or one of "
            f"{', '.join(sorted(RELEASED_FILES))} for the authors' released weights")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(RELEASED_REPO, filename, cache_dir=cache_dir)
    if isinstance(cached, str) and Path(cached).exists():
        return Path(cached)
    if _offline():
        raise CheckpointNotFoundError(
            f"released checkpoint {RELEASED_REPO}/{filename} is not in the local Hugging Face cache and "
            f"HF_HUB_OFFLINE=1: download it on a connected machine with `hf download {RELEASED_REPO} "
            f"{filename}` and copy the cache, or pass the file's path to --ckpt")
    try:
        return Path(hf_hub_download(RELEASED_REPO, filename, cache_dir=cache_dir))
    except Exception as err:  # network, auth and missing-file errors all end the same way for the user
        raise CheckpointNotFoundError(
            f"could not download {RELEASED_REPO}/{filename} ({type(err).__name__}: {err}); "
            f"pass a local copy to --ckpt") from err
